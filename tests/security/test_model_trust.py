"""Model files that are not what modelcrate.json records: a pickle swapped after recording, a model saved by another
framework version. ``serve`` refuses them in one line before loading anything, unless the user accepts the risk;
a pickle whose digest is not recorded is served with one warning naming the risk."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import joblib
import pytest
import sklearn

from modelcrate.predictors import ModelLoadError, ModelMetadata, load_predictor
from modelcrate.predictors.trust import ACCEPT_MISMATCH_VARIABLE
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.errors import BadRequest
from modelcrate.serving.model_table import ModelTable
from modelcrate.serving.multi_model import MultiModelHost
from modelcrate.serving.service import InferenceService
from tests.conftest import launch

SAMPLE_ROW = "0.0,1.0,0.0,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
PICKLE_RISK = "is a pickle and its sha256 is not recorded"


class CreatesMarker:
    """Unpickled, it creates ``marker``: the payload of a malicious model file, harmless and observable."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def forest(sample_model, tmp_path) -> Path:
    """A copy of the Abalone RandomForest sample (joblib), with its modelcrate.json as sample-model wrote it."""
    return Path(shutil.copytree(sample_model("sklearn", "joblib", "regression"), tmp_path / "model"))


def edit_metadata(model_dir: Path, **changes) -> None:
    raw = json.loads((model_dir / "modelcrate.json").read_text())
    raw.update(changes)
    (model_dir / "modelcrate.json").write_text(json.dumps(raw))


def refusal(model_dir: Path, log_dir: Path, **env) -> list[dict]:
    """Start ``serve`` on ``model_dir``, which must exit without serving; its log records."""
    server = launch(model_dir, log_dir, env=env, workers=2, wait=False)
    assert server.process.wait(120) != 0
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def one_error_naming(records: list[dict], phrase: str) -> str:
    """Every worker that tried to start says why in the same single line, with no traceback."""
    naming = [r for r in records if phrase in r["message"]]
    assert naming, records
    assert all(r["level"] == "ERROR" and "exception" not in r and "\n" not in r["message"] for r in naming)
    assert len({r["message"] for r in naming}) == 1
    return naming[0]["message"]


def test_a_joblib_altered_after_recording_is_refused_before_it_is_unpickled(forest, tmp_path):
    marker = tmp_path / "payload-ran"
    joblib.dump(CreatesMarker(marker), forest / "model.joblib")
    message = one_error_naming(refusal(forest, tmp_path), "changed after it was recorded")
    assert not marker.exists(), "the malicious pickle ran"
    assert "model.joblib" in message and ACCEPT_MISMATCH_VARIABLE in message


def test_a_model_recorded_with_another_scikit_learn_version_is_refused(forest, tmp_path):
    edit_metadata(forest, framework_version="1.2.0")
    message = one_error_naming(refusal(forest, tmp_path), "records sklearn 1.2.0")
    assert f"but {sklearn.__version__} is installed" in message
    assert "pinned" in message and ACCEPT_MISMATCH_VARIABLE in message


def test_a_recorded_file_that_is_missing_is_refused(forest):
    (forest / "model.joblib").rename(forest / "renamed.joblib")
    with pytest.raises(ModelLoadError, match=r"model\.joblib is recorded in .* but missing"):
        load_predictor(forest, model_file="renamed.joblib")


def test_a_file_to_load_that_is_not_among_the_recorded_ones_is_refused(forest, tmp_path):
    marker = tmp_path / "payload-ran"
    joblib.dump(CreatesMarker(marker), forest / "extra.joblib")
    with pytest.raises(ModelLoadError, match=r"extra\.joblib is not among the files"):
        load_predictor(forest, model_file="extra.joblib")
    assert not marker.exists()


def test_the_override_serves_a_mismatch_with_a_warning(forest, start_server):
    edit_metadata(forest, framework_version="1.2.0")
    server = start_server(forest, env={ACCEPT_MISMATCH_VARIABLE: "true"}, workers=2)
    assert server.invoke(SAMPLE_ROW).status == 200
    server.wait_for_ready_workers(2)  # the first worker logs what it found: it may be the second to be ready
    warnings = [line for line in server.log().splitlines() if "serving it anyway" in line]
    assert len(warnings) == 1, server.log()
    assert json.loads(warnings[0])["level"] == "WARNING"


def test_an_unrecorded_joblib_is_served_with_one_warning_naming_the_risk(forest, start_server):
    (forest / "modelcrate.json").unlink()  # a user's bare model
    server = start_server(forest, workers=2)
    assert server.invoke(SAMPLE_ROW).status == 200
    server.wait_for_ready_workers(2)
    warnings = [json.loads(line) for line in server.log().splitlines() if PICKLE_RISK in line]
    assert len(warnings) == 1, server.log()
    assert warnings[0]["level"] == "WARNING" and "runs any code it holds" in warnings[0]["message"]


def test_a_recorded_joblib_loads_without_the_warning(forest, caplog):
    with caplog.at_level(logging.INFO, logger="modelcrate.model_trust"):
        load_predictor(forest)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("checked the sha256 of 1 model files" in r.getMessage() for r in caplog.records)


def test_a_model_fn_model_is_still_checked_against_what_is_recorded(forest, tmp_path):
    marker = tmp_path / "model_fn-ran"
    (forest / "code").mkdir()
    (forest / "code" / "inference.py").write_text(
        f"def model_fn(model_dir):\n    open({str(marker)!r}, 'w')\n    return object()\n"
    )
    edit_metadata(forest, framework_version="1.2.0")
    with pytest.raises(ModelLoadError, match=r"records sklearn 1\.2\.0"):
        InferenceService.load(ServingConfig(model_dir=forest))
    assert not marker.exists()


def test_a_multi_model_load_of_an_altered_model_is_a_400_naming_it(forest, tmp_path):
    root = tmp_path
    marker = tmp_path / "payload-ran"
    joblib.dump(CreatesMarker(marker), forest / "model.joblib")
    table = ModelTable()
    try:
        host = MultiModelHost(ServingConfig(multi_model=True, multi_model_root=root, workers=1), table)
        with pytest.raises(BadRequest, match="changed after it was recorded"):
            host.manage(b"POST", b"/models", b"", json.dumps({"model_name": "forest", "url": "model"}).encode())
    finally:
        table.remove()
    assert not marker.exists()
    assert ModelMetadata.read(forest).sha256_of_files  # nothing was rewritten
