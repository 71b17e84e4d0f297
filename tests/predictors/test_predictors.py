"""Loading and predicting for every framework, format and origin of a model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from modelcrate.predictors import InvalidInput, ModelLoadError, load_predictor
from modelcrate.scaffold.sample_models import abalone_dataset
from tests.conftest import PAIRS


@pytest.mark.parametrize("framework,fmt", PAIRS)
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_pair_loads_and_reproduces_its_recorded_outputs(sample_model, framework, fmt, task):
    model_dir = sample_model(framework, fmt, task)
    meta = json.loads((model_dir / "modelcrate.json").read_text())
    predictor = load_predictor(model_dir)
    assert (predictor.framework, predictor.model_format, predictor.task) == (framework, fmt, task)
    assert predictor.n_features == len(meta["feature_names"])
    prediction = predictor.predict(np.array([s["input"] for s in meta["samples"]]))
    if task == "regression":
        got = prediction.values.astype(float)
        want = [s["expected"]["prediction"] for s in meta["samples"]]
        np.testing.assert_allclose(got, want, rtol=1e-6 if framework == "tensorflow" else 0)
    else:
        assert predictor.labels == ["F", "I", "M"]
        assert prediction.values.tolist() == [s["expected"]["predicted_label"] for s in meta["samples"]]
        np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)


def _data():
    data = abalone_dataset("regression")
    return data, pd.DataFrame(data.x_train, columns=data.feature_names)


def test_xgboost_booster_trained_with_the_native_api_loads_from_every_format(tmp_path):
    import xgboost

    data, frame = _data()
    booster = xgboost.train({"max_depth": 3}, xgboost.DMatrix(frame, label=data.y_train), num_boost_round=10)
    expected = booster.predict(xgboost.DMatrix(frame.iloc[:5]))
    for name in ("b.json", "b.ubj", "b.model"):
        directory = tmp_path / name
        directory.mkdir()
        booster.save_model(directory / name)
        got = load_predictor(directory).predict(data.x_train[:5]).values  # headerless, as CSV arrives
        np.testing.assert_array_equal(got, expected)


def test_xgboost_binary_classifier_with_sklearn_api_and_integer_labels(tmp_path):
    import xgboost

    data, frame = _data()
    labels = (data.y_train > 9).astype(int)
    model = xgboost.XGBClassifier(n_estimators=5).fit(frame, labels)
    model.save_model(tmp_path / "model.json")
    predictor = load_predictor(tmp_path)
    prediction = predictor.predict(data.x_train[:20])
    assert predictor.labels == [0, 1]
    np.testing.assert_array_equal(prediction.probabilities, model.predict_proba(frame.iloc[:20]))
    np.testing.assert_array_equal(prediction.values, model.predict(frame.iloc[:20]))


def test_pickled_xgboost_sklearn_model_is_served_through_its_predict_api(tmp_path):
    import xgboost

    data, frame = _data()
    model = xgboost.XGBRegressor(n_estimators=5).fit(frame, data.y_train)
    joblib.dump(model, tmp_path / "model.pkl")
    predictor = load_predictor(tmp_path)
    assert predictor.framework == "sklearn" and predictor.accepts_nan
    np.testing.assert_array_equal(predictor.predict(data.x_train[:5]).values, model.predict(frame.iloc[:5]))


def test_sklearn_pipeline_selecting_columns_by_name_gets_a_dataframe(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data, frame = _data()
    columns = ColumnTransformer([("scale", StandardScaler(), ["length", "diameter", "height"])])
    model = make_pipeline(columns, LogisticRegression(max_iter=200)).fit(frame, data.y_train > 9)
    joblib.dump(model, tmp_path / "model.joblib")
    predictor = load_predictor(tmp_path)
    assert predictor.labels == [False, True]
    np.testing.assert_array_equal(
        predictor.predict(data.x_train[:5]).probabilities, model.predict_proba(frame.iloc[:5])
    )


def test_keras_sigmoid_binary_classifier(tmp_path):
    import keras

    data, _ = _data()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1, activation="sigmoid")])
    model.save(tmp_path / "model.keras")
    predictor = load_predictor(tmp_path)
    assert predictor.task == "classification" and predictor.labels == [0, 1]
    p = model.predict(data.x_train[:4].astype(np.float32), verbose=0)[:, 0]
    prediction = predictor.predict(data.x_train[:4])
    np.testing.assert_allclose(prediction.probabilities[:, 1], p, rtol=1e-6)
    assert prediction.values.tolist() == (p > 0.5).astype(int).tolist()


def test_labels_in_metadata_must_match_the_model(sample_model, tmp_path):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(sample_model("xgboost", "json", "classification"), target)
    meta = json.loads((target / "modelcrate.json").read_text())
    meta["labels"] = ["only", "two"]
    (target / "modelcrate.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="3 classes but 2 labels"):
        load_predictor(target)


def test_unreadable_files_give_clear_errors(tmp_path):
    for name, phrase in [
        ("model.pkl", "is not a joblib or pickle file"),
        ("model.json", "XGBoost 2.1.3 cannot load"),
        ("model.keras", "cannot load"),
    ]:
        directory = tmp_path / name.replace(".", "_")
        directory.mkdir()
        (directory / name).write_bytes(b"\x00garbage")
        with pytest.raises(ModelLoadError, match=re.escape(phrase)):
            load_predictor(directory)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "model.json").write_text("{}")
    (tmp_path / "meta" / "modelcrate.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"modelcrate\.json is not valid JSON"):
        load_predictor(tmp_path / "meta")


@pytest.mark.parametrize("framework,fmt", [("sklearn", "joblib"), ("xgboost", "json"), ("tensorflow", "keras")])
def test_each_framework_is_imported_only_when_its_model_is_loaded(sample_model, framework, fmt):
    """The other frameworks are made unimportable: loading and predicting must not need them."""
    model_dir = sample_model(framework, fmt, "regression")
    others = sorted({"sklearn", "xgboost", "tensorflow"} - {framework})
    code = (
        "import sys, numpy\n"
        "import modelcrate.predictors as p\n"
        "assert not {'sklearn', 'xgboost', 'tensorflow'} & set(sys.modules), 'imported before any load'\n"
        f"for name in {others!r}: sys.modules[name] = None\n"
        f"predictor = p.load_predictor({str(model_dir)!r})\n"
        "print(predictor.predict(numpy.zeros((1, predictor.n_features))).values.shape)\n"
        f"assert {framework!r} in sys.modules\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "(1,)\n"


def test_loading_a_recorded_xgboost_model_leaves_pandas_and_sklearn_unimported(sample_model):
    """Checking the recorded version imports XGBoost as its predictor does: its own import would bring pandas
    along (+87 MB per worker)."""
    model_dir = sample_model("xgboost", "json", "regression")
    assert json.loads((model_dir / "modelcrate.json").read_text())["framework_version"]
    code = (
        "import sys\n"
        "import modelcrate.predictors as p\n"
        f"p.load_predictor({str(model_dir)!r})\n"
        "print(sorted({'pandas', 'sklearn'} & set(sys.modules)))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize("fmt", ["json", "ubj", "model"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_xgboost_direct_dense_prediction_equals_inplace_predict(sample_model, fmt, task):
    predictor = load_predictor(sample_model("xgboost", fmt, task))
    records = np.random.default_rng(0).random((64, predictor.n_features)) * 10
    records[3, 2] = np.nan
    for batch in (records, records[:1], records[::2], records.astype(np.float32)):
        expected = predictor.booster.inplace_predict(batch, validate_features=False)
        got = predictor._predict_dense(batch)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_sklearn_transformers_are_served_as_feature_transforms(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data, frame = _data()
    scaler = StandardScaler().fit(data.x_train)
    by_name = make_pipeline(
        ColumnTransformer(
            [("scale", StandardScaler(), ["length", "diameter"]), ("sex", OneHotEncoder(), ["sex_F", "sex_I"])],
            sparse_threshold=1.0,
        )
    ).fit(frame)
    for name, model, expected in [
        ("scaler", scaler, scaler.transform(data.x_train[:5])),
        ("by_name", by_name, by_name.transform(frame.iloc[:5])),  # a DataFrame in, sparse one-hot columns out
    ]:
        (tmp_path / name).mkdir()
        joblib.dump(model, tmp_path / name / "model.joblib")
        predictor = load_predictor(tmp_path / name)
        assert (predictor.task, predictor.n_features, predictor.labels) == ("feature_transform", 10, None)
        got = predictor.predict(data.x_train[:5]).values
        np.testing.assert_array_equal(got, expected.toarray() if hasattr(expected, "toarray") else expected)


def test_label_encoder_is_served_as_a_label_decoder(tmp_path):
    from sklearn.preprocessing import LabelEncoder

    joblib.dump(LabelEncoder().fit(["M", "F", "I", "F"]), tmp_path / "model.joblib")
    predictor = load_predictor(tmp_path)
    assert (predictor.task, predictor.n_features, predictor.labels) == ("label_decoding", 1, ["F", "I", "M"])
    assert predictor.predict(np.array([[2.0], [0.0], [1]])).values.tolist() == ["M", "F", "I"]
    for bad, shown in [(1.5, "1.5"), (3.0, "3.0"), (-1.0, "-1.0"), (np.nan, "nan"), (np.inf, "inf")]:
        with pytest.raises(InvalidInput, match=rf"record 2: {shown} is not a class index; .* indexes 0 to 2"):
            predictor.predict(np.array([[0.0], [bad]]))


def test_sklearn_objects_that_are_neither_model_transformer_nor_label_encoder_are_refused(tmp_path):
    from sklearn.preprocessing import LabelBinarizer

    for name, obj, phrase in [
        ("binarizer", LabelBinarizer().fit(["a", "b", "c"]), "does not turn class indexes into classes_"),
        ("dict", {"weights": [1, 2]}, "holds a dict, which has no predict()"),
    ]:
        (tmp_path / name).mkdir()
        joblib.dump(obj, tmp_path / name / "model.pkl")
        with pytest.raises(ModelLoadError, match=re.escape(phrase)):
            load_predictor(tmp_path / name)
