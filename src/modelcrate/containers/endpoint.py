"""Start a model server the way SageMaker would and talk to it over HTTP only.

A server is either a model directory served by this machine's runtime (a ``serve`` process) or an image
run with ``docker run --network host IMAGE serve``. Transform jobs and inference pipelines are clients of
the container contract: they use nothing but ``/ping``, ``/execution-parameters`` and ``/invocations``.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.containers.docker import DockerError, container_logs, docker, running_container

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 35.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ServerError(RuntimeError):
    """A model server could not start or answer; the message says which and shows what it logged."""


@dataclass(frozen=True)
class ServerSpec:
    """What to run: exactly one of ``model_dir`` (local runtime) or ``image``; with an image, ``model_dir``
    is mounted at /opt/ml/model (as SageMaker unpacks ModelDataUrl there)."""

    model_dir: Path | None = None
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    hostname: str | None = None  # ContainerHostname in a pipeline

    def __post_init__(self):
        if not self.model_dir and not self.image:
            raise ValueError("a model server needs a model directory or an image")

    @property
    def name(self) -> str:
        return self.hostname or self.image or str(self.model_dir)


@dataclass
class Endpoint:
    """A running server on 127.0.0.1."""

    spec: ServerSpec
    port: int
    logs: Callable[[], str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def execution_parameters(port: int) -> dict | None:
    """The container's ``GET /execution-parameters`` answer, or None when it has none (404, bad JSON)."""
    try:
        status, _, body = http_request(port, "GET", "/execution-parameters", timeout=30)
        answer = json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def _one_line(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


def startup_failure(log: str, image: str | None = None) -> str:
    """Why a server gave up, in one line: the first error it logged (a JSON line's ``message``), else its last
    line (another server's log).
    A module missing inside an image is installed by rebuilding the image, not by installing it here."""
    lines = [line for line in log.splitlines() if line.strip()]
    reason = _one_line(lines[-1]) if lines else "it logged nothing"
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("ERROR", "CRITICAL") and entry.get("message"):
            reason = _one_line(str(entry["message"]))
            break
    if image and ("not installed" in reason or "No module named" in reason):
        reason += f" (inside {image}: add it to the project's requirements.txt and rebuild the image)"
    return reason


def _wait_ready(
    port: int, alive: Callable[[], bool], logs: Callable[[], str], name: str, timeout: float, image: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            reason = startup_failure(logs(), image)
            raise ServerError(f"the model server for {name} stopped before it was healthy: {reason}")
        try:
            if http_request(port, "GET", "/ping", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    reason = startup_failure(logs(), image)
    raise ServerError(f"the model server for {name} was not healthy within {timeout:.0f} s: {reason}")


def _tether_to_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM (its server then stops its workers and
    exits) when this process dies, even by SIGKILL; None where prctl does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def tether() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the tether held
            os._exit(1)

    return tether


@contextmanager
def _local_runtime(spec: ServerSpec, port: int, workers: int | None) -> Iterator[Endpoint]:
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(Path(spec.model_dir).resolve()),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MODELCRATE_BIND_HOST": "127.0.0.1",
        **({"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)} if workers else {}),
        **spec.env,
    }
    with tempfile.NamedTemporaryFile(prefix="modelcrate-serve-", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(
            [sys.executable, "-m", "modelcrate.serving"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_tether_to_this_process(),
            # Out of the caller's process group: a terminal's Ctrl-C goes to the caller, who stops this server once
            # it no longer needs it (a pipeline's front server first answers what it received, through it).
            start_new_session=True,
        )

    def logs() -> str:
        return log_path.read_text(errors="replace")

    try:
        _wait_ready(port, lambda: process.poll() is None, logs, spec.name, READY_TIMEOUT_S)
        yield Endpoint(spec, port, logs)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # drains in-flight requests
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_path.unlink(missing_ok=True)


@contextmanager
def _container(spec: ServerSpec, port: int, workers: int | None) -> Iterator[Endpoint]:
    env = {**({"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)} if workers else {}), **spec.env}
    model_dir = Path(spec.model_dir) if spec.model_dir else None
    try:
        with running_container(spec.image, isolated=False, port=port, model_dir=model_dir, env=env) as container:

            def alive() -> bool:
                return docker("inspect", "-f", "{{.State.Running}}", container.id, check=False).strip() == "true"

            def logs() -> str:
                return container_logs(container.id)

            _wait_ready(port, alive, logs, spec.name, READY_TIMEOUT_S, spec.image)
            yield Endpoint(spec, port, logs)
    except DockerError as exc:
        raise ServerError(str(exc)) from None


@contextmanager
def running_server(spec: ServerSpec, port: int | None = None, workers: int | None = None) -> Iterator[Endpoint]:
    """Start one model server, wait until ``/ping`` answers 200, stop it (draining) on exit."""
    start = _container if spec.image else _local_runtime
    with start(spec, port or free_port(), workers) as endpoint:
        yield endpoint


@contextmanager
def running_servers(specs: list[ServerSpec], workers: int | None = None) -> Iterator[list[Endpoint]]:
    """Several servers, each on its own port; all stopped on exit, even when one fails to start."""
    with ExitStack() as stack:
        yield [stack.enter_context(running_server(spec, workers=workers)) for spec in specs]
