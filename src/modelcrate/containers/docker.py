"""The Docker engine, driven through its command line (BuildKit builds, host or no networking)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelcrate.containers.runtime_wheel import build_runtime_wheel
from modelcrate.containers.watchdog import RELEASED
from modelcrate.scaffold.generate import PROJECT_FILE
from modelcrate.scaffold.options import ProjectOptions

# Debian's docker.io client has BuildKit; some machines put a client-only docker earlier on PATH.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")
PIP_CA_ENV = "MODELCRATE_PIP_CA"


class DockerError(RuntimeError):
    """A docker step failed; the message says which and why."""


def docker(*args: str, check: bool = True, input_: str | None = None, timeout: float | None = None) -> str:
    try:
        result = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, input=input_, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise DockerError(f"no docker client at {DOCKER}: install Docker (apt-get install docker.io)") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DockerError(f"docker {args[0]} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result.stdout


def require_engine() -> None:
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=20)
    except DockerError as exc:
        raise DockerError(f"the Docker engine is not reachable ({exc}); start it (scripts/setup-docker.sh)") from None


@dataclass(frozen=True)
class Project:
    path: Path
    options: ProjectOptions

    @classmethod
    def load(cls, path: Path) -> Project:
        settings = path / PROJECT_FILE
        if not settings.is_file():
            raise DockerError(f"{path} is not a modelcrate project (no {PROJECT_FILE}); run modelcrate init first")
        return cls(path, ProjectOptions.model_validate_json(settings.read_text()))

    @property
    def image(self) -> str:
        return f"{self.options.project_name}:latest"


def place_runtime_wheel(project: Path) -> Path:
    """Put exactly one modelcrate runtime wheel in ``project/dist`` (the image installs it)."""
    dist = project / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("modelcrate-*.whl"):
        old.unlink()
    return build_runtime_wheel(dist)


def build_image(
    project: Project,
    tag: str | None = None,
    base_image: str | None = None,
    platform: str | None = None,
    pip_ca: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """``docker build`` with BuildKit; streams the build's lines to ``on_line``. Returns the tag."""
    require_engine()
    place_runtime_wheel(project.path)
    tag = tag or project.image
    args = [DOCKER, "build", "--network", "host", "--progress", "plain", "-t", tag]
    if platform:
        args += ["--platform", platform]
    if base_image:
        args += ["--build-arg", f"BASE_IMAGE={base_image}"]
    pip_ca = pip_ca or (Path(os.environ[PIP_CA_ENV]) if os.environ.get(PIP_CA_ENV) else None)
    if pip_ca:
        if not pip_ca.is_file():
            raise DockerError(f"pip CA bundle {pip_ca} does not exist")
        args += ["--secret", f"id=pip_ca,src={pip_ca}"]
    args.append(str(project.path))
    lines: list[str] = []
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "DOCKER_BUILDKIT": "1"}
    )
    for line in process.stdout:
        lines.append(line.rstrip())
        if on_line:
            on_line(line.rstrip())
    if process.wait() != 0:
        tail = "\n".join(lines[-15:])
        raise DockerError(f"docker build of {project.path} failed:\n{tail}")
    return tag


@dataclass
class Container:
    id: str
    final_log: str = ""  # what it logged, read once it has stopped


@contextmanager
def running_container(
    image: str,
    isolated: bool = True,
    port: int = 8080,
    model_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Container]:
    """``docker run IMAGE serve`` in the background; stopped (SIGTERM, then kill after 30 s) on exit. A watchdog
    process (modelcrate.containers.watchdog) starts it and removes it if this process dies first, even by
    SIGKILL. Not ``--rm``: what a container that stopped by itself logged is read after it stopped."""
    name = f"modelcrate-serve-{os.getpid()}-{secrets.token_hex(4)}"
    args = ["--name", name, "--label", f"modelcrate.started-by={socket.gethostname()}:{os.getpid()}"]
    args += ["--network", "none" if isolated else "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}"]
    if not isolated:
        args += ["-e", "MODELCRATE_BIND_HOST=127.0.0.1"]
    for variable, value in (env or {}).items():
        args += ["-e", f"{variable}={value}"]
    if model_dir:
        args += ["-v", f"{model_dir.resolve()}:/opt/ml/model:ro"]
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "modelcrate.containers.watchdog", DOCKER, *args, image, "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it must not hold the caller's output open after the caller is gone
        start_new_session=True,
    )
    try:
        report = json.loads(watchdog.stdout.readline() or '{"error": "the container watchdog stopped"}')
        if "error" in report:
            raise DockerError(f"docker run failed: {report['error']}")
        container = Container(report["id"])
        try:
            yield container
        finally:
            docker("stop", "-t", "30", container.id, check=False)
            container.final_log = container_logs(container.id)
            docker("rm", "-f", container.id, check=False)
            with contextlib.suppress(BrokenPipeError):  # a watchdog killed meanwhile has nothing left to remove
                watchdog.stdin.write(RELEASED)
                watchdog.stdin.flush()
    finally:
        with contextlib.suppress(BrokenPipeError):
            watchdog.stdin.close()
        watchdog.stdout.close()
        watchdog.wait()


def container_logs(container: str) -> str:
    result = subprocess.run([DOCKER, "logs", container], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr
