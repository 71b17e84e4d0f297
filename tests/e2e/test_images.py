"""Real images: for every framework/format pair, init -> build -> test-image, as a user runs them.

These need the Docker engine (scripts/setup-docker.sh starts it; .ci/run runs that first) and fail
loudly without it. Images build on the local base image local/debian-python:bookworm.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from modelcrate.containers.docker import DockerError, docker, require_engine
from tests.conftest import PAIRS, free_port

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
BASE_IMAGE = os.environ.get("MODELCRATE_TEST_BASE_IMAGE", "local/debian-python:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module", autouse=True)
def engine():
    try:
        require_engine()
    except DockerError as exc:
        pytest.fail(f"these tests need Docker: {exc}")
    yield
    built = docker("images", "--filter", "reference=e2e-*", "--quiet", check=False).split()
    if built:  # each is hundreds of MB to GBs: a machine running CI often must not fill up
        docker("image", "rm", "--force", *set(built), check=False)
    docker("image", "prune", "--force", check=False)


def test_run_serves_on_the_host_and_drains_on_interrupt(tmp_path):
    created = modelcrate(
        "init",
        "e2e-run",
        "--framework",
        "xgboost",
        "--model-format",
        "ubj",
        "--base-image",
        BASE_IMAGE,
        "--yes",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    assert modelcrate("build", "e2e-run", cwd=tmp_path).returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [MODELCRATE, "run", "e2e-run", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as ping:
                    if ping.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        row = b"0.0,1.0,0.0,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=row, headers={"Content-Type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert len(json.loads(answer.read())["predictions"]) == 1
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "draining" in stderr  # the container's own log, shown after it stopped


def modelcrate(*args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")}
    env["MODELCRATE_PIP_CA"] = CA_BUNDLE
    return subprocess.run(
        [MODELCRATE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("framework,fmt", PAIRS, ids=[f"{f}-{m}" for f, m in PAIRS])
def test_init_build_and_test_image(tmp_path, framework, fmt):
    name = f"e2e-{framework}-{fmt}"
    task = "classification" if fmt in ("joblib", "ubj", "h5") else "regression"  # both tasks across the pairs
    created = modelcrate(
        "init",
        name,
        "--framework",
        framework,
        "--model-format",
        fmt,
        "--model-source",
        "sample",
        "--sample-task",
        task,
        "--base-image",
        BASE_IMAGE,
        "--yes",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    built = modelcrate("build", name, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    tested = modelcrate("test-image", name, cwd=tmp_path, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # user, label, health, then 5 samples x 3 content types
    assert tested.stdout.count("pass") == 18 and "FAIL" not in tested.stdout


def test_s3_source_serves_a_model_tar(tmp_path, sample_model):
    created = modelcrate(
        "init",
        "e2e-s3",
        "--framework",
        "xgboost",
        "--model-format",
        "json",
        "--model-source",
        "s3",
        "--base-image",
        BASE_IMAGE,
        "--yes",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    assert "COPY model/" not in (tmp_path / "e2e-s3" / "Dockerfile").read_text()
    assert modelcrate("build", "e2e-s3", cwd=tmp_path).returncode == 0
    without_model = modelcrate("test-image", "e2e-s3", cwd=tmp_path)
    assert without_model.returncode == 1 and "give --model-tar" in without_model.stderr
    archive = tmp_path / "model.tar.gz"
    subprocess.run(
        ["tar", "-C", str(sample_model("xgboost", "json", "regression")), "-czf", str(archive), "."], check=True
    )
    tested = modelcrate("test-image", "e2e-s3", "--model-tar", str(archive), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_wrong_prediction_fails_the_image_test(tmp_path):
    """The parity check has teeth: an image whose handler answers differently is reported and exits 1."""
    created = modelcrate(
        "init",
        "e2e-wrong",
        "--framework",
        "xgboost",
        "--model-format",
        "json",
        "--base-image",
        BASE_IMAGE,
        "--yes",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    (tmp_path / "e2e-wrong" / "code" / "inference.py").write_text(
        "def predict_fn(data, model):\n    prediction = model.predict(data)\n    return prediction.values + 1\n"
    )
    assert modelcrate("build", "e2e-wrong", cwd=tmp_path).returncode == 0
    tested = modelcrate("test-image", "e2e-wrong", cwd=tmp_path)
    assert tested.returncode == 1 and "FAIL" in tested.stdout
