"""The API's entry points over the services the command line uses: init_project, serve_locally."""

from __future__ import annotations

import json

import pytest

import modelcrate
from modelcrate.scaffold.generate import PROJECT_FILE
from modelcrate.scaffold.options import OptionsError


def test_init_project_makes_the_project_modelcrate_init_makes(sample_model, tmp_path, monkeypatch):
    monkeypatch.delenv("MODELCRATE_FRAMEWORK", raising=False)
    model_dir = sample_model("sklearn", "joblib")
    project = modelcrate.init_project(
        "demo",
        framework="sklearn",
        model_format="joblib",
        model_source="local",
        model_path=model_dir / "model.joblib",
        destination=tmp_path / "demo",
    )
    assert project.path == tmp_path / "demo"
    options = json.loads((project.path / PROJECT_FILE).read_text())
    assert (options["project_name"], options["framework"], options["model_source"]) == ("demo", "sklearn", "local")
    assert (project.path / "model" / "model.joblib").is_file()
    with pytest.raises(OptionsError, match="not empty"):
        modelcrate.init_project(
            "demo",
            framework="sklearn",
            model_format="joblib",
            model_source="local",
            model_path=model_dir / "model.joblib",
            destination=project.path,
        )


def test_a_local_server_answers_then_stops(sample_model):
    model_dir = sample_model("sklearn", "joblib")
    row = ",".join(map(str, json.loads((model_dir / "modelcrate.json").read_text())["samples"][0]["input"]))
    with modelcrate.serve_locally(model_dir, workers=1) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert json.loads(server.invoke(row + "\n", accept="application/json"))["predictions"]
        with pytest.raises(modelcrate.InvokeError, match="HTTP 4"):
            server.invoke("not,a,row\n")
        server.stop()
        with pytest.raises(modelcrate.InvokeError, match="cannot reach"):
            server.invoke(row + "\n", timeout=5)
    server.stop()  # stopping again does nothing
