"""Real images: for every framework/format pair, init -> build -> test-image, as a user runs them.

These need the Docker engine (scripts/setup-docker.sh starts it; .ci/run runs that first) and fail
loudly without it. Images build on the local base image local/debian-python:bookworm.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

import pytest

from modelcrate.containers.docker import container_logs, running_container
from tests.conftest import PAIRS, free_port
from tests.e2e.conftest import BASE_IMAGE, MODELCRATE, init_and_build, modelcrate, wait_for_ping

IMAGE_PREFIX = "e2e-img-"


def test_run_serves_on_the_host_and_drains_on_interrupt(tmp_path):
    init_and_build(tmp_path, "e2e-img-run", "xgboost", "ubj")
    port = free_port()
    process = subprocess.Popen(
        [MODELCRATE, "run", "e2e-img-run", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_ping(port, 60)
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


@pytest.mark.parametrize("framework,fmt", PAIRS, ids=[f"{f}-{m}" for f, m in PAIRS])
def test_init_build_and_test_image(tmp_path, framework, fmt):
    name = f"e2e-img-{framework}-{fmt}"
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
    project = init_and_build(tmp_path, "e2e-img-s3", "xgboost", "json", "--model-source", "s3")
    assert "COPY model/" not in (project / "Dockerfile").read_text()
    without_model = modelcrate("test-image", "e2e-img-s3", cwd=tmp_path)
    assert without_model.returncode == 1 and "give --model-tar" in without_model.stderr
    archive = tmp_path / "model.tar.gz"
    subprocess.run(
        ["tar", "-C", str(sample_model("xgboost", "json", "regression")), "-czf", str(archive), "."], check=True
    )
    tested = modelcrate("test-image", "e2e-img-s3", "--model-tar", str(archive), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_wrong_prediction_fails_the_image_test(tmp_path):
    """The parity check has teeth: an image whose handler answers differently is reported and exits 1."""
    created = modelcrate(
        "init",
        "e2e-img-wrong",
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
    (tmp_path / "e2e-img-wrong" / "code" / "inference.py").write_text(
        "def predict_fn(data, model):\n    prediction = model.predict(data)\n    return prediction.values + 1\n"
    )
    assert modelcrate("build", "e2e-img-wrong", cwd=tmp_path).returncode == 0
    tested = modelcrate("test-image", "e2e-img-wrong", cwd=tmp_path)
    assert tested.returncode == 1 and "FAIL" in tested.stdout


def test_an_optimized_image_serves_the_compiled_model(tmp_path):
    init_and_build(tmp_path, "e2e-img-optimized", "sklearn", "joblib", "--optimize")
    tested = modelcrate("test-image", "e2e-img-optimized", cwd=tmp_path, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr  # the compiled model answers the recorded samples
    with running_container("e2e-img-optimized:latest", port=free_port()) as container:
        deadline = time.monotonic() + 60
        while "worker ready" not in container_logs(container.id) and time.monotonic() < deadline:
            time.sleep(0.2)
    ready = [json.loads(line) for line in container.final_log.splitlines() if '"worker ready"' in line]
    assert ready and all(entry["format"] == "onnx" for entry in ready), container.final_log
    assert "not installed here" not in container.final_log
