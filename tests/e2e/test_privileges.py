"""The privilege model in real containers: a generated image starts as root (as SageMaker starts it), serves a
model mounted root-only (directories 0700, files 0600, owned by root, as SageMaker and its SDK mount
model.tar.gz), and its workers answer as uid 1000 with no_new_privs; `docker run --user 1234` (Kubernetes
runAsUser) with readable files serves as that uid; with an unreadable mount it stops with one line.

Needs the Docker engine (fails loudly without it); images build on local/debian-python:bookworm.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modelcrate.containers.docker import DOCKER, docker
from modelcrate.containers.image_test import serving_processes, unpacked_model
from tests.conftest import free_port
from tests.e2e.conftest import init_and_build, modelcrate, wait_for_ping

IMAGE_PREFIX = "e2e-priv-"
BAKED, S3 = f"{IMAGE_PREFIX}baked", f"{IMAGE_PREFIX}s3"
MODEL_USER_UID = 1000  # the generated Dockerfile's `model` user
OTHER_UID = 1234


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    """A project whose sample model is in the image (COPY model/ /opt/ml/model/)."""
    return init_and_build(tmp_path_factory.mktemp("baked"), BAKED, "xgboost", "json")


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Path:
    """A project whose model comes as model.tar.gz through ModelDataUrl: nothing at /opt/ml/model in the image."""
    return init_and_build(tmp_path_factory.mktemp("s3"), S3, "xgboost", "json", "--model-source", "s3")


@pytest.fixture
def model_tar(sample_model, tmp_path) -> Path:
    archive = tmp_path / "model.tar.gz"
    source = sample_model("xgboost", "json", "regression")
    subprocess.run(["tar", "-C", str(source), "-czf", str(archive), "."], check=True)
    return archive


@pytest.fixture
def root_only_model(model_tar) -> Iterator[Path]:
    """model.tar.gz unpacked as the platform unpacks it: root-owned, 0700 directories, 0600 files."""
    with unpacked_model(model_tar) as model_dir:
        yield model_dir


@contextmanager
def serving(image: str, *options: str, model_dir: Path | None = None) -> Iterator[tuple[str, int]]:
    """``docker run IMAGE serve`` on host networking (127.0.0.1 only), as the platform runs it plus ``options``;
    yields (container id, port) once /ping answers."""
    port = free_port()
    args = ["run", "-d", "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}"]
    args += ["-e", "MODELCRATE_BIND_HOST=127.0.0.1", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", *options]
    if model_dir is not None:
        args += ["-v", f"{model_dir}:/opt/ml/model:ro"]
    container = docker(*args, f"{image}:latest", "serve").strip()
    try:
        wait_for_ping(port, 240, container)
        yield container, port
    finally:
        docker("rm", "--force", container, check=False)


def predict(port: int, model_dir_in_host: Path) -> float:
    """The answer to the model's first recorded sample (as CSV)."""
    record = json.loads((model_dir_in_host / "modelcrate.json").read_text())["samples"][0]["input"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=",".join(map(repr, record)).encode(),
        headers={"Content-Type": "text/csv", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["predictions"][0]


def recorded(model_dir: Path) -> float:
    return json.loads((model_dir / "modelcrate.json").read_text())["samples"][0]["expected"]["prediction"]


def proc_status(container: str, pid: int) -> dict[str, str]:
    text = docker("exec", container, "cat", f"/proc/{pid}/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.mark.parametrize("image", [BAKED, S3])
def test_a_root_only_mount_is_served_by_workers_that_dropped_to_uid_1000(image, baked, s3, root_only_model):
    assert {(p.stat().st_uid, p.stat().st_mode & 0o777) for p in [root_only_model, *root_only_model.iterdir()]} == {
        (0, 0o700),
        (0, 0o600),
    }
    with serving(image, model_dir=root_only_model) as (container, port):
        assert predict(port, root_only_model) == pytest.approx(recorded(root_only_model), rel=1e-6)
        workers = serving_processes(container, port)
        assert len(workers) == 2, workers
        for worker in workers:
            assert set(worker.uids) == {MODEL_USER_UID} and 0 not in worker.gids and worker.no_new_privs, worker
        supervisor = proc_status(container, 1)
        assert supervisor["Uid"].split()[0] == "0"  # PID 1 starts as root, as SageMaker starts it; it answers nothing
        assert {pid: proc_status(container, pid)["PPid"] for pid in (w.pid for w in workers)} == {
            w.pid: "1" for w in workers
        }


def test_test_image_mounts_a_model_tar_root_only_and_shows_who_answers(s3, model_tar):
    tested = modelcrate("test-image", S3, "--model-tar", str(model_tar), cwd=s3.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    answers = next(line for line in tested.stdout.splitlines() if "answers requests as non-root" in line)
    assert "pass" in answers and f"uid {MODEL_USER_UID}" in answers
    assert "no_new_privs" in tested.stdout  # the table wraps the detail onto its next line


def test_started_as_another_uid_with_readable_files_nothing_is_dropped(baked, sample_model):
    """`docker run --user 1234`: the baked-in model is world-readable, so the workers serve as 1234."""
    with serving(BAKED, "--user", str(OTHER_UID)) as (container, port):
        assert predict(port, sample_model("xgboost", "json", "regression")) == pytest.approx(
            recorded(sample_model("xgboost", "json", "regression")), rel=1e-6
        )
        workers = serving_processes(container, port)
        assert workers and all(set(w.uids) == {OTHER_UID} and not w.no_new_privs for w in workers), workers


def test_started_as_another_uid_an_unreadable_mount_stops_with_one_line(s3, root_only_model):
    mount = f"{root_only_model}:/opt/ml/model:ro"
    run = subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "--user", str(OTHER_UID), "-v", mount, f"{S3}:latest", "serve"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    lines = (run.stdout + run.stderr).splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["message"] == (
        f"cannot start: cannot read /opt/ml/model (owner root, mode 0700) as uid {OTHER_UID}: start the container "
        f"as root (the default: workers drop to uid {MODEL_USER_UID} after loading) or make the model files readable "
        f"by uid {OTHER_UID}"
    )


def test_the_image_keeps_its_model_user_and_sets_no_user(baked):
    assert docker("image", "inspect", "--format", "{{.Config.User}}", f"{BAKED}:latest").strip() == ""
    passwd = docker("run", "--rm", "--network", "none", "--entrypoint", "getent", f"{BAKED}:latest", "passwd", "model")
    assert passwd.split(":")[2] == str(MODEL_USER_UID)
