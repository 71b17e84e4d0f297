#!/usr/bin/env bash
# Get a running PostgreSQL on 127.0.0.1 for the registry's tests, and print its URL on the last line.
#
# Idempotent and safe to run many times (concurrent runs wait for each other); fast when everything
# is already in place.
#   1. installs postgresql with apt if pg_ctlcluster or the server binaries are missing
#   2. creates a cluster with pg_createcluster if pg_lsclusters lists none (apt's postinst normally
#      creates <version>/main itself)
#   3. starts the cluster with pg_ctlcluster if it is down, and waits until pg_isready answers
#   4. creates the role modelcrate (password modelcrate, LOGIN CREATEDB) and the database
#      modelcrate_test owned by it, then checks a password login over 127.0.0.1
#   5. prints postgresql+psycopg://modelcrate:modelcrate@127.0.0.1:<port>/modelcrate_test
#
# Progress goes to stderr so that stdout is only the URL:
#   MODELCRATE_TEST_POSTGRES_URL="$(bash scripts/setup-postgres.sh | tail -n 1)"
# The server keeps the packaged default listen_addresses = 'localhost' (loopback only).
set -euo pipefail

ROLE=modelcrate
PASSWORD=modelcrate
DATABASE=modelcrate_test
HOST=127.0.0.1
APT_LOG=/var/log/modelcrate-setup-apt.log
PG_CTL_LOG=/var/log/modelcrate-setup-postgres.log
LOCK_FILE=/var/lock/modelcrate-setup-postgres.lock

log() { echo "== setup-postgres: $*" >&2; }
die() { echo "== setup-postgres: ERROR: $*" >&2; exit 1; }

# run_logged LOGFILE CMD...: run CMD with its (long) output appended to LOGFILE; on failure show the
# tail of LOGFILE and exit with CMD's status. CMD does not inherit the lock (fd 9): a server it starts
# would otherwise hold the lock for its whole life and block every later run.
run_logged() {
    local logfile="$1" rc=0
    shift
    mkdir -p "$(dirname "$logfile")"
    echo "--- $(date -u '+%Y-%m-%dT%H:%M:%SZ') $*" >>"$logfile"
    "$@" >>"$logfile" 2>&1 </dev/null 9>&- || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "== setup-postgres: ERROR: '$*' failed (exit $rc); last lines of $logfile:" >&2
        tail -n 30 "$logfile" >&2 || true
        exit "$rc"
    fi
}

# Newest PostgreSQL major version whose server binary is installed, or nothing.
newest_server_version() {
    local bin newest=""
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$bin" ] || continue
        newest="$(printf '%s\n%s\n' "$newest" "$(basename "$(dirname "$(dirname "$bin")")")" | sort -V | tail -n 1)"
    done
    echo "$newest"
}

# psql as the postgres superuser over the Unix socket (peer authentication); prints bare values.
psql_admin() {
    runuser -u postgres -- psql -X -q -p "$port" -d postgres -v ON_ERROR_STOP=1 -tA "$@"
}

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (installs packages, starts the cluster as postgres, creates the role)"
fi

# Parallel runs (CI steps, several test processes) would race to start the cluster and create the role.
exec 9>"$LOCK_FILE"
flock 9

# ---------------------------------------------------------------- 1. packages
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(newest_server_version)" ]; then
    log "postgresql already installed (server $(newest_server_version))"
else
    log "installing postgresql with apt (takes a minute; log: $APT_LOG)"
    run_logged "$APT_LOG" apt-get update -qq
    run_logged "$APT_LOG" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster still missing after apt-get install postgresql"
    [ -n "$(newest_server_version)" ] ||
        die "no server binary under /usr/lib/postgresql/*/bin after apt-get install postgresql"
fi

# ---------------------------------------------------------------- 2. cluster
# pg_lsclusters columns: Ver Cluster Port Status Owner Data-directory Log-file
if [ -z "$(pg_lsclusters --no-header)" ]; then
    version="$(newest_server_version)"
    log "no PostgreSQL cluster; creating $version/main (log: $PG_CTL_LOG)"
    run_logged "$PG_CTL_LOG" pg_createcluster "$version" main
fi
read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
log "using cluster $version/$cluster on port $port ($status)"

# ---------------------------------------------------------------- 3. server
if [ "$status" = "down" ]; then
    log "starting cluster $version/$cluster (log: $PG_CTL_LOG)"
    run_logged "$PG_CTL_LOG" pg_ctlcluster "$version" "$cluster" start
fi
ready=0
for _ in $(seq 1 60); do
    if pg_isready -q -h "$HOST" -p "$port"; then
        ready=1
        break
    fi
    sleep 0.5
done
if [ "$ready" -ne 1 ]; then
    log_file="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $7 }')"
    echo "== setup-postgres: ERROR: PostgreSQL $version/$cluster did not answer on $HOST:$port within 30 s; last lines of ${log_file:-its log}:" >&2
    [ -z "$log_file" ] || tail -n 30 "$log_file" >&2 || true
    exit 1
fi
log "server answering on $HOST:$port"

# ---------------------------------------------------------------- 4. role and database
# ALTER on an existing role as well: the printed URL must work even if the password was changed.
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" = "1" ]; then
    psql_admin -c "ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
# Tests drop their databases WITH (FORCE), which ends leftover sessions: that needs pg_signal_backend.
psql_admin -c "GRANT pg_signal_backend TO $ROLE"
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
    log "creating database $DATABASE owned by $ROLE"
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi
PGPASSWORD="$PASSWORD" psql -X -q -h "$HOST" -p "$port" -U "$ROLE" -d "$DATABASE" -tA -c "SELECT 1" >/dev/null ||
    die "password login as $ROLE to $DATABASE on $HOST:$port failed; check pg_hba.conf of cluster $version/$cluster"
log "role $ROLE and database $DATABASE ready"

# ---------------------------------------------------------------- 5. URL
echo "postgresql+psycopg://$ROLE:$PASSWORD@$HOST:$port/$DATABASE"
