"""The SageMaker hosting contract, checked against a real server for every format pair and task."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from modelcrate.predictors import load_predictor
from modelcrate.serving.codecs import decode_keyed_csv
from tests.conftest import PAIRS

CASES = [(fw, fmt, task) for fw, fmt in PAIRS for task in ("regression", "classification")]


def rows_csv(rows) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows)


def metadata(model_dir):
    return json.loads((model_dir / "modelcrate.json").read_text())


def close(framework: str):
    """Tree models must match exactly; Keras within 1e-6 relative (its float32 sums vary with batch size)."""
    if framework == "tensorflow":
        return lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    return lambda got, want: np.testing.assert_array_equal(got, want)


def same_predictions(framework: str, got: list, want: list) -> None:
    if want and isinstance(want[0], float):
        close(framework)(np.array(got, dtype=float), np.array(want, dtype=float))
    else:
        assert got == want


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def case(request, sample_model, session_server):
    framework, fmt, task = request.param
    model_dir = sample_model(framework, fmt, task)
    return framework, task, model_dir, session_server(framework, fmt, task)


def test_http_predictions_equal_in_process_predictions(case):
    framework, task, model_dir, server = case
    samples = metadata(model_dir)["samples"]
    records = np.array([s["input"] for s in samples])
    expected = load_predictor(model_dir).predict(records)
    same = close(framework)

    csv_resp = server.invoke(rows_csv(records), "text/csv", "application/json")
    assert csv_resp.status == 200, csv_resp.text
    assert csv_resp.headers["content-type"] == "application/json"
    got = json.loads(csv_resp.body)["predictions"]
    if task == "regression":
        same(np.array(got, dtype=float), expected.values.astype(float))
        same(np.array([s["expected"]["prediction"] for s in samples]), expected.values.astype(float))
    else:
        assert got == expected.values.tolist()
        assert got == [s["expected"]["predicted_label"] for s in samples]

    npy = io.BytesIO()
    np.save(npy, records)
    npy_resp = server.invoke(npy.getvalue(), "application/x-npy", "application/x-npy")
    assert npy_resp.status == 200, npy_resp.text
    assert npy_resp.headers["content-type"] == "application/x-npy"
    got_npy = np.load(io.BytesIO(npy_resp.body))
    if task == "regression":
        same(got_npy.astype(float), expected.values.astype(float))
    else:
        assert got_npy.tolist() == expected.values.tolist()


def test_content_types_agree(case):
    framework, _, model_dir, server = case
    meta = metadata(model_dir)
    records = [s["input"] for s in meta["samples"]]
    by_csv = json.loads(server.invoke(rows_csv(records)).body)["predictions"]
    bodies = {
        "application/json": json.dumps(records),
        "application/jsonlines": "".join(json.dumps(r) + "\n" for r in records),
    }
    for content_type, body in bodies.items():
        resp = server.invoke(body, content_type)
        assert resp.status == 200, (content_type, resp.text)
        same_predictions(framework, json.loads(resp.body)["predictions"], by_csv)
    keyed = {"instances": [dict(zip(meta["feature_names"], r, strict=True)) for r in records]}
    same_predictions(
        framework,
        json.loads(server.invoke(json.dumps(keyed), "application/json").body)["predictions"],
        by_csv,
    )
    features = {"instances": [{"features": r} for r in records]}
    same_predictions(
        framework,
        json.loads(server.invoke(json.dumps(features), "application/json").body)["predictions"],
        by_csv,
    )
    one = server.invoke(json.dumps(records[0]), "application/json")
    same_predictions(framework, json.loads(one.body)["predictions"], by_csv[:1])

    as_csv = server.invoke(rows_csv(records), "text/csv", "text/csv")
    assert as_csv.headers["content-type"] == "text/csv"
    assert as_csv.text.splitlines() == [str(v) for v in by_csv]
    as_lines = server.invoke(rows_csv(records), "text/csv", "application/jsonlines")
    assert [json.loads(line) for line in as_lines.text.splitlines()] == by_csv


def test_csv_edge_forms_give_the_same_answer(case):
    framework, _, model_dir, server = case
    record = metadata(model_dir)["samples"][0]["input"]
    line = ",".join(map(repr, record))
    want = json.loads(server.invoke(line + "\n").body)["predictions"]
    assert len(want) == 1
    for body, content_type in [
        (line, "text/csv"),  # no trailing newline
        (line + "\r\n", "text/csv"),
        (line + "\n", "text/csv; charset=utf-8"),
        (line + "\n", "TEXT/CSV"),
    ]:
        resp = server.invoke(body, content_type)
        assert resp.status == 200, (body, content_type, resp.text)
        same_predictions(framework, json.loads(resp.body)["predictions"], want)


def test_accept_negotiation(case):
    _, _, model_dir, server = case
    line = ",".join(map(repr, metadata(model_dir)["samples"][0]["input"]))
    for accept, expected in [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("application/xml, text/csv", "text/csv"),
        ("application/json;q=0.5, text/csv;q=0.9", "text/csv"),
        ("text/*", "text/csv"),
    ]:
        resp = server.invoke(line, "text/csv", accept)
        assert resp.status == 200, (accept, resp.text)
        assert resp.headers["content-type"] == expected
    resp = server.invoke(line, "text/csv", "application/xml")
    assert resp.status == 406
    assert "application/xml" in resp.text


def test_inference_keys_by_custom_attributes(case):
    _, task, model_dir, server = case
    meta = metadata(model_dir)
    records = [s["input"] for s in meta["samples"]]
    if task == "regression":
        resp = server.invoke(
            rows_csv(records),
            "text/csv",
            x_amzn_sagemaker_custom_attributes="inference_output=predicted_label",
        )
        assert resp.status == 200
        got = [p["predicted_label"] for p in json.loads(resp.body)["predictions"]]
        assert got == json.loads(server.invoke(rows_csv(records)).body)["predictions"]
        refused = server.invoke(
            rows_csv(records), "text/csv", x_amzn_sagemaker_custom_attributes="inference_output=probabilities"
        )
        assert refused.status == 400
        assert "predicted_label" in refused.text
        return
    attrs = "trace=abc; inference_output=predicted_label,probability,probabilities,labels"
    resp = server.invoke(rows_csv(records), "text/csv", "application/json", x_amzn_sagemaker_custom_attributes=attrs)
    assert resp.status == 200, resp.text
    predictions = json.loads(resp.body)["predictions"]
    for prediction, sample in zip(predictions, meta["samples"], strict=True):
        assert list(prediction) == ["predicted_label", "probability", "probabilities", "labels"]
        assert prediction["labels"] == meta["labels"] == ["F", "I", "M"]
        assert prediction["predicted_label"] == sample["expected"]["predicted_label"]
        np.testing.assert_allclose(prediction["probabilities"], sample["expected"]["probabilities"], rtol=1e-6)
        assert prediction["probability"] == max(prediction["probabilities"])
        assert prediction["predicted_label"] == prediction["labels"][int(np.argmax(prediction["probabilities"]))]

    as_csv = server.invoke(
        rows_csv(records[:1]),
        "text/csv",
        "text/csv",
        x_amzn_sagemaker_custom_attributes="inference_output=predicted_label,probabilities,labels",
    )
    first = predictions[0]
    # AWS's form: lists as one quoted field, which the runtime's keyed CSV reader reads back.
    assert as_csv.text.startswith(f'{first["predicted_label"]},"[')
    assert as_csv.text.endswith("\",\"['F', 'I', 'M']\"\n")
    (read_back,) = decode_keyed_csv(as_csv.body, ("predicted_label", "probabilities", "labels"))
    assert read_back["predicted_label"] == first["predicted_label"]
    assert read_back["labels"] == ["F", "I", "M"]
    np.testing.assert_allclose(read_back["probabilities"], first["probabilities"], rtol=1e-6)
    as_lines = server.invoke(
        rows_csv(records),
        "text/csv",
        "application/jsonlines",
        x_amzn_sagemaker_custom_attributes="inference_output=predicted_label",
    )
    assert [json.loads(x) for x in as_lines.text.splitlines()] == [
        {"predicted_label": p["predicted_label"]} for p in predictions
    ]


BAD_INPUTS = [
    ("header row", "length,diameter\n1,2\n", "text/csv", ["line 1, column 1", "header"]),
    ("non-numeric field", "1,2,abc\n", "text/csv", ["line 1, column 3", "'abc'"]),
    ("ragged rows", "1,2,3\n1,2\n", "text/csv", ["line 2 has 2 fields"]),
    ("empty body", "", "text/csv", ["empty"]),
    ("invalid JSON", '{"instances": [1, 2', "application/json", ["invalid JSON"]),
    ("invalid JSON Lines", "[1, 2]\n{oops\n", "application/jsonlines", ["line 2"]),
    ("binary garbage", b"\x93NUMPY\xff\x00\x81garbage", "application/x-npy", ["NPY"]),
    ("binary garbage as CSV", b"\xff\xfe\x00\x81", "text/csv", ["UTF-8"]),
    ("unsupported content type", "1,2,3", "application/xml", ["application/xml"]),
    ("missing content type", "1,2,3", None, ["Content-Type"]),
    ("object array", None, "application/x-npy", ["pickle"]),
    ("unknown JSON shape", '{"rows": [[1, 2]]}', "application/json", ["features"]),
]


@pytest.mark.parametrize("name,body,content_type,phrases", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_naming_the_problem(case, name, body, content_type, phrases):
    _, _, _, server = case
    if body is None:
        buffer = io.BytesIO()
        np.save(buffer, np.array([["a", 1]], dtype=object), allow_pickle=True)
        body = buffer.getvalue()
    resp = server.invoke(body, content_type)
    assert 400 <= resp.status < 500, (resp.status, resp.text)
    assert resp.headers["content-type"].startswith("text/plain")
    for phrase in phrases:
        assert phrase in resp.text, (phrase, resp.text)
    assert "Traceback" not in resp.text


def test_wrong_feature_count_names_expected_and_got(case):
    _, _, model_dir, server = case
    n = len(metadata(model_dir)["feature_names"])
    resp = server.invoke(",".join(["1.0"] * (n - 1)))
    assert resp.status == 400
    assert f"expected {n} features per record, got {n - 1}" in resp.text


def test_nan_and_inf_are_refused_where_the_model_cannot_take_them(case):
    framework, _, model_dir, server = case
    n = len(metadata(model_dir)["feature_names"])
    with_inf = ",".join(["1.0"] * (n - 1) + ["inf"])
    resp = server.invoke(with_inf)
    assert resp.status == 400
    assert f"record 1, feature {n} is infinite" in resp.text
    with_missing = ",".join(["1.0"] * (n - 1) + [""])
    resp = server.invoke(with_missing)
    if framework == "tensorflow":
        assert resp.status == 400
        assert f"feature {n} is missing" in resp.text
    else:  # XGBoost and these scikit-learn forests take missing values
        assert resp.status == 200, resp.text


def test_ping_execution_parameters_metrics_and_routes(case):
    _, _, _, server = case
    ping = server.request("GET", "/ping")
    assert ping.status == 200
    params = server.request("GET", "/execution-parameters")
    assert params.status == 200
    assert json.loads(params.body) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    server.invoke("not,a,number")
    metrics = server.request("GET", "/metrics")
    assert metrics.status == 200
    assert 'modelcrate_requests_total{route="/ping",status="200"}' in metrics.text
    assert 'modelcrate_errors_total{route="/invocations",status="400"}' in metrics.text
    assert 'modelcrate_request_duration_seconds_bucket{route="/invocations",le="+Inf"}' in metrics.text
    assert server.request("GET", "/nowhere").status == 404
    assert server.request("GET", "/invocations").status == 405
    unknown_headers = server.invoke("1", "text/csv", X_Amzn_SageMaker_Target_Model="m.tar.gz", X_Whatever="1")
    assert unknown_headers.status == 400  # judged on its body (one feature), not on the headers
