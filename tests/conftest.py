"""Shared fixtures: Abalone sample models (trained once per session), real server processes, and the modelcrate
command line run in this process."""

from __future__ import annotations

import fcntl
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcrate import cli
from modelcrate.cli.entry import main as modelcrate_main
from modelcrate.predictors import FORMATS_OF_FRAMEWORK
from modelcrate.scaffold.sample_models import create_sample_model

SERVE = str(Path(sys.executable).with_name("serve"))
if "modelcrate.serving" not in Path(SERVE).read_text(errors="replace"):
    # Ray also installs a `serve` command; whichever package was installed last owns it.
    pytest.exit(f"{SERVE} is not modelcrate's serve; run: pip install --no-deps --force-reinstall -e .", returncode=3)
MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
PAIRS = [(framework, fmt) for framework, formats in FORMATS_OF_FRAMEWORK.items() for fmt in formats]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Server:
    """A real ``serve`` process on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 30.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def invoke(
        self, body: bytes | str, content_type: str | None = "text/csv", accept: str | None = None, **headers
    ) -> Response:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if content_type is not None:
            sent["Content-Type"] = content_type
        if accept is not None:
            sent["Accept"] = accept
        return self.request("POST", "/invocations", body.encode() if isinstance(body, str) else body, sent)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_ready_workers(self, count: int, deadline_s: float = 60.0) -> None:
        """/ping answers once one worker is ready; the others may still be loading (as root, when started so). The
        supervisor's "serving" line follows the first worker's "worker ready"."""
        deadline = time.monotonic() + deadline_s
        while self.log().count('"message": "worker ready"') < count or '"message": "serving"' not in self.log():
            assert time.monotonic() < deadline, f"fewer than {count} workers ready within {deadline_s} s:\n{self.log()}"
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 35.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_healthy(server: Server, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if server.request("GET", "/ping", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not healthy within {deadline_s} s:\n{server.log()}")


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory):
    """``sample_model(framework, format, task)`` -> model directory, trained once per session: under
    pytest-xdist, once for all its processes (their base directories share a parent made for this run)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "samples"
    root.mkdir(exist_ok=True)

    def make(framework: str, model_format: str, task: str = "regression") -> Path:
        model_dir = root / "-".join((framework, model_format, task))
        with (root / f"{model_dir.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be training this very model
            if not model_dir.exists():
                training = root / f".{model_dir.name}.{os.getpid()}"
                create_sample_model(framework, model_format, task, training)
                training.rename(model_dir)  # whole or absent: a process stopped mid-training leaves no half model
        return model_dir

    return make


def launch(model_dir: Path, log_dir: Path, env: dict | None = None, workers: int = 1, wait: bool = True) -> Server:
    port = free_port()
    full_env = {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "MODELCRATE_BIND_HOST": "127.0.0.1",
        **(env or {}),
    }
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([SERVE], env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    if wait:
        wait_healthy(server)
    return server


@pytest.fixture
def start_server(tmp_path):
    """``start_server(model_dir, env=..., workers=1, wait=True)`` -> a running Server, stopped after the test."""
    started: list[Server] = []

    def start(model_dir: Path, **kwargs) -> Server:
        server = launch(model_dir, tmp_path, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def xgboost_imported_at_start(tmp_path_factory) -> dict[str, str]:
    """Environment for a multi-model endpoint run as root: its workers load models after dropping root, and this
    machine's Python (its standard library included) may sit in root-only /root, out of their reach. So every
    process of the server imports XGBoost (and the standard modules it needs) at start, while still root."""
    directory = tmp_path_factory.mktemp("startup-imports")
    (directory / "sitecustomize.py").write_text("import xgboost  # noqa: F401\n")
    return {"PYTHONPATH": str(directory)}


@pytest.fixture(scope="session")
def session_server(sample_model, tmp_path_factory):
    """``session_server(framework, format, task)`` -> a Server shared by the whole session."""
    log_dir = tmp_path_factory.mktemp("logs")
    servers: dict[tuple, Server] = {}

    def get(framework: str, model_format: str, task: str = "regression") -> Server:
        key = (framework, model_format, task)
        if key not in servers:
            servers[key] = launch(sample_model(*key), log_dir)
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()


MOTO = str(Path(sys.executable).with_name("moto_server"))
AWS_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_client(env: dict, service: str):
    """A boto3 client of moto's server (``env`` from moto_env), with the test credentials."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="module")
def moto_env():
    """moto's server on 127.0.0.1 (S3 and SageMaker are AWS services: moto stands in for them only): yields
    the environment that points boto3 at it, with test credentials."""
    port = free_port()
    server = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    env = {**AWS_TEST_CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    client = moto_client(env, "s3")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's server did not start")
            time.sleep(0.2)
    yield env
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def aws_environment(moto_env):
    """moto_env set in this process's environment, so that code under test builds its default boto3 clients
    against moto's server."""
    with pytest.MonkeyPatch.context() as environment:
        for name, value in moto_env.items():
            environment.setenv(name, value)
        yield moto_env


@pytest.fixture
def run_modelcrate(capsys):
    """``run_modelcrate(*args, env={NAME: value, or None to unset}, input=None, separate_process=False)`` -> a
    CompletedProcess of ``modelcrate ARGS``. By default the console script's entry point runs in this process (no
    interpreter start, no imports per call), its exit code, stdout and stderr as a fresh process would give them;
    ``separate_process`` runs the installed script, for what only a real process shows (a crash's traceback,
    anything printed at exit)."""

    def run(
        *args, env: dict[str, str | None] | None = None, input: str | None = None, separate_process: bool = False
    ) -> subprocess.CompletedProcess:
        argv = [MODELCRATE, *map(str, args)]
        if separate_process:
            environment = {**os.environ, **(env or {})}
            environment = {name: value for name, value in environment.items() if value is not None}
            return subprocess.run(argv, capture_output=True, text=True, input=input, env=environment, timeout=300)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            patch.setattr(sys, "argv", argv)
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((input or "").encode())))
            # click names the program `python -m pytest...` when __main__ is a package's; the script's is not.
            patch.setattr(sys.modules["__main__"], "__package__", None)
            patch.setattr(sys, "excepthook", sys.excepthook)  # typer installs its own on every call
            # Rich chose the stderr console's colours at import (a terminal's under pytest -s): choose them again
            # as a fresh process would, now that stderr is captured and the environment set.
            patch.setattr(cli.err, "_color_system", cli.err._detect_color_system())
            capsys.readouterr()
            try:
                modelcrate_main()
                code = 0
            except SystemExit as exc:
                code = exc.code
            if code is not None and not isinstance(code, int):  # as the interpreter: the message, exit 1
                print(code, file=sys.stderr)
                code = 1
            captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code or 0, captured.out, captured.err)

    return run
