"""The two trainers: a scikit-learn random forest and XGBoost's native ``xgboost.train``.

Each framework is imported only when its trainer runs, so an image carries just its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcrate.predictors.base import CLASSIFICATION, REGRESSION
from modelcrate.training.data import Channel
from modelcrate.training.errors import JobError


def _describe(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:5])
    return shown + (", ..." if len(values) > 5 else "")


def _check_validation_labels(train_labels: np.ndarray, validation: Channel | None) -> None:
    if validation is None:
        return
    unseen = np.setdiff1d(np.unique(validation.labels), train_labels)
    if len(unseen):
        raise JobError(
            f"the validation channel has class labels the train channel never has ({_describe(unseen)}); "
            "a classifier only predicts classes it was trained on: add rows of those classes to train"
        )


def sklearn_labels(hyperparameters: dict[str, Any], train: Channel, validation: Channel | None) -> list:
    """The classes as ints, so labels read 0, 1, 2 rather than 0.0, 1.0, 2.0."""
    present = np.unique(train.labels)
    # scikit-learn refuses fractional labels as continuous; beyond 2**53 no int64 is sure to hold a label.
    bad = present[(present != np.floor(present)) | (np.abs(present) >= 2**53)]
    if len(bad):
        raise JobError(
            f"the train channel's label column holds {_describe(bad)}; classification needs class labels that "
            "are whole numbers: encode each class as one"
        )
    if len(present) < 2:
        raise JobError(f"the train channel has one class only ({_describe(present)}); a classifier needs two or more")
    _check_validation_labels(present, validation)
    return present.astype(np.int64).tolist()


def xgboost_labels(hyperparameters: dict[str, Any], train: Channel, validation: Channel | None) -> list:
    """XGBoost learns classes 0..k-1; binary:logistic learns 0 and 1."""
    present = np.unique(train.labels)
    if np.any(present < 0) or np.any(present != np.floor(present)):
        bad = present[(present < 0) | (present != np.floor(present))]
        raise JobError(
            f"the train channel's label column holds {_describe(bad)}; XGBoost classification needs class "
            "labels 0, 1, ..., k-1: encode each class as a whole number from 0"
        )
    if len(present) < 2:
        raise JobError(f"the train channel has one class only ({_describe(present)}); a classifier needs two or more")
    if present.max() >= len(train.labels):
        # XGBoost predicts a probability for every class up to the largest: more classes than rows is no encoding.
        raise JobError(
            f"the train channel's largest class label is {present.max():g} but it has {len(train.labels)} rows; "
            "XGBoost classification needs class labels 0, 1, ..., k-1: encode each class as a whole number from 0"
        )
    objective = hyperparameters["objective"]
    if objective == "binary:logistic" and present.max() > 1:
        raise JobError(
            f"objective=binary:logistic needs labels 0 and 1 but the train channel has {_describe(present)}; "
            "use objective=multi:softprob for more classes"
        )
    _check_validation_labels(present, validation)
    return list(range(2 if objective == "binary:logistic" else int(present.max()) + 1))


def sklearn_fit_and_save(
    task: str,
    hyperparameters: dict[str, Any],
    labels: list | None,
    train: Channel,
    validation: Channel | None,
    path: Path,
) -> None:
    import joblib
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    estimator = RandomForestRegressor if task == REGRESSION else RandomForestClassifier
    model = estimator(
        n_estimators=hyperparameters["n_estimators"],
        max_depth=hyperparameters["max_depth"] or None,
        min_samples_split=hyperparameters["min_samples_split"],
        min_samples_leaf=hyperparameters["min_samples_leaf"],
        max_features=None if hyperparameters["max_features"] == "all" else hyperparameters["max_features"],
        criterion=hyperparameters["criterion"],
        bootstrap=hyperparameters["bootstrap"],
        random_state=hyperparameters["seed"],
        n_jobs=hyperparameters["n_jobs"] or -1,
    )
    targets = train.labels
    if task == CLASSIFICATION:
        targets = targets.astype(type(labels[0]))  # classes_ then hold the labels recorded in modelcrate.json
    model.fit(train.features, targets)
    # A forest predicting on several threads sums the trees in finishing order, which can change the last bits
    # of a prediction between calls; served models predict on one thread (the server runs a worker per core).
    model.set_params(n_jobs=1)
    joblib.dump(model, path)


def xgboost_fit_and_save(
    task: str,
    hyperparameters: dict[str, Any],
    labels: list | None,
    train: Channel,
    validation: Channel | None,
    path: Path,
) -> None:
    import xgboost

    params = {
        "objective": hyperparameters["objective"],
        "tree_method": "hist",
        "seed": hyperparameters["seed"],
        **{
            name: hyperparameters[name]
            for name in (
                "max_depth",
                "eta",
                "subsample",
                "colsample_bytree",
                "min_child_weight",
                "gamma",
                "lambda",
                "alpha",
            )
        },
    }
    if hyperparameters["nthread"]:
        params["nthread"] = hyperparameters["nthread"]
    if hyperparameters["objective"].startswith("multi:"):
        params["num_class"] = len(labels)
    # QuantileDMatrix holds the features as histogram bins, a byte a value, where DMatrix copies them at 8 bytes a
    # value; with tree_method hist both train the same model (benchmarks/training_memory.py measures the memory).
    train_matrix = xgboost.QuantileDMatrix(train.features, label=train.labels)
    evals = [(train_matrix, "train")]
    if validation is not None:
        evals.append(
            (xgboost.QuantileDMatrix(validation.features, label=validation.labels, ref=train_matrix), "validation")
        )
    stop_after = hyperparameters["early_stopping_rounds"] if validation is not None else 0
    booster = xgboost.train(
        params,
        train_matrix,
        num_boost_round=hyperparameters["num_round"],
        evals=evals,
        early_stopping_rounds=stop_after or None,
        verbose_eval=False,
    )
    if stop_after:
        # Keep the trees up to the best round: a served Booster predicts with every tree it holds.
        booster = booster[: booster.best_iteration + 1]
    booster.save_model(str(path))


@dataclass(frozen=True)
class Trainer:
    model_format: str
    model_file: str
    class_labels: Callable[[dict[str, Any], Channel, Channel | None], list]
    fit_and_save: Callable[[str, dict[str, Any], list | None, Channel, Channel | None, Path], None]


TRAINERS = {
    "sklearn": Trainer("joblib", "model.joblib", sklearn_labels, sklearn_fit_and_save),
    "xgboost": Trainer("json", "model.json", xgboost_labels, xgboost_fit_and_save),
}
