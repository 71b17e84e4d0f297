"""The containers around a model in a serial inference pipeline, served without user code: a feature-engineering
container (a fitted scikit-learn transformer) and a post-processing container (a fitted LabelEncoder), chained by
hand with an XGBoost classifier trained on encoded labels, as an Autopilot pipeline is."""

from __future__ import annotations

import ast
import csv
import io
import json

import joblib
import numpy as np
import pandas as pd
import pytest

from modelcrate.scaffold.sample_models import abalone_dataset

KEYS = "predicted_label,probabilities"
TYPES = ["text/csv", "application/json", "application/jsonlines"]


@pytest.fixture(scope="module")
def autopilot(tmp_path_factory):
    """(features, classifier, encoder, their model directories, test records as a DataFrame)."""
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    data = abalone_dataset("classification")
    frame = pd.DataFrame(data.x_train, columns=data.feature_names)
    sexes = np.array(data.labels)[data.y_train]
    # Selecting columns by name: served, it needs a DataFrame built from the headerless records.
    features = make_pipeline(ColumnTransformer([("scale", StandardScaler(), data.feature_names)])).fit(frame)
    encoder = LabelEncoder().fit(sexes)
    classifier = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0)
    classifier.fit(features.transform(frame), encoder.transform(sexes))
    root = tmp_path_factory.mktemp("autopilot")
    dirs = {name: root / name for name in ("features", "classifier", "encoder")}
    for directory in dirs.values():
        directory.mkdir()
    joblib.dump(features, dirs["features"] / "model.joblib")
    classifier.save_model(dirs["classifier"] / "model.json")
    joblib.dump(encoder, dirs["encoder"] / "model.joblib")
    test = pd.DataFrame(data.x_test[:25], columns=data.feature_names)
    return features, classifier, encoder, dirs, test


@pytest.fixture(scope="module")
def servers(autopilot, tmp_path_factory):
    from tests.conftest import launch

    _, _, _, dirs, _ = autopilot
    logs = tmp_path_factory.mktemp("pipeline-logs")
    started = [
        launch(dirs["features"], logs),
        launch(dirs["classifier"], logs, env={"SAGEMAKER_INFERENCE_OUTPUT": KEYS}),
        launch(dirs["encoder"], logs, env={"SAGEMAKER_INFERENCE_INPUT": KEYS}),
    ]
    yield started
    for server in started:
        server.stop()


def body_of(records: np.ndarray, content_type: str) -> str:
    rows = records.tolist()
    if content_type == "text/csv":
        return "".join(",".join(map(repr, row)) + "\n" for row in rows)
    if content_type == "application/json":
        return json.dumps({"instances": rows})
    return "".join(json.dumps(row) + "\n" for row in rows)


def chain(servers, body: str, content_type: str, accept: str, **headers):
    """Each container's response body is the next one's request body, typed by its response Content-Type."""
    responses = []
    for server in servers:
        resp = server.invoke(body, content_type, accept, **(headers if server is servers[-1] else {}))
        assert resp.status == 200, (server.url, resp.text)
        responses.append(resp)
        body, content_type = resp.body, resp.headers["content-type"]
    return responses


def last_column(resp) -> list:
    if resp.headers["content-type"] == "text/csv":
        return resp.text.splitlines()
    if resp.headers["content-type"] == "application/json":
        return json.loads(resp.body)["predictions"]
    return [json.loads(line) for line in resp.text.splitlines()]


@pytest.mark.parametrize("content_type", TYPES)
def test_feature_engineering_model_and_post_processing_containers_fit_together(autopilot, servers, content_type):
    features, classifier, encoder, _, test = autopilot
    transformed = features.transform(test)
    want = encoder.inverse_transform(classifier.predict(transformed)).tolist()

    engineered, classified, decoded = chain(servers, body_of(test.to_numpy(), content_type), content_type, content_type)

    assert [r.headers["content-type"] for r in (engineered, classified, decoded)] == [content_type] * 3
    if content_type == "text/csv":  # repr-precision floats: the classifier reads the very same float64
        np.testing.assert_array_equal(np.loadtxt(io.StringIO(engineered.text), delimiter=",", ndmin=2), transformed)
        assert classified.text.splitlines()[0].startswith(f'{classifier.predict(transformed[:1])[0]},"[')
    elif content_type == "application/json":
        np.testing.assert_array_equal(json.loads(engineered.body)["instances"], transformed)
    else:
        np.testing.assert_array_equal([json.loads(line) for line in engineered.text.splitlines()], transformed)
    assert last_column(decoded) == want
    assert set(want) == {"F", "I", "M"}


@pytest.mark.parametrize("content_type", TYPES)
def test_post_processing_passes_probabilities_through_and_decodes_labels(autopilot, servers, content_type):
    features, classifier, encoder, _, test = autopilot
    transformed = features.transform(test)
    wanted_labels = encoder.inverse_transform(classifier.predict(transformed)).tolist()
    wanted_probabilities = classifier.predict_proba(transformed).tolist()

    *_, decoded = chain(
        servers,
        body_of(test.to_numpy(), content_type),
        content_type,
        content_type,
        X_Amzn_SageMaker_Custom_Attributes="inference_output=predicted_label,probabilities,labels",
    )

    if content_type == "text/csv":  # AWS's form: lists as one quoted field each
        rows = csv.reader(io.StringIO(decoded.text))
        rows = [[label, ast.literal_eval(proba), ast.literal_eval(labels)] for label, proba, labels in rows]
    else:
        rows = [[r["predicted_label"], r["probabilities"], r["labels"]] for r in last_column(decoded)]
    assert [r[0] for r in rows] == wanted_labels
    assert [r[1] for r in rows] == wanted_probabilities  # float32 probabilities survive as they were written
    assert all(r[2] == ["F", "I", "M"] for r in rows)


def test_post_processing_reads_float_indexes_and_refuses_what_is_no_class_index(servers):
    *_, decoder = servers
    resp = decoder.invoke('2.0,"[0.1, 0.2, 0.7]"\n0,"[0.8, 0.1, 0.1]"\n', accept="text/csv")
    assert (resp.status, resp.text) == (200, "M\nF\n")
    keyed = decoder.invoke(
        '2.0,"[0.1, 0.2, 0.7]"\n',
        accept="application/json",
        X_Amzn_SageMaker_Custom_Attributes="inference_output=labels",
    )
    assert json.loads(keyed.body) == {"predictions": [{"labels": ["F", "I", "M"]}]}
    for body, phrase in [
        ('2.5,"[0.1, 0.2, 0.7]"\n', "record 1: 2.5 is not a class index; this label encoder knows 3 classes"),
        ('1,"[1]"\n3,"[1]"\n', "record 2: 3.0 is not a class index"),
        ('-1,"[1]"\n', "-1.0 is not a class index"),
        ('M,"[1]"\n', "'M' is not a class index"),
        ("1\n", "CSV line 1 has 1 fields; SAGEMAKER_INFERENCE_INPUT names 2"),
        ('{"predictions": [{"predicted_label": 1}]}', "has no probabilities"),
    ]:
        content_type = "application/json" if body.startswith("{") else "text/csv"
        resp = decoder.invoke(body, content_type)
        assert resp.status == 400, (body, resp.text)
        assert phrase in resp.text, (body, resp.text)
    refused = decoder.invoke("1,[]", X_Amzn_SageMaker_Custom_Attributes="inference_output=probability")
    assert refused.status == 400 and "supports predicted_label, probabilities, labels" in refused.text


def test_label_decoder_takes_plain_class_indexes_in_npy(servers):
    *_, decoder = servers
    npy = io.BytesIO()
    np.save(npy, np.array([2.0, 0.0, 1.0]))
    resp = decoder.invoke(npy.getvalue(), "application/x-npy", "application/json")
    assert json.loads(resp.body) == {"predictions": ["M", "F", "I"]}


def test_feature_transformer_answers_npy_and_refuses_inference_keys(autopilot, servers, start_server):
    features, _, _, dirs, test = autopilot
    engineer, *_ = servers
    resp = engineer.invoke(body_of(test.to_numpy(), "text/csv"), "text/csv", "application/x-npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(resp.body)), features.transform(test))
    refused = engineer.invoke(
        body_of(test.to_numpy()[:1], "text/csv"), X_Amzn_SageMaker_Custom_Attributes="inference_output=predicted_label"
    )
    assert refused.status == 400 and "no inference keys (it answers with transformed features)" in refused.text
    wrong_width = engineer.invoke("1,2,3")
    assert wrong_width.status == 400 and "expected 8 features per record, got 3" in wrong_width.text

    server = start_server(dirs["features"], env={"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label"}, wait=False)
    assert server.process.wait(60) != 0
    assert "this container serves a sklearn feature transform model" in server.log()
    assert "set it on the model container that follows in the pipeline" in server.log()
