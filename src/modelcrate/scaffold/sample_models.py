"""Abalone sample models for every framework and format, trained offline and deterministically.

Regression predicts Rings from sex (one-hot) and the seven measurements; classification predicts
Sex (F, I, M) from the measurements and Rings. A ``modelcrate.json`` beside the model records the
feature names, framework version, held-out metrics and a few input rows with their expected outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from modelcrate.predictors import (
    CLASSIFICATION,
    FORMATS_OF_FRAMEWORK,
    REGRESSION,
    ModelMetadata,
    find_model_file,
    load_predictor,
)
from modelcrate.predictors.evaluation import framework_version, prediction_metrics, recorded_samples
from modelcrate.predictors.trust import record_model_files

COLUMNS = [
    "sex",
    "length",
    "diameter",
    "height",
    "whole_weight",
    "shucked_weight",
    "viscera_weight",
    "shell_weight",
    "rings",
]
MEASUREMENTS = COLUMNS[1:8]
SEXES = ["F", "I", "M"]
TASKS = (REGRESSION, CLASSIFICATION)
MODEL_FILE_NAMES = {
    "pkl": "model.pkl",
    "joblib": "model.joblib",
    "json": "model.json",
    "ubj": "model.ubj",
    "model": "xgboost-model",
    "keras": "model.keras",
    "h5": "model.h5",
    "savedmodel": "saved_model",
}


class SampleModelError(ValueError):
    pass


@dataclass(frozen=True)
class Dataset:
    feature_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list | None  # classification: y holds indexes into labels


def read_abalone() -> list[list[str]]:
    text = resources.files("modelcrate.data").joinpath("abalone.data").read_text()
    return [line.split(",") for line in text.splitlines() if line]


def abalone_dataset(task: str) -> Dataset:
    rows = read_abalone()
    sex = np.array([r[0] for r in rows])
    numeric = np.array([[float(v) for v in r[1:]] for r in rows])
    if task == REGRESSION:
        one_hot = (sex[:, None] == np.array(SEXES)[None, :]).astype(float)
        x = np.hstack([one_hot, numeric[:, :7]])
        names = [f"sex_{s}" for s in SEXES] + MEASUREMENTS
        y, labels = numeric[:, 7], None
    else:
        x, names = numeric, [*MEASUREMENTS, "rings"]
        y, labels = np.searchsorted(SEXES, sex), list(SEXES)
    test = np.arange(len(rows)) % 5 == 0  # a fixed, deterministic hold-out of 20%
    return Dataset(names, x[~test], y[~test], x[test], y[test], labels)


def _frame(x: np.ndarray, names: list[str]):
    import pandas as pd

    return pd.DataFrame(x, columns=names)


def _train_sklearn(data: Dataset, task: str, path: Path) -> None:
    import joblib
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    params = dict(n_estimators=100, max_depth=12, min_samples_leaf=2, random_state=0, n_jobs=1)
    if task == REGRESSION:
        model = RandomForestRegressor(**params)
        model.fit(_frame(data.x_train, data.feature_names), data.y_train)
    else:
        model = RandomForestClassifier(**params)
        labels = np.array(data.labels, dtype=object)
        model.fit(_frame(data.x_train, data.feature_names), labels[data.y_train])
    joblib.dump(model, path)


def _train_xgboost(data: Dataset, task: str, path: Path) -> None:
    import xgboost

    params = dict(n_estimators=100, max_depth=5, learning_rate=0.1, random_state=0, tree_method="hist")
    model = xgboost.XGBRegressor(**params) if task == REGRESSION else xgboost.XGBClassifier(**params)
    model.fit(_frame(data.x_train, data.feature_names), data.y_train)
    if path.suffix:
        model.save_model(path)  # the scikit-learn API's file
    else:
        # The legacy binary format, saved from a Booster (XGBoost warns that the format is deprecated).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.get_booster().save_model(f"{path}.deprecated")
        os.replace(f"{path}.deprecated", path)


def _train_tensorflow(data: Dataset, task: str, path: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    normalize = keras.layers.Normalization()
    normalize.adapt(data.x_train.astype(np.float32))
    n_out, activation, loss = (
        (1, None, "mse") if task == REGRESSION else (len(data.labels), "softmax", "sparse_categorical_crossentropy")
    )
    model = keras.Sequential(
        [
            keras.Input((len(data.feature_names),)),
            normalize,
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(n_out, activation=activation),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(data.x_train.astype(np.float32), data.y_train, epochs=25, batch_size=64, verbose=0, shuffle=True)
    if path.suffix:
        model.save(path)
    else:
        model.export(path, verbose=False)


_TRAINERS = {"sklearn": _train_sklearn, "xgboost": _train_xgboost, "tensorflow": _train_tensorflow}


def create_sample_model(framework: str, model_format: str | None, task: str, output: Path) -> ModelMetadata:
    """Train an Abalone model and write it with its ``modelcrate.json`` into ``output`` (atomically)."""
    if framework not in FORMATS_OF_FRAMEWORK:
        raise SampleModelError(f"unknown framework {framework!r}; choose one of {', '.join(FORMATS_OF_FRAMEWORK)}")
    model_format = model_format or FORMATS_OF_FRAMEWORK[framework][0]
    if model_format not in FORMATS_OF_FRAMEWORK[framework]:
        raise SampleModelError(
            f"{framework} models come as {', '.join(FORMATS_OF_FRAMEWORK[framework])}, not {model_format!r}"
        )
    if task not in TASKS:
        raise SampleModelError(f"unknown task {task!r}; choose regression or classification")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SampleModelError(f"{output} already exists and is not an empty directory; choose another --output")

    data = abalone_dataset(task)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        _TRAINERS[framework](data, task, staging / MODEL_FILE_NAMES[model_format])
        metadata = ModelMetadata(
            framework=framework,
            framework_version=framework_version(framework),
            model_format=model_format,
            task=task,
            feature_names=data.feature_names,
            labels=data.labels,
        )
        record_model_files(staging, find_model_file(staging), metadata)
        metadata.write(staging)
        # Metrics and recorded outputs come from the saved file, loaded the way the server loads it.
        predictor = load_predictor(staging)
        prediction = predictor.predict(data.x_test)
        truth = data.y_test if task == REGRESSION else np.array(data.labels, dtype=object)[data.y_test]
        metadata.metrics = prediction_metrics(task, prediction, truth)
        metadata.samples = recorded_samples(data.x_test, prediction)
        metadata.write(staging)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metadata
