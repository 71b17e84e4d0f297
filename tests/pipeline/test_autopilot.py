"""The Autopilot-style example end to end: raw Abalone rows in, F/I/M out, through three containers."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost

from modelcrate.containers.endpoint import http_request
from modelcrate.pipeline import load_definition, running_pipeline
from modelcrate.pipeline.example import pipeline_json, write_autopilot_example
from modelcrate.scaffold.sample_models import abalone_dataset

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "autopilot-pipeline"
ROWS = 300


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return write_autopilot_example(tmp_path_factory.mktemp("autopilot"))


def expected_labels(models: Path, rows: np.ndarray) -> list[str]:
    """scaler -> XGBoost -> inverse label encoding, in this process."""
    features = joblib.load(models / "features" / "model.joblib")
    algorithm = xgboost.Booster(model_file=models / "algorithm" / "model.json")
    encoder = joblib.load(models / "labels" / "model.joblib")
    probabilities = algorithm.predict(xgboost.DMatrix(features.transform(rows)))
    return encoder.inverse_transform(probabilities.argmax(axis=1)).tolist()


def test_the_examples_pipeline_json_is_the_one_the_code_writes(example):
    assert (EXAMPLE_DIR / "pipeline.json").read_text() == pipeline_json() == example.read_text()
    definition = load_definition(example)
    assert [c.hostname for c in definition.containers] == ["features", "algorithm", "labels"]


def test_training_is_deterministic(example, tmp_path):
    again = write_autopilot_example(tmp_path).parent / "models"
    for name in ("features/model.joblib", "algorithm/model.json", "labels/model.joblib"):
        assert (again / name).read_bytes() == (example.parent / "models" / name).read_bytes(), name


def test_raw_rows_in_original_labels_out(example):
    rows = abalone_dataset("classification").x_test[:ROWS]
    body = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()
    expected = expected_labels(example.parent / "models", rows)
    assert set(expected) == {"F", "I", "M"}  # the comparison covers every class
    with running_pipeline(example, workers=1) as endpoint:
        status, headers, answer = http_request(
            endpoint.port, "POST", "/invocations", body, {"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        assert status == 200, answer
        assert headers["content-type"] == "text/csv"
        assert answer.decode().splitlines() == expected

        few = b"".join(body.splitlines(keepends=True)[:5])
        status, _, answer = http_request(
            endpoint.port, "POST", "/invocations", few, {"Content-Type": "text/csv", "Accept": "application/json"}
        )
        assert status == 200, answer
        assert json.loads(answer)["predictions"] == expected[:5]

        # A header row is the first container's to refuse, and the caller learns which container did.
        status, _, answer = http_request(
            endpoint.port, "POST", "/invocations", b"length,diameter\n" + body, {"Content-Type": "text/csv"}
        )
        assert status == 400 and answer.startswith(b"container 'features' (1 of 3) answered 400: ")


def test_the_example_script_refuses_to_overwrite_models(example, capsys):
    from modelcrate.pipeline.example import main

    assert main([str(example.parent)]) == 1
    assert f"{example.parent / 'models'} already exists; delete it" in capsys.readouterr().err


def test_a_transform_job_runs_through_the_pipeline(example, tmp_path):
    """The same example as a batch transform target: every file's records through all three containers."""
    from tests.transform.conftest import transform, write_lines

    rows = abalone_dataset("classification").x_test
    lines = [",".join(repr(float(v)) for v in row) for row in rows]
    write_lines(tmp_path / "in" / "a.csv", lines[:400])
    write_lines(tmp_path / "in" / "more" / "b.csv", lines[400:])
    run = transform(
        example,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        "text/csv",
        "--max-payload",
        "1",
        "--strategy",
        "MultiRecord",
    )
    assert run.returncode == 0, run.stderr
    expected = expected_labels(example.parent / "models", rows)
    assert (tmp_path / "out" / "a.csv.out").read_text().splitlines() == expected[:400]
    assert (tmp_path / "out" / "more" / "b.csv.out").read_text().splitlines() == expected[400:]


def test_every_container_publishes_the_inference_keys_it_can_emit(example):
    """As Autopilot's containers: the algorithm, followed by the label decoder, does not list labels."""
    algorithm_keys = "predicted_label,probability,probabilities"
    decoder_keys = "predicted_label,probability,probabilities,labels"
    written = json.loads(example.read_text())
    assert [c["Environment"].get("SAGEMAKER_INFERENCE_SUPPORTED") for c in written["Containers"]] == [
        None,
        algorithm_keys,
        decoder_keys,
    ]
    # A definition that does not say gets the same hints from its models.
    for container in written["Containers"]:
        container["Environment"].pop("SAGEMAKER_INFERENCE_SUPPORTED", None)
    unsaid = example.with_name("unsaid.json")
    unsaid.write_text(json.dumps(written))
    with running_pipeline(unsaid, workers=1) as endpoint:
        published = [c.spec.env.get("SAGEMAKER_INFERENCE_SUPPORTED") for c in endpoint.containers]
    assert published == [None, algorithm_keys, decoder_keys]
