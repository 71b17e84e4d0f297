"""The modelcrate command line, run as a user runs it (its entry point in this process: see run_modelcrate)."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import metadata

from modelcrate.cli.entry import EXTRA_OF_MODULE
from tests.conftest import MODELCRATE


def test_help_teaches_each_command(run_modelcrate):
    result = run_modelcrate("--help")
    assert result.returncode == 0
    for command in ("sample-model", "serve", "invoke"):
        assert command in result.stdout
    serve_help = run_modelcrate("serve", "--help").stdout
    assert "inference_output=predicted_label,probabilities" in serve_help


def test_sample_model_then_invoke(run_modelcrate, tmp_path, start_server):
    out = tmp_path / "model"
    made = run_modelcrate(
        "sample-model",
        "--framework",
        "sklearn",
        "--format",
        "pkl",
        "--task",
        "classification",
        "--output",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    assert "accuracy=" in made.stderr and (out / "model.pkl").is_file()
    server = start_server(out)
    sample = json.loads((out / "modelcrate.json").read_text())["samples"][0]
    body = ",".join(map(str, sample["input"]))
    result = run_modelcrate(
        "invoke",
        "--url",
        server.url,
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--custom-attributes",
        "inference_output=predicted_label",
        "-",
        input=body,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == sample["expected"]["predicted_label"] + "\n"
    (tmp_path / "bad.csv").write_text("x,y\n")
    refused = run_modelcrate("invoke", "--url", server.url, "--content-type", "text/csv", str(tmp_path / "bad.csv"))
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr and "line 1, column 1" in refused.stderr


def test_errors_are_short_and_clear(run_modelcrate, tmp_path):
    refused = run_modelcrate(
        "sample-model", "--framework", "xgboost", "--format", "keras", "--output", str(tmp_path / "m")
    )
    assert refused.returncode == 2 and "xgboost models come as json, ubj, model" in refused.stderr
    unreachable = run_modelcrate("invoke", "--url", "http://127.0.0.1:9", "--content-type", "text/csv", "-", input="1")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    missing = run_modelcrate("invoke", "--content-type", "text/csv", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    # In its own process with a clean environment: serve takes over the process it runs in.
    bad_env = subprocess.run(
        [MODELCRATE, "serve"],
        capture_output=True,
        text=True,
        env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "soon", "PATH": "/usr/bin"},
    )
    assert bad_env.returncode == 2 and "SAGEMAKER_MODEL_SERVER_TIMEOUT='soon'" in bad_env.stderr


def test_a_missing_module_is_named_with_an_extra_the_package_declares():
    """tests/e2e/test_fresh_install.py runs the missing-extra line in a plain install; this keeps its table in step
    with pyproject.toml's extras."""
    assert set(EXTRA_OF_MODULE.values()) <= set(metadata("modelcrate").get_all("Provides-Extra"))


def test_a_model_server_that_cannot_start_fails_the_transform_in_one_line(run_modelcrate, tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("import modelcrate_absent_framework\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n")
    paths = ("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"))
    failed = run_modelcrate("transform", str(model), *paths, "--content-type", "text/csv")
    assert failed.returncode == 2
    (line,) = [line for line in failed.stderr.splitlines() if line.strip()]  # the progress bar leaves a blank one
    assert line.startswith(f"error: the model server for {model} stopped before it was healthy: cannot start: ")
    assert line.endswith("No module named 'modelcrate_absent_framework'")
