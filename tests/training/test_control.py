"""The training control plane: `init --with-training`, the SageMaker job layout, `modelcrate train` by this
machine's modelcrate, `sample-data`, and registering what was trained. Images: tests/e2e/test_training_images.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pexpect
import pytest

import modelcrate
from modelcrate.containers.training_job import scrape_metrics, training_job
from modelcrate.predictors import load_predictor
from modelcrate.scaffold.options import OptionsError, resolve
from modelcrate.scaffold.sample_models import abalone_dataset
from modelcrate.training import default_spec

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
BASE = {"project_name": "demo", "framework": "sklearn"}
QUICK = {"n_estimators": 10, "max_depth": 6, "seed": 7}


def modelcrate_cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")} | {"COLUMNS": "400"}
    return subprocess.run(
        [MODELCRATE, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env | (env or {}),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A sklearn classification project made with --with-training, and the Abalone channels for it."""
    root = tmp_path_factory.mktemp("training-control")
    created = modelcrate_cli(
        "init", "trainer", "--framework", "sklearn", "--sample-task", "classification", "--with-training", "--yes",
        cwd=root,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    data = modelcrate_cli("sample-data", "--task", "classification", "--output", "data", cwd=root)
    assert data.returncode == 0, data.stderr
    return root


def channel_args(root: Path) -> list[str]:
    return ["--channel", f"train={root / 'data/train'}", "--channel", f"validation={root / 'data/validation'}"]


def test_with_training_comes_from_a_flag_the_environment_or_a_config_file(tmp_path):
    assert resolve(BASE, env={})[0].with_training is False
    options, origin = resolve({**BASE, "with_training": True}, env={"MODELCRATE_WITH_TRAINING": "false"})
    assert (options.with_training, origin["with_training"]) == (True, "flag")
    options, origin = resolve(BASE, env={"MODELCRATE_WITH_TRAINING": "true"})
    assert (options.with_training, origin["with_training"]) == (True, "environment")
    config = tmp_path / "options.yaml"
    config.write_text("with_training: true\n")
    options, origin = resolve(BASE, env={}, config_file=config)
    assert (options.with_training, origin["with_training"]) == (True, "config file")


def test_a_framework_that_cannot_train_is_refused_in_one_line(tmp_path):
    with pytest.raises(OptionsError, match="tensorflow images cannot train yet; use framework sklearn or xgboost"):
        resolve({**BASE, "framework": "tensorflow", "with_training": True}, env={})
    result = modelcrate_cli("init", "demo", "--framework", "tensorflow", "--with-training", "--yes", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--with-training" in result.stderr and not (tmp_path / "demo").exists()


def test_a_training_project_carries_its_spec_its_label_and_instructions(workspace, tmp_path):
    project = workspace / "trainer"
    assert json.loads((project / "code/training.json").read_text()) == default_spec("sklearn", "classification")
    assert "LABEL ai.modelcrate.training=true" in (project / "Dockerfile").read_text()
    readme = (project / "README.md").read_text()
    assert "## Training" in readme and "modelcrate train . --channel train=data/train" in readme
    plain = modelcrate_cli("init", "plain", "--framework", "xgboost", "--yes", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert not (tmp_path / "plain/code/training.json").exists()
    assert "ai.modelcrate.training" not in (tmp_path / "plain/Dockerfile").read_text()
    assert "## Training" not in (tmp_path / "plain/README.md").read_text()


def test_sample_data_is_the_abalone_split_label_first_without_a_header(workspace):
    data = abalone_dataset("classification")
    for channel, x, y in (("train", data.x_train, data.y_train), ("validation", data.x_test, data.y_test)):
        rows = np.loadtxt(workspace / "data" / channel / "abalone.csv", delimiter=",")
        assert rows.shape == (len(y), 1 + x.shape[1])
        np.testing.assert_array_equal(rows[:, 0], y)
        np.testing.assert_array_equal(rows[:, 1:], x)
    refused = modelcrate_cli("sample-data", "--task", "ranking", "--output", "x", cwd=workspace)
    assert refused.returncode == 2 and "task 'ranking': use regression or classification" in refused.stderr


def test_the_job_is_laid_out_as_sagemaker_lays_it_out(workspace):
    csv = workspace / "data/validation/abalone.csv"
    hyperparameters = {"n_estimators": 10, "eta": 0.25, "bootstrap": False, "criterion": "gini"}
    with training_job({"train": workspace / "data/train", "validation": csv}, hyperparameters) as job:
        config = job.prefix / "input/config"
        assert json.loads((config / "hyperparameters.json").read_text()) == {
            "n_estimators": "10",
            "eta": "0.25",
            "bootstrap": "false",
            "criterion": "gini",
        }
        channel = {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        assert json.loads((config / "inputdataconfig.json").read_text()) == {"train": channel, "validation": channel}
        resources = json.loads((config / "resourceconfig.json").read_text())
        assert resources == {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        data = job.prefix / "input/data"
        assert (data / "train/abalone.csv").read_bytes() == (workspace / "data/train/abalone.csv").read_bytes()
        assert (data / "validation/abalone.csv").read_bytes() == csv.read_bytes()  # a file becomes a channel dir
        for writable in ("model", "output"):  # `train` runs as the image starts (root), as on SageMaker
            path = job.prefix / writable
            assert path.is_dir() and not any(path.iterdir()) and stat.S_IMODE(path.stat().st_mode) == 0o700
        for path in [job.prefix, *job.prefix.rglob("*")]:  # owned by whoever laid it out (root in CI), private
            assert path.stat().st_uid == os.getuid()
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
        prefix = job.prefix
    assert not prefix.exists()


def test_metrics_are_scraped_as_sagemaker_scrapes_them():
    definitions = default_spec("xgboost", "regression")["metric_definitions"]
    log = "starting\ntrain:rmse=2.5; train:mae=1.0;\nvalidation:rmse=3.25; validation:r2=0.5;\nvalidation:rmse=3.0;"
    assert scrape_metrics(log, definitions) == {
        "train:rmse": 2.5,
        "train:mae": 1.0,
        "validation:rmse": 3.0,  # the last value is the final one
        "validation:r2": 0.5,
    }


def test_without_an_engine_the_job_runs_in_process_and_writes_the_model_metrics_and_record(workspace):
    out = workspace / "out-fallback"
    result = modelcrate_cli(
        "train", "trainer", *channel_args(workspace), "--hyperparameters", json.dumps(QUICK), "--output", out,
        cwd=workspace, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"no Docker engine: training in-process with modelcrate {modelcrate.__version__} on this machine" in (
        result.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.tar.gz", "training-job.json"]
    with tarfile.open(out / "model.tar.gz") as archive:
        names = archive.getnames()
        assert "modelcrate.json" in names and all("/" not in name for name in names), names  # files at the root
        archive.extractall(workspace / "unpacked", filter="data")
    predictor = load_predictor(workspace / "unpacked")
    validation = abalone_dataset("classification").x_test
    assert len(predictor.predict(validation).values) == len(validation)

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {f"{c}:{m}" for c in ("train", "validation") for m in ("accuracy", "log_loss")}
    assert 0.4 < metrics["validation:accuracy"] <= 1.0
    record = json.loads((out / "training-job.json").read_text())
    assert record["hyperparameters"] == {"n_estimators": "10", "max_depth": "6", "seed": "7"}  # as SageMaker sends
    assert record["channels"] == {
        "train": str(workspace / "data/train"),
        "validation": str(workspace / "data/validation"),
    }
    assert (record["image"], record["exit_code"], record["failure"]) == (None, 0, None)
    assert record["runner"] == f"modelcrate {modelcrate.__version__} on this machine" and record["duration_s"] > 0


@pytest.mark.parametrize(
    "hyperparameters,reason",
    [
        ({"n_trees": 5}, 'unknown hyperparameter n_trees="5"'),
        ({"n_estimators": "many"}, 'hyperparameter n_estimators="many" is not a whole number'),
        ({"n_estimators": 0}, 'hyperparameter n_estimators="0" is out of range'),
    ],
)
def test_a_bad_hyperparameter_fails_the_job_with_its_reason_and_no_model(workspace, tmp_path, hyperparameters, reason):
    out = tmp_path / "out"
    result = modelcrate_cli(
        "train", "trainer", "--in-process", *channel_args(workspace), "--hyperparameters", json.dumps(hyperparameters),
        "--output", out, cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"training job failed (exit 1): {reason}" in result.stderr, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["training-job.json"]
    record = json.loads((out / "training-job.json").read_text())
    assert record["exit_code"] != 0 and reason in record["failure"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["trainer", "--channel", "train=nowhere"], "channel train: nowhere does not exist"),
        (["trainer", "--channel", "data/train"], "write NAME=DIR, e.g. --channel train=data/train"),
        (["trainer", "--channel", "train=data/train", "--hyperparameters", "{max_depth: 3}"], "not valid JSON"),
        (["trainer", "--channel", "train=data/train", "--hyperparameters", "[1, 2]"], "not list"),
        (
            ["trainer", "--channel", "train=data/train", "--hyperparameters", "@missing.json"],
            "cannot read missing.json",
        ),
        (["data", "--channel", "train=data/train"], "data is not a modelcrate project"),
        (["trainer"], "Missing option '--channel'"),
        (["trainer", "--channel", "bad name=data/train", "--in-process"], "channel name 'bad name'"),
    ],
)
def test_bad_arguments_get_a_clear_message(workspace, args, message):
    result = modelcrate_cli("train", *args, "--output", "never", cwd=workspace)
    assert result.returncode in (1, 2) and message in " ".join(result.stderr.split()), result.stderr
    assert not (workspace / "never" / "model.tar.gz").exists()


def test_a_project_made_without_training_is_told_how_to_get_it(tmp_path):
    assert modelcrate_cli("init", "plain", "--framework", "sklearn", "--yes", cwd=tmp_path).returncode == 0
    result = modelcrate_cli(
        "train", "plain", "--in-process", "--channel", f"train={tmp_path}", "--output", "out", cwd=tmp_path
    )
    assert result.returncode == 2 and "make it with modelcrate init --with-training" in result.stderr


def test_register_fills_in_the_source_algorithm(workspace, tmp_path):
    out = tmp_path / "out"
    env = {"MODELCRATE_HOME": str(tmp_path / "home")}
    result = modelcrate_cli(
        "train", "trainer", "--in-process", *channel_args(workspace), "--hyperparameters", json.dumps(QUICK),
        "--output", out, "--register", "abalone-sex", cwd=workspace, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    arn = result.stdout.strip()
    assert arn.endswith(":model-package/abalone-sex/1")
    described = modelcrate_cli("registry", "describe-model-package", "--model-package-name", arn, cwd=tmp_path, env=env)
    assert described.returncode == 0, described.stderr
    package = json.loads(described.stdout)
    assert package["SourceAlgorithmSpecification"] == {
        "SourceAlgorithms": [{"AlgorithmName": "trainer", "ModelDataUrl": str(out / "model.tar.gz")}]
    }
    container = package["InferenceSpecification"]["Containers"][0]
    assert (container["Image"], container["Framework"]) == ("trainer:latest", "SKLEARN")
    assert package["CustomerMetadataProperties"]["task"] == "classification"


def test_the_generated_projects_training_tests_pass(workspace):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test/test_training.py"],
        cwd=workspace / "trainer",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr


def test_with_training_is_asked_for_with_the_other_options(tmp_path):
    config = tmp_path / "options.yaml"
    config.write_text(
        "framework: xgboost\nmodel_format: json\nmodel_source: sample\nsample_task: regression\n"
        "include_tests: false\noptimize: false\ndeploy_target: sagemaker\ninstance_type: cpu\nregion: eu-west-1\n"
        "role_arn: arn:aws:iam::123456789012:role/trainer\nbase_image: python:3.11-slim\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCRATE_")}
    child = pexpect.spawn(
        MODELCRATE,
        ["init", "asked", "--config", str(config)],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=120,
        env=env,
    )
    child.expect(r"Also train in the image \(docker run IMAGE train\)")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert json.loads((tmp_path / "asked/code/training.json").read_text()) == default_spec("xgboost", "regression")
