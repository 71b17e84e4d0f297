"""End-to-end tests build and run real images. Every module here needs the Docker engine and fails loudly
without it (scripts/setup-docker.sh starts it; .ci/run runs that first). Images build on the local base image
local/debian-python:bookworm; a module names its images IMAGE_PREFIX... and they are removed when it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from modelcrate.containers.docker import DockerError, container_logs, docker, require_engine

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
BASE_IMAGE = os.environ.get("MODELCRATE_TEST_BASE_IMAGE", "local/debian-python:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module", autouse=True)
def engine(request):
    try:
        require_engine()
    except DockerError as exc:
        pytest.fail(f"these tests need Docker: {exc}")
    yield
    remove_images(request.module.IMAGE_PREFIX)


def remove_images(prefix: str) -> None:
    """The images named PREFIX* (each is hundreds of MB to GBs: a machine running CI often must not fill up),
    only this module's: other modules' may be in use by tests running beside it."""
    names = docker("images", "--filter", f"reference={prefix}*", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    # An image with children cannot be removed: those built FROM another here have the longer names.
    for name in sorted(names.split(), key=len, reverse=True):
        docker("image", "rm", "--force", name, check=False)
    docker("image", "prune", "--force", check=False)


def modelcrate(*args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """The modelcrate command as a user runs it, with this machine's CA bundle for pip inside builds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")}
    env["MODELCRATE_PIP_CA"] = CA_BUNDLE
    return subprocess.run(
        [MODELCRATE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


def init_and_build(root: Path, name: str, framework: str, model_format: str | None, *options: str) -> Path:
    """A generated project (the sample model) and its image NAME:latest, as a user makes them."""
    flags = ["--framework", framework, *(["--model-format", model_format] if model_format else []), *options]
    created = modelcrate("init", name, *flags, "--base-image", BASE_IMAGE, "--yes", cwd=root)
    assert created.returncode == 0, created.stderr
    built = modelcrate("build", name, cwd=root)
    assert built.returncode == 0, built.stderr
    return root / name


def wait_for_ping(port: int, seconds: float, container: str | None = None) -> None:
    """Return once 127.0.0.1:PORT answers /ping with 200; fail after SECONDS, with CONTAINER's log when given."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as ping:
                if ping.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"no answer to /ping on port {port} within {seconds} s\n"
                + (container_logs(container) if container else "")
            )
        time.sleep(0.2)
