"""Transform jobs against real images: a generated project and an image reference give the same outputs as the
model directory on this machine's runtime."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from modelcrate.containers.docker import docker
from modelcrate.scaffold.sample_models import read_abalone
from tests.e2e.conftest import MODELCRATE, init_and_build, modelcrate, wait_for_ping
from tests.security.test_transform_attacks import poll

IMAGE = IMAGE_PREFIX = "e2e-transform"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return init_and_build(tmp_path_factory.mktemp("transform-project"), IMAGE, "xgboost", "json")


def test_project_image_and_model_directory_give_identical_outputs(tmp_path, project):
    rows = [",".join(["1.0" if r[0] == s else "0.0" for s in "FIM"] + r[1:8]) for r in read_abalone()[:3000]]
    (tmp_path / "in" / "nested").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_text("".join(r + "\n" for r in rows[:1000]))
    (tmp_path / "in" / "nested" / "b.csv").write_text("".join(r + "\n" for r in rows[1000:]))
    job = [
        "--input",
        str(tmp_path / "in"),
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        "text/csv",
        "--max-payload",
        "1",
    ]
    results = {}
    for kind, target in (("model", project / "model"), ("project", project), ("image", f"{IMAGE}:latest")):
        run = modelcrate("transform", str(target), *job, "--output", str(tmp_path / kind), cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        results[kind] = {p.name: p.read_bytes() for p in (tmp_path / kind).rglob("*.out")}
    assert sorted(results["model"]) == ["a.csv.out", "b.csv.out"]
    assert len(results["model"]["b.csv.out"].splitlines()) == 2000
    assert results["project"] == results["image"] == results["model"]


def test_a_framework_missing_from_the_image_fails_the_job_in_one_line_saying_to_rebuild(tmp_path, project):
    context = tmp_path / "without-xgboost"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}:latest\nRUN rm -r /opt/venv/lib/python3*/site-packages/xgboost\n"
    )
    image = f"{IMAGE}-without-xgboost:latest"
    docker("build", "--quiet", "--force-rm", "--tag", image, str(context), timeout=300)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("0,1,0,0.5,0.4,0.1,0.5,0.2,0.1,0.15\n")
    failed = modelcrate(
        "transform", image, "--input", "in", "--output", "out", "--content-type", "text/csv", cwd=tmp_path
    )
    assert failed.returncode == 2
    (line,) = [line for line in failed.stderr.splitlines() if line.strip()]  # the progress bar leaves a blank one
    assert line.startswith(f"error: the model server for {image} stopped before it was healthy: cannot start: ")
    assert "needs xgboost, which is not installed here" in line
    assert line.endswith(f"(inside {image}: add it to the project's requirements.txt and rebuild the image)")


def containers_of(image: str) -> set[str]:
    return set(docker("ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.Names}}").split())


def watchdogs_of(container: str) -> list[int]:
    """The processes still watching ``container`` (modelcrate.containers.watchdog, named in its arguments)."""
    found = []
    for pid in filter(str.isdigit, (p.name for p in Path("/proc").iterdir())):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"modelcrate.containers.watchdog" in arguments and container.encode() in arguments:
            found.append(int(pid))
    return found


def test_kill_9_of_a_job_on_an_image_removes_its_container(tmp_path, project):
    rows = [",".join(["1.0" if r[0] == s else "0.0" for s in "FIM"] + r[1:8]) for r in read_abalone()]
    (tmp_path / "in").mkdir()
    for number in range(20):  # one record per request: minutes of work, killed within its first seconds
        (tmp_path / "in" / f"{number}.csv").write_text("".join(r + "\n" for r in rows))
    image = f"{IMAGE}:latest"
    one_record_per_request = ["--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord"]
    paths = ["--input", tmp_path / "in", "--output", tmp_path / "out"]
    before = containers_of(image)
    job = subprocess.Popen(
        [MODELCRATE, "transform", image, *paths, *one_record_per_request, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started: set[str] = set()

    def container_started() -> bool:
        started.update(containers_of(image) - before)
        return bool(started)

    try:
        assert poll(container_started, 60), "the job started no container"
        (container,) = started
        environment = docker("inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", container).split()
        port = int(next(v for v in environment if v.startswith("SAGEMAKER_BIND_TO_PORT=")).partition("=")[2])
        wait_for_ping(port, 120, container)
        assert job.poll() is None, "the job ended before it could be killed mid-job"
        job.send_signal(signal.SIGKILL)
        job.wait(10)
        assert poll(lambda: container not in containers_of(image), 15), f"{container} outlived its job"
        assert poll(lambda: not watchdogs_of(container), 15), f"watchdogs left: {watchdogs_of(container)}"
    finally:
        job.kill()
        job.wait()
        for name in started:
            docker("rm", "-f", name, check=False)
