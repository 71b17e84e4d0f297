"""`modelcrate optimize`: compiled tree models answer like the originals, and anything else serves as before."""

from __future__ import annotations

import json
import warnings

import joblib
import numpy as np
import pytest
from sklearn import ensemble, linear_model, tree
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline
from typer.testing import CliRunner

from modelcrate.cli import app
from modelcrate.compiler.trees import (
    ABSOLUTE_TOLERANCE,
    RANDOM_ROWS,
    RELATIVE_TOLERANCE,
    _split_thresholds,
    verification_rows,
)
from modelcrate.predictors import CLASSIFICATION, REGRESSION, ModelLoadError, ModelMetadata, load_predictor
from modelcrate.predictors.compiled import (
    COMPILED_FILE,
    LARGE_BATCH_ROWS,
    MODEL_COMPILED,
    MODEL_ORIGINAL,
    CompiledPredictor,
)
from modelcrate.predictors.trust import file_sha256
from modelcrate.scaffold.sample_models import abalone_dataset

SMALL = dict(random_state=0)
SKLEARN_MODELS = {
    "DecisionTree": (
        tree.DecisionTreeRegressor(max_depth=8, **SMALL),
        tree.DecisionTreeClassifier(max_depth=8, **SMALL),
    ),
    "RandomForest": (
        ensemble.RandomForestRegressor(n_estimators=10, max_depth=8, n_jobs=1, **SMALL),
        ensemble.RandomForestClassifier(n_estimators=10, max_depth=8, n_jobs=1, **SMALL),
    ),
    "ExtraTrees": (
        ensemble.ExtraTreesRegressor(n_estimators=10, max_depth=8, n_jobs=1, **SMALL),
        ensemble.ExtraTreesClassifier(n_estimators=10, max_depth=8, n_jobs=1, **SMALL),
    ),
    "GradientBoosting": (
        ensemble.GradientBoostingRegressor(n_estimators=20, max_depth=3, **SMALL),
        ensemble.GradientBoostingClassifier(n_estimators=20, max_depth=3, **SMALL),
    ),
    "HistGradientBoosting": (
        ensemble.HistGradientBoostingRegressor(max_iter=20, **SMALL),
        ensemble.HistGradientBoostingClassifier(max_iter=20, **SMALL),
    ),
}
runner = CliRunner()


def _write_model(model_dir, model, task: str, file_name: str = "model.pkl"):
    """Fit ``model`` on Abalone, save it with a modelcrate.json holding a few samples, like sample-model does."""
    data = abalone_dataset(task)
    y = np.asarray(data.labels, dtype=object)[data.y_train] if task == CLASSIFICATION else data.y_train
    model.fit(data.x_train, y)
    model_dir.mkdir()
    if file_name.endswith(".pkl"):
        joblib.dump(model, model_dir / file_name)
    else:
        model.save_model(model_dir / file_name)
    samples = [{"input": row.tolist()} for row in data.x_test[:5]]
    ModelMetadata(task=task, feature_names=data.feature_names, labels=data.labels, samples=samples).write(model_dir)
    return data


def _optimize(model_dir):
    result = runner.invoke(app, ["optimize", str(model_dir)])
    assert result.exit_code == 0, result.output
    return result


def _assert_same_answers(original, predict, rows, tie_breaks: int):
    """``predict``'s answers are the original model's, within the stated tolerance."""
    expected, got = original.predict(rows), predict(rows)
    if original.task == CLASSIFICATION:
        # Labels exact, except the counted rows where the top two probabilities tie within the tolerance.
        differ = np.asarray(expected.values) != np.asarray(got.values)
        assert differ.sum() == tie_breaks
        top_two = np.sort(expected.probabilities[differ], axis=1)[:, -2:]
        assert np.all(top_two[:, 1] - top_two[:, 0] <= 2 * ABSOLUTE_TOLERANCE)
        expected_values, got_values = expected.probabilities, got.probabilities
    else:
        expected_values, got_values = expected.values, got.values
    np.testing.assert_allclose(got_values, expected_values, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)


def _check_compiled(model_dir):
    _optimize(model_dir)
    original = load_predictor(model_dir, prefer_compiled=False)
    compiled = load_predictor(model_dir)
    assert isinstance(compiled, CompiledPredictor)
    assert (compiled.task, compiled.labels, compiled.n_features) == (
        original.task,
        original.labels,
        original.n_features,
    )
    record = ModelMetadata.read(model_dir).compiled
    assert record["verified"] and record["rows_checked"] == RANDOM_ROWS + 5
    recorded = ModelMetadata.read(model_dir).sha256_of_files
    assert recorded == {name: file_sha256(model_dir / name) for name in (record["source_file"], COMPILED_FILE)}
    assert record["max_abs_error"] <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * 30
    # The same 10,000 random rows the command checked, checked again here through load_predictor.
    graph = (model_dir / COMPILED_FILE).read_bytes()
    samples = np.asarray([s["input"] for s in ModelMetadata.read(model_dir).samples])
    rows = verification_rows(graph, original.n_features, samples)
    assert len(rows) == RANDOM_ROWS + 5
    _assert_same_answers(original, compiled.predict_with_graph, rows, record["label_mismatches"])
    return original, compiled


@pytest.mark.parametrize("task", [REGRESSION, CLASSIFICATION])
@pytest.mark.parametrize("kind", [kind for kind in SKLEARN_MODELS if kind != "HistGradientBoosting"])
def test_sklearn_tree_models_compile_to_the_same_answers(tmp_path, kind, task):
    model = SKLEARN_MODELS[kind][task == CLASSIFICATION]
    _write_model(tmp_path / "model", model, task)
    _check_compiled(tmp_path / "model")


@pytest.mark.parametrize("task", [REGRESSION, CLASSIFICATION])
def test_hist_gradient_boosting_is_not_compiled_yet_and_still_serves(tmp_path, task):
    """skl2onnx 1.20 fails on scikit-learn 1.7's HistGradientBoosting trees: a warning, nothing written."""
    model_dir = tmp_path / "model"
    data = _write_model(model_dir, SKLEARN_MODELS["HistGradientBoosting"][task == CLASSIFICATION], task)
    result = _optimize(model_dir)
    assert "not compiled" in result.output and not (model_dir / COMPILED_FILE).exists()
    assert not isinstance(load_predictor(model_dir), CompiledPredictor)
    assert len(load_predictor(model_dir).predict(data.x_test[:3]).values) == 3


@pytest.mark.parametrize("task", [REGRESSION, CLASSIFICATION])
def test_xgboost_models_compile_to_the_same_answers(tmp_path, task):
    import xgboost

    params = dict(n_estimators=20, max_depth=4, learning_rate=0.3, random_state=0, tree_method="hist")
    model = xgboost.XGBRegressor(**params) if task == REGRESSION else xgboost.XGBClassifier(**params)
    data = abalone_dataset(task)
    model_dir = tmp_path / "model"
    model.fit(data.x_train, data.y_train)  # XGBoost classifiers take class indexes; labels come from the json
    model_dir.mkdir()
    model.save_model(model_dir / "model.json")
    samples = [{"input": row.tolist()} for row in data.x_test[:5]]
    ModelMetadata(task=task, feature_names=data.feature_names, labels=data.labels, samples=samples).write(model_dir)
    _check_compiled(model_dir)


def test_random_rows_cover_every_threshold_range(tmp_path):
    _write_model(tmp_path / "model", SKLEARN_MODELS["RandomForest"][0], REGRESSION)
    _optimize(tmp_path / "model")
    graph = (tmp_path / "model" / COMPILED_FILE).read_bytes()
    rows = verification_rows(graph, 10, np.empty((0, 10)))
    for feature, thresholds in enumerate(_split_thresholds(graph, 10)):
        if len(thresholds):
            assert rows[:, feature].min() < thresholds.min() and rows[:, feature].max() > thresholds.max()
    assert np.array_equal(rows, verification_rows(graph, 10, np.empty((0, 10))))  # a fixed seed


class Doubler(BaseEstimator, TransformerMixin):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.asarray(x) * 2


@pytest.mark.parametrize(
    "model",
    [
        linear_model.LogisticRegression(max_iter=500),
        make_pipeline(Doubler(), tree.DecisionTreeClassifier(max_depth=4, random_state=0)),
    ],
    ids=["LogisticRegression", "Pipeline-with-custom-step"],
)
def test_a_model_that_cannot_be_compiled_still_serves(tmp_path, model):
    model_dir = tmp_path / "model"
    data = _write_model(model_dir, model, CLASSIFICATION)
    before = sorted(p.name for p in model_dir.iterdir()), (model_dir / "modelcrate.json").read_text()
    result = _optimize(model_dir)
    assert "warning:" in result.output and "not compiled" in result.output
    assert (sorted(p.name for p in model_dir.iterdir()), (model_dir / "modelcrate.json").read_text()) == before
    predictor = load_predictor(model_dir)
    assert not isinstance(predictor, CompiledPredictor)
    assert list(predictor.predict(data.x_test[:3]).values) == list(model.predict(data.x_test[:3]))


def test_a_compiled_model_of_another_model_file_is_not_used(tmp_path):
    model_dir = tmp_path / "model"
    _write_model(model_dir, SKLEARN_MODELS["DecisionTree"][0], REGRESSION)
    _optimize(model_dir)
    data = abalone_dataset(REGRESSION)
    joblib.dump(
        tree.DecisionTreeRegressor(max_depth=2, random_state=0).fit(data.x_train, data.y_train), model_dir / "model.pkl"
    )
    with pytest.raises(ModelLoadError, match="changed after it was recorded"):
        load_predictor(model_dir)
    metadata = ModelMetadata.read(model_dir)
    metadata.sha256_of_files = None  # the user accepts the new model.pkl, as the refusal says how
    metadata.write(model_dir)
    with pytest.warns(RuntimeWarning, match="compiled from another version"):
        assert not isinstance(load_predictor(model_dir), CompiledPredictor)


def test_without_onnxruntime_the_original_serves_with_one_warning(tmp_path, monkeypatch):
    import modelcrate.predictors as predictors

    model_dir = tmp_path / "model"
    _write_model(model_dir, SKLEARN_MODELS["DecisionTree"][1], CLASSIFICATION)
    _optimize(model_dir)
    real_find_spec = predictors.importlib.util.find_spec
    monkeypatch.setattr(
        predictors.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real_find_spec(name)
    )
    monkeypatch.setattr(predictors, "_warned_runtime_missing", False)
    with pytest.warns(RuntimeWarning, match="needs onnxruntime, which is not installed"):
        assert not isinstance(load_predictor(model_dir), CompiledPredictor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not isinstance(load_predictor(model_dir), CompiledPredictor)  # warned once only


def test_a_compiled_random_forest_serves_the_original_labels(sample_model, tmp_path, start_server):
    import shutil

    model_dir = tmp_path / "rf"
    shutil.copytree(sample_model("sklearn", "pkl", CLASSIFICATION), model_dir)
    original = load_predictor(model_dir)
    _optimize(model_dir)
    assert isinstance(load_predictor(model_dir), CompiledPredictor)
    rows = abalone_dataset(CLASSIFICATION).x_test[:200]
    server = start_server(model_dir)
    body = "\n".join(",".join(str(float(v)) for v in row) for row in rows)
    response = server.invoke(body, "text/csv", "application/json")
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    served = [p["predicted_label"] if isinstance(p, dict) else p for p in answer["predictions"]]
    assert served == list(original.predict(rows).values)


@pytest.mark.parametrize(
    "framework,fmt,task,handled_by",
    [
        ("xgboost", "json", REGRESSION, "compiled"),  # the graph keeps XGBoost's default directions
        ("sklearn", "pkl", REGRESSION, "original"),  # skl2onnx drops scikit-learn's learnt NaN directions
        ("sklearn", "pkl", CLASSIFICATION, "original"),
    ],
)
def test_records_with_missing_values_get_the_original_models_answers(
    sample_model, tmp_path, start_server, framework, fmt, task, handled_by
):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(sample_model(framework, fmt, task), model_dir)
    _optimize(model_dir)
    assert ModelMetadata.read(model_dir).compiled["missing_values"] == handled_by
    original, compiled = load_predictor(model_dir, prefer_compiled=False), load_predictor(model_dir)
    rows = abalone_dataset(task).x_test[:300].copy()
    rows[np.random.default_rng(1).random(rows.shape) < 0.2] = np.nan
    _assert_same_answers(original, compiled.predict, rows, tie_breaks=0)
    # Through the server: an empty CSV field is a missing value, answered as the original model answers it.
    server = start_server(model_dir)
    body = "\n".join(",".join("" if np.isnan(v) else str(float(v)) for v in row) for row in rows[:20])
    response = server.invoke(body, "text/csv", "application/json")
    assert response.status == 200, response.body
    served = [p["predicted_label"] if isinstance(p, dict) else p for p in json.loads(response.body)["predictions"]]
    expected = original.predict(rows[:20]).values
    if task == CLASSIFICATION:
        assert served == list(expected)
    else:
        np.testing.assert_allclose(served, expected, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)


def test_large_batches_are_answered_by_whichever_model_was_faster_on_the_first(sample_model, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(sample_model("sklearn", "pkl", REGRESSION), model_dir)
    _optimize(model_dir)
    original, compiled = load_predictor(model_dir, prefer_compiled=False), load_predictor(model_dir)
    rows = np.resize(abalone_dataset(REGRESSION).x_test, (LARGE_BATCH_ROWS, 10))
    small = rows[: LARGE_BATCH_ROWS - 1]
    graph_answer = compiled.predict(small).values
    # The graph sums leaves in float32, so its answers differ from the original's in the last bits.
    assert not np.array_equal(graph_answer, original.predict(small).values)
    assert compiled.large_batch_model is None
    # The first large batch is timed on both models; the original's answer is sent.
    np.testing.assert_array_equal(compiled.predict(rows).values, original.predict(rows).values)
    assert compiled.large_batch_model in (MODEL_COMPILED, MODEL_ORIGINAL)
    answer = compiled.predict(rows).values
    if compiled.large_batch_model == MODEL_ORIGINAL:
        np.testing.assert_array_equal(answer, original.predict(rows).values)
    else:
        np.testing.assert_array_equal(answer[: len(small)], graph_answer)
    np.testing.assert_array_equal(compiled.predict(small).values, graph_answer)  # small batches: the graph
