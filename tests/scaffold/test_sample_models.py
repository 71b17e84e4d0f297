"""Abalone sample models: offline, deterministic, with their metadata."""

from __future__ import annotations

import json

import pytest

from modelcrate.predictors.trust import file_sha256
from modelcrate.scaffold.sample_models import (
    SampleModelError,
    abalone_dataset,
    create_sample_model,
    read_abalone,
)


def test_bundled_abalone_data_is_complete():
    rows = read_abalone()
    assert len(rows) == 4177 and all(len(r) == 9 for r in rows)
    regression, classification = abalone_dataset("regression"), abalone_dataset("classification")
    assert regression.x_train.shape[1] == 10 and classification.x_train.shape[1] == 8
    assert len(regression.x_test) == 836


@pytest.mark.parametrize("framework,fmt", [("sklearn", "pkl"), ("xgboost", "ubj"), ("tensorflow", "h5")])
def test_training_is_deterministic(tmp_path, framework, fmt):
    first = create_sample_model(framework, fmt, "classification", tmp_path / "a")
    second = create_sample_model(framework, fmt, "classification", tmp_path / "b")
    assert first.metrics == second.metrics
    assert first.samples == second.samples


def test_metadata_records_what_parity_checks_need(sample_model):
    meta = json.loads((sample_model("xgboost", "json", "regression") / "modelcrate.json").read_text())
    assert meta["framework"] == "xgboost" and meta["framework_version"] == "2.1.3"
    assert meta["model_format"] == "json" and meta["task"] == "regression"
    assert meta["feature_names"][:3] == ["sex_F", "sex_I", "sex_M"]
    assert set(meta["metrics"]) == {"rmse", "mae", "r2"} and meta["metrics"]["r2"] > 0.4
    assert len(meta["samples"]) == 5 and len(meta["samples"][0]["input"]) == 10
    classifier = json.loads((sample_model("sklearn", "joblib", "classification") / "modelcrate.json").read_text())
    assert classifier["labels"] == ["F", "I", "M"] and classifier["metrics"]["accuracy"] > 0.5
    assert set(classifier["samples"][0]["expected"]) == {"predicted_label", "probabilities"}


@pytest.mark.parametrize("framework,fmt", [("sklearn", "joblib"), ("tensorflow", "savedmodel")])
def test_metadata_records_the_sha256_of_every_file_the_server_loads(sample_model, framework, fmt):
    model_dir = sample_model(framework, fmt, "regression")
    recorded = json.loads((model_dir / "modelcrate.json").read_text())["sha256_of_files"]
    loaded = [p for p in model_dir.rglob("*") if p.is_file() and p.name != "modelcrate.json"]
    assert sorted(recorded) == sorted(p.relative_to(model_dir).as_posix() for p in loaded)
    assert all(recorded[p.relative_to(model_dir).as_posix()] == file_sha256(p) for p in loaded)


def test_bad_requests_are_refused_and_nothing_is_left_behind(tmp_path):
    with pytest.raises(SampleModelError, match="xgboost models come as json, ubj, model, not 'pkl'"):
        create_sample_model("xgboost", "pkl", "regression", tmp_path / "x")
    with pytest.raises(SampleModelError, match="unknown framework 'torch'"):
        create_sample_model("torch", None, "regression", tmp_path / "x")
    with pytest.raises(SampleModelError, match="unknown task"):
        create_sample_model("sklearn", None, "ranking", tmp_path / "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(SampleModelError, match="not an empty directory"):
        create_sample_model("sklearn", None, "regression", tmp_path / "busy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
