#!/usr/bin/env bash
# Get the official SageMaker Python SDK (v2) in its own virtualenv for the SDK local-mode tests
# (tests/sdk), and print the virtualenv's path on the last line.
#
# Idempotent and safe to run many times (concurrent runs wait for each other); fast when everything
# is already in place.
#   1. installs Debian's docker-compose with apt when neither `docker compose` nor `docker-compose`
#      works: local mode runs its containers through one of them
#   2. creates the virtualenv (MODELCRATE_SDK_VENV, default ~/.cache/modelcrate-sdk/venv: outside the
#      repository) and installs 'sagemaker>=2,<3' into it, unless it already holds a 2.x SDK
#
# The SDK stays out of the project's .venv: its pins (boto3, numpy, protobuf...) must not decide ours.
# Progress goes to stderr so that stdout is only the path:
#   MODELCRATE_TEST_SAGEMAKER_SDK_VENV="$(bash scripts/setup-sagemaker-sdk.sh | tail -n 1)"
set -euo pipefail

VENV="${MODELCRATE_SDK_VENV:-$HOME/.cache/modelcrate-sdk/venv}"
PYTHON="${PYTHON:-python3}"
APT_LOG=/var/log/modelcrate-setup-apt.log
LOCK_FILE="${TMPDIR:-/tmp}/modelcrate-setup-sagemaker-sdk.lock"

log() { echo "== setup-sagemaker-sdk: $*" >&2; }
die() { echo "== setup-sagemaker-sdk: ERROR: $*" >&2; exit 1; }

exec 9>"$LOCK_FILE"
flock 9

# ---------------------------------------------------------------- 1. docker-compose
if docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; then
    log "docker compose already available"
else
    [ "$(id -u)" -eq 0 ] || die "neither 'docker compose' nor 'docker-compose' works; install docker-compose (apt) as root"
    log "installing Debian's docker-compose with apt (log: $APT_LOG)"
    mkdir -p "$(dirname "$APT_LOG")"
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose
    } >>"$APT_LOG" 2>&1 </dev/null 9>&- || {
        tail -n 30 "$APT_LOG" >&2
        die "apt-get install docker-compose failed"
    }
    docker-compose version >/dev/null 2>&1 || die "docker-compose still does not run after apt-get install"
fi

# ---------------------------------------------------------------- 2. the SDK's virtualenv
sdk_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("sagemaker"))' 2>/dev/null || true
}
version="$(sdk_version)"
if [[ "$version" == 2.* ]]; then
    log "SageMaker Python SDK $version already in $VENV"
else
    log "creating $VENV with sagemaker>=2,<3 (takes about a minute)"
    rm -rf -- "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    # Retried: one dropped download from the package index must not fail a whole CI run.
    for attempt in 1 2 3; do
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --retries 10 'sagemaker>=2,<3' >&2 && break
        [ "$attempt" -lt 3 ] || die "pip install 'sagemaker>=2,<3' failed 3 times"
        log "pip install failed (attempt $attempt of 3); retrying in 10 s"
        sleep 10
    done
    version="$(sdk_version)"
    [[ "$version" == 2.* ]] || die "the SDK in $VENV reports version '$version', expected 2.x"
    log "SageMaker Python SDK $version installed in $VENV"
fi

echo "$VENV"
