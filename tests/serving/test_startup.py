"""How `serve` starts: its one line on a terminal, the address it binds, and start-up failures in one line.

`serve` runs as `python -m modelcrate.serving` with this interpreter and PYTHONPATH, so the code under test is
the one pytest imports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pexpect
import pytest

from tests.conftest import free_port

MODEL = ("sklearn", "joblib", "regression")


def serve_env(model_dir, port: int, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "MODELCRATE_"))}
    env.update(
        SM_MODEL_DIR=str(model_dir),
        SAGEMAKER_BIND_TO_PORT=str(port),
        SAGEMAKER_MODEL_SERVER_WORKERS="1",
        MODELCRATE_BIND_HOST="127.0.0.1",
    )
    env.update(variables)
    return env


def test_on_a_terminal_serve_says_where_it_serves_in_one_line(sample_model):
    model_dir, port = sample_model(*MODEL), free_port()
    env = serve_env(model_dir, port, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    child = pexpect.spawn(sys.executable, ["-m", "modelcrate.serving"], env=env, timeout=60, encoding="utf-8")
    try:
        child.expect(r"serving sklearn/joblib model (\S+) on (\S+) with 2 workers; Ctrl-C stops\r\n")
        assert child.match.groups() == (str(model_dir), f"http://127.0.0.1:{port}")
        assert child.before.strip() == ""  # nothing before it: no JSON lines on a terminal
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before


def test_on_a_terminal_json_logs_when_asked(sample_model):
    env = serve_env(sample_model(*MODEL), free_port(), MODELCRATE_LOG_FORMAT="json")
    child = pexpect.spawn(sys.executable, ["-m", "modelcrate.serving"], env=env, timeout=60, encoding="utf-8")
    try:
        child.expect(r'\{"time": [^\r]*"message": "serving"')
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def joblib_named_json(tmp_path, sample_model):
    (tmp_path / "model").mkdir()
    shutil.copy(sample_model(*MODEL) / "model.joblib", tmp_path / "model" / "model.json")
    return tmp_path / "model"


def text_named_joblib(tmp_path, sample_model):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.joblib").write_text("rings,length\n15,0.455\n")
    return tmp_path / "model"


# case -> (model directory, extra environment, words naming the problem and its fix)
FAILURES = {
    "busy port": (None, {}, ["already in use", "SAGEMAKER_BIND_TO_PORT"]),
    "no workers": (None, {"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, ["SAGEMAKER_MODEL_SERVER_WORKERS=0", "at least 1"]),
    "negative workers": (None, {"SAGEMAKER_MODEL_SERVER_WORKERS": "-2"}, ["WORKERS=-2", "at least 1"]),
    "workers not a number": (None, {"SAGEMAKER_MODEL_SERVER_WORKERS": "two"}, ["'two'", "whole number of at least 1"]),
    "missing model directory": (
        lambda tmp_path, sample_model: tmp_path / "absent",
        {},
        ["absent does not exist", "SM_MODEL_DIR"],
    ),
    "joblib file named .json": (joblib_named_json, {}, ["model.json is a joblib or pickle file", ".joblib"]),
    "text file named .joblib": (text_named_joblib, {}, ["model.joblib is not a joblib or pickle file", "joblib.dump"]),
}


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("case", FAILURES)
def test_a_start_failure_is_one_line_and_a_non_zero_exit(case, log_format, sample_model, tmp_path):
    make_dir, variables, words = FAILURES[case]
    model_dir = make_dir(tmp_path, sample_model) if make_dir else sample_model(*MODEL)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1] if case == "busy port" else free_port()
        env = serve_env(model_dir, port, MODELCRATE_LOG_FORMAT=log_format, **variables)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "modelcrate.serving"], env=env, capture_output=True, text=True, timeout=30
        )
        elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, output
    assert "Traceback" not in output
    assert elapsed < 5, elapsed
    for word in words:
        assert word in lines[0], lines[0]
    if log_format == "json":
        assert lines[0].startswith("{") and '"level": "ERROR"' in lines[0]
    else:
        assert lines[0].startswith("error: cannot start: ")
