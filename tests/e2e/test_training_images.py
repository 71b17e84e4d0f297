"""Algorithm images: for sklearn and XGBoost, init --with-training -> build -> sample-data -> modelcrate train in
the image with no network; the same image serves what it trained, exactly as an in-process training predicts.

These need the Docker engine and fail loudly without it. One image per framework, shared by the module's tests,
built on the local base image local/debian-python:bookworm and removed at the end.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from modelcrate.containers.docker import running_container
from modelcrate.containers.image_test import unpacked_model
from modelcrate.containers.training_job import training_job
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.service import InferenceService
from tests.conftest import free_port
from tests.e2e.conftest import init_and_build, modelcrate, wait_for_ping

IMAGE_PREFIX = "e2e-train-"
KEYS = "inference_output=predicted_label,probabilities"
# One task per framework covers both; the hyperparameters keep the jobs small and fix the seed.
CASES = {
    "sklearn": ("regression", {"n_estimators": 25, "max_depth": 8, "min_samples_leaf": 2, "seed": 11}),
    "xgboost": ("classification", {"num_round": 30, "max_depth": 4, "eta": 0.2, "subsample": 0.8, "seed": 11}),
}
BAD_HYPERPARAMETERS = {
    "sklearn": [
        ({"n_trees": 10}, 'unknown hyperparameter n_trees="10"'),
        ({"max_depth": "deep"}, 'hyperparameter max_depth="deep" is not a whole number'),
        ({"n_estimators": 0}, 'hyperparameter n_estimators="0" is out of range'),
    ],
    "xgboost": [
        ({"rounds": 10}, 'unknown hyperparameter rounds="10"'),
        ({"eta": "fast"}, 'hyperparameter eta="fast" is not a number'),
        ({"eta": 1.5}, 'hyperparameter eta="1.5" is out of range'),
    ],
}


@pytest.fixture(scope="module", params=sorted(CASES))
def algorithm(request, tmp_path_factory) -> dict:
    """A built training image for the framework, its project and the Abalone channels for its task."""
    framework = request.param
    task, hyperparameters = CASES[framework]
    root = tmp_path_factory.mktemp(framework)
    name = f"{IMAGE_PREFIX}{framework}"
    init_and_build(root, name, framework, None, "--sample-task", task, "--with-training")
    data = modelcrate("sample-data", "--task", task, "--output", "data", cwd=root)
    assert data.returncode == 0, data.stderr
    return {
        "framework": framework,
        "task": task,
        "root": root,
        "project": name,
        "image": f"{name}:latest",
        "hyperparameters": hyperparameters,
    }


def channels(algorithm: dict) -> list[str]:
    data = algorithm["root"] / "data"
    return ["--channel", f"train={data / 'train'}", "--channel", f"validation={data / 'validation'}"]


def served_by_image(image: str, model_dir: Path, body: bytes, attributes: str | None) -> dict:
    port = free_port()
    with running_container(image, isolated=False, port=port, model_dir=model_dir):
        wait_for_ping(port, 120)
        headers = {"Content-Type": "text/csv", "Accept": "application/json"}
        if attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())


def served_in_process(model_dir: Path, body: bytes, attributes: str | None) -> dict:
    service = InferenceService.load(ServingConfig.from_env({"SM_MODEL_DIR": str(model_dir)}))
    answer, _ = service.invoke(body, "text/csv", "application/json", attributes)
    return json.loads(answer)


def test_the_image_serves_what_it_trained_exactly_as_an_in_process_training_predicts(algorithm):
    root, project = algorithm["root"], algorithm["project"]
    hyperparameters = json.dumps(algorithm["hyperparameters"])
    in_image = modelcrate(
        "train", project, *channels(algorithm), "--hyperparameters", hyperparameters, "--output", "out-image", cwd=root
    )
    assert in_image.returncode == 0, in_image.stderr
    assert f"training in {algorithm['image']} with no network" in in_image.stderr
    # By image reference: the job follows the training spec baked into the image, trained by this machine.
    in_process = modelcrate(
        "train", algorithm["image"], "--in-process", *channels(algorithm), "--hyperparameters", hyperparameters,
        "--output", "out-local", cwd=root,
    )  # fmt: skip
    assert in_process.returncode == 0, in_process.stderr
    assert "training in-process with modelcrate" in in_process.stderr

    # The image's own check: its server answers the samples the training recorded, under --network none.
    tested = modelcrate("test-image", project, "--model-tar", root / "out-image/model.tar.gz", cwd=root, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "FAIL" not in tested.stdout

    rows = (root / "data/validation/abalone.csv").read_text().splitlines()
    body = "".join(row.split(",", 1)[1] + "\n" for row in rows).encode()  # the features: the label dropped
    attributes = KEYS if algorithm["task"] == "classification" else None
    with unpacked_model(root / "out-image/model.tar.gz") as model_dir:
        from_image = served_by_image(algorithm["image"], model_dir, body, attributes)
    with unpacked_model(root / "out-local/model.tar.gz") as model_dir:
        from_local = served_in_process(model_dir, body, attributes)
    assert len(from_image["predictions"]) == len(rows)
    assert from_image == from_local

    image_metrics = json.loads((root / "out-image/metrics.json").read_text())
    assert image_metrics == json.loads((root / "out-local/metrics.json").read_text())
    assert f"validation:{'rmse' if algorithm['task'] == 'regression' else 'accuracy'}" in image_metrics
    record = json.loads((root / "out-image/training-job.json").read_text())
    assert (record["image"], record["runner"], record["exit_code"]) == (algorithm["image"], "docker", 0)
    assert record["hyperparameters"] == {name: json.dumps(v) for name, v in algorithm["hyperparameters"].items()}


def test_bad_hyperparameters_and_a_missing_channel_fail_the_job_in_the_image(algorithm):
    data = algorithm["root"] / "data"
    cases = [
        *(
            (hyperparameters, {"train": data / "train"}, reason)
            for hyperparameters, reason in BAD_HYPERPARAMETERS[algorithm["framework"]]
        ),
        ({}, {"validation": data / "validation"}, "no train channel: /opt/ml/input/data/train does not exist"),
    ]
    for hyperparameters, given_channels, reason in cases:
        with training_job(given_channels, hyperparameters) as job:
            result = job.run_in_image(algorithm["image"])
            assert result.exit_code != 0, result.log
            assert result.failure and reason in result.failure, result.failure
            assert len(result.failure.strip().splitlines()) == 1  # one clear reason
            assert result.model_files == [] and not any(job.model_dir.iterdir())  # nothing half-written


def test_an_image_that_is_not_built_is_named_with_how_to_build_it(tmp_path):
    name = f"{IMAGE_PREFIX}unbuilt"
    created = modelcrate("init", name, "--framework", "xgboost", "--with-training", "--yes", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    result = modelcrate("train", name, "--channel", f"train={tmp_path}", "--output", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert f"image {name}:latest is not built; build it first: modelcrate build {name}" in result.stderr
    assert not (tmp_path / "out").exists()
