"""Finding the model file in a model directory."""

from __future__ import annotations

import pytest

from modelcrate.predictors import ModelLoadError, find_model_file


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("model.pkl", "pkl"),
        ("m.pickle", "pkl"),
        ("model.joblib", "joblib"),
        ("model.json", "json"),
        ("model.ubj", "ubj"),
        ("model.model", "model"),
        ("m.bst", "model"),
        ("xgboost-model", "model"),
        ("model.keras", "keras"),
        ("model.h5", "h5"),
        ("model.hdf5", "h5"),
    ],
)
def test_detects_each_format_by_name(tmp_path, name, fmt):
    touch(tmp_path / name)
    touch(tmp_path / "modelcrate.json")  # metadata is never a candidate
    touch(tmp_path / "code" / "inference.py")
    touch(tmp_path / "README.md")
    assert find_model_file(tmp_path).model_format == fmt


def test_detects_savedmodel_directories(tmp_path):
    touch(tmp_path / "export" / "saved_model.pb")
    assert find_model_file(tmp_path).path == tmp_path / "export"
    assert find_model_file(tmp_path / "export").model_format == "savedmodel"


def test_tensorflow_serving_layout_picks_the_newest_version(tmp_path):
    for version in ("1", "2", "10"):
        touch(tmp_path / "model" / version / "saved_model.pb")
    found = find_model_file(tmp_path)
    assert found.path == tmp_path / "model" / "10" and found.framework == "tensorflow"


def test_no_candidate_lists_what_is_there(tmp_path):
    touch(tmp_path / "weights.bin")
    with pytest.raises(ModelLoadError, match=r"no model file found in .*found: weights.bin"):
        find_model_file(tmp_path)


def test_several_candidates_ask_for_a_choice(tmp_path):
    touch(tmp_path / "a.pkl")
    touch(tmp_path / "b.json")
    with pytest.raises(ModelLoadError, match=r"several candidate model files .*a.pkl, b.json.*MODELCRATE_MODEL_FILE"):
        find_model_file(tmp_path)
    assert find_model_file(tmp_path, model_format="json").path.name == "b.json"
    assert find_model_file(tmp_path, model_file="a.pkl").model_format == "pkl"


def test_overrides_are_checked(tmp_path):
    touch(tmp_path / "weights.bin")
    with pytest.raises(ModelLoadError, match="unknown model format 'onnx'"):
        find_model_file(tmp_path, model_format="onnx")
    with pytest.raises(ModelLoadError, match="cannot tell the format"):
        find_model_file(tmp_path, model_file="weights.bin")
    assert find_model_file(tmp_path, model_format="ubj", model_file="weights.bin").model_format == "ubj"
    with pytest.raises(ModelLoadError, match="does not exist"):
        find_model_file(tmp_path, model_file="nope.pkl")
    with pytest.raises(ModelLoadError, match="does not exist"):
        find_model_file(tmp_path / "missing")
