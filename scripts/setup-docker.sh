#!/usr/bin/env bash
# Get a working Docker engine plus the local base image `local/debian-python:bookworm`.
#
# Idempotent and safe to run many times; fast when everything is already in place.
#   1. installs docker.io + debootstrap with apt if /usr/bin/docker, dockerd or debootstrap is missing
#   2. starts dockerd (--bridge=none --iptables=false) in the background if the engine does not answer
#   3. builds the base image from a cached root-filesystem tarball kept outside the repo
#      (MODELCRATE_BASE_TARBALL, default /var/cache/modelcrate/debian-python-bookworm.tar),
#      creating the tarball with debootstrap first if it is missing
#   4. checks that `python3 -c 'import venv, ssl'` works in the image
#   5. bounds the BuildKit cache (MODELCRATE_BUILD_CACHE_KEEP, default 12GB): every build of a new
#      runtime wheel adds layers, and an unbounded cache once filled this disk
#   6. when the image was just created, or MODELCRATE_DOCKER_SELFTEST=1: a throwaway BuildKit build
#      using a secret mount (the host CA bundle) and a `pip install` from PyPI inside the build
#
# Always calls /usr/bin/docker (from docker.io, has BuildKit); /usr/local/bin/docker may be a
# client-only binary without it. Exports nothing.
set -euo pipefail

DOCKER=/usr/bin/docker
IMAGE="local/debian-python:bookworm"
TARBALL="${MODELCRATE_BASE_TARBALL:-/var/cache/modelcrate/debian-python-bookworm.tar}"
DOCKERD_LOG="${MODELCRATE_DOCKERD_LOG:-/var/log/modelcrate-dockerd.log}"
APT_LOG=/var/log/modelcrate-setup-apt.log
DEBOOTSTRAP_LOG=/var/log/modelcrate-debootstrap.log
SELFTEST="${MODELCRATE_DOCKER_SELFTEST:-0}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CHECK_TAG="modelcrate-buildkit-check"

log() { echo "== setup-docker: $*"; }
die() { echo "== setup-docker: ERROR: $*" >&2; exit 1; }

# run_logged LOGFILE CMD...: run CMD with its (long) output appended to LOGFILE; on failure show the
# tail of LOGFILE and exit with CMD's status.
run_logged() {
    local logfile="$1" rc=0
    shift
    mkdir -p "$(dirname "$logfile")"
    echo "--- $(date -u '+%Y-%m-%dT%H:%M:%SZ') $*" >>"$logfile"
    "$@" >>"$logfile" 2>&1 </dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "== setup-docker: ERROR: '$*' failed (exit $rc); last lines of $logfile:" >&2
        tail -n 30 "$logfile" >&2 || true
        exit "$rc"
    fi
}

tmp_paths=()
cleanup() {
    local p m
    for p in "${tmp_paths[@]+"${tmp_paths[@]}"}"; do
        # An interrupted debootstrap can leave proc/sys mounted inside its target: unmount those
        # first, and never let rm cross into another file system.
        if [ -d "$p" ]; then
            awk -v root="$p/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r |
                while read -r m; do umount -l "$m" 2>/dev/null || true; done
        fi
        rm -rf --one-file-system -- "$p" || true
    done
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (installs packages, starts dockerd, runs debootstrap)"
fi

# ---------------------------------------------------------------- 1. packages
if [ -x "$DOCKER" ] && command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then
    log "docker.io and debootstrap already installed"
else
    log "installing docker.io and debootstrap with apt (takes a minute; log: $APT_LOG)"
    run_logged "$APT_LOG" apt-get update -qq
    run_logged "$APT_LOG" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap
    [ -x "$DOCKER" ] || die "$DOCKER still missing after apt-get install docker.io"
fi

# ---------------------------------------------------------------- 2. engine
if "$DOCKER" info >/dev/null 2>&1; then
    log "Docker engine is answering"
else
    log "Docker engine not answering; starting dockerd --bridge=none --iptables=false (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: dockerd runs in its own session and survives this script and its terminal.
    setsid nohup dockerd --bridge=none --iptables=false >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    log "dockerd started (pid $dockerd_pid); waiting up to 60 s for it to answer"
    ready=0
    for _ in $(seq 1 60); do
        if "$DOCKER" info >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 1
    done
    if [ "$ready" -ne 1 ]; then
        echo "== setup-docker: dockerd did not answer within 60 s; last lines of $DOCKERD_LOG:" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    log "Docker engine is answering"
fi

# ---------------------------------------------------------------- 3. base image
# The Debian mirror apt already uses (deb822 .sources or one-line .list format).
debian_mirror() {
    local f url=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        url="$(awk '
            /^[[:space:]]*$/ { uris=""; suites=""; next }
            /^URIs:/   { uris=$2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suites="bookworm" }
            uris != "" && suites == "bookworm" { print uris; exit }
        ' "$f")"
        [ -n "$url" ] && break
    done
    if [ -z "$url" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            url="$(awk '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == "bookworm") { print $i; exit }
                }
            ' "$f")"
            [ -n "$url" ] && break
        done
    fi
    echo "${url:-http://deb.debian.org/debian}"
}

image_created=0
if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already present"
else
    if [ -s "$TARBALL" ]; then
        log "using cached root filesystem $TARBALL"
    else
        mirror="$(debian_mirror)"
        log "no cached root filesystem at $TARBALL; running debootstrap (minbase + python3) from $mirror (takes a few minutes; log: $DEBOOTSTRAP_LOG)"
        tar_dir="$(dirname "$TARBALL")"
        mkdir -p "$tar_dir"
        rootfs="$(mktemp -d /var/tmp/modelcrate-rootfs.XXXXXX)"
        tmp_paths+=("$rootfs")
        run_logged "$DEBOOTSTRAP_LOG" debootstrap --variant=minbase \
            --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
        # Drop the package lists and the .deb cache: they are not needed in the image.
        rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/*
        # Write to a temp file next to the target, then rename: never leaves a half tarball.
        tmp_tar="$(mktemp "$tar_dir/.debian-python-bookworm.tar.XXXXXX")"
        tmp_paths+=("$tmp_tar")
        tar --numeric-owner -C "$rootfs" -cf "$tmp_tar" .
        chmod 0644 "$tmp_tar"
        mv -f "$tmp_tar" "$TARBALL"
        rm -rf --one-file-system -- "$rootfs"
        log "cached root filesystem written to $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    fi
    log "importing $TARBALL as $IMAGE"
    "$DOCKER" import - "$IMAGE" <"$TARBALL" >/dev/null
    image_created=1
    log "image $IMAGE created"
fi

# ---------------------------------------------------------------- 4. verify
log "checking python3 (venv, ssl) in $IMAGE"
out="$("$DOCKER" run --rm --network none "$IMAGE" python3 -c 'import venv, ssl; print("ok")')"
[ "$out" = "ok" ] || die "python3 check in $IMAGE printed '$out', expected 'ok'"
log "python3 in $IMAGE: ok"

# ---------------------------------------------------------------- 5. bounded build cache
# Keeps the most recently used layers (framework installs shared by all images) and drops the rest.
"$DOCKER" builder prune --force --keep-storage "${MODELCRATE_BUILD_CACHE_KEEP:-12GB}" >/dev/null
log "BuildKit cache bounded to ${MODELCRATE_BUILD_CACHE_KEEP:-12GB}"

# ---------------------------------------------------------------- 6. BuildKit self-test
if [ "$image_created" -eq 1 ] || [ "$SELFTEST" = "1" ]; then
    log "BuildKit self-test: secret mount + pip install from PyPI inside a build"
    ctx="$(mktemp -d)"
    tmp_paths+=("$ctx")
    cat >"$ctx/Dockerfile" <<EOF
FROM $IMAGE
RUN --mount=type=secret,id=pip_ca python3 -c "import os; print('secret mounted:', os.path.exists('/run/secrets/pip_ca'))"
RUN --mount=type=secret,id=pip_ca python3 -m venv /v && PIP_CERT=/run/secrets/pip_ca /v/bin/pip install --no-cache-dir --disable-pip-version-check six && /v/bin/python -c "import six; print('pip from PyPI ok: six', six.__version__)"
EOF
    build_log="$ctx/build.log"
    build_rc=0
    DOCKER_BUILDKIT=1 "$DOCKER" build --no-cache --network host \
        --secret id=pip_ca,src="$CA_BUNDLE" --progress=plain \
        -t "$CHECK_TAG" "$ctx" >"$build_log" 2>&1 || build_rc=$?
    "$DOCKER" image rm -f "$CHECK_TAG" >/dev/null 2>&1 || true
    if [ "$build_rc" -ne 0 ]; then
        echo "== setup-docker: BuildKit self-test build failed (exit $build_rc); last lines:" >&2
        tail -n 40 "$build_log" >&2 || true
        if ! grep -q "secret mounted: True" "$build_log"; then
            die "BuildKit secret mount does not work"
        fi
        die "pip inside the build could not install from PyPI with the CA secret"
    fi
    grep -q "secret mounted: True" "$build_log" || die "BuildKit build ran but the secret was not mounted"
    log "BuildKit secret mount: ok"
    log "pip inside the build reached PyPI: $(grep -o 'pip from PyPI ok: six [0-9.]*' "$build_log" | tail -n 1)"
else
    log "skipping BuildKit self-test (image already existed; set MODELCRATE_DOCKER_SELFTEST=1 to run it)"
fi

log "done: Docker engine up, $IMAGE ready"
