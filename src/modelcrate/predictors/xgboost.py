"""XGBoost models saved as JSON, UBJSON or the binary format, from a Booster or the sklearn API.

Every file is loaded as a Booster: ``inplace_predict`` is the fastest path, and it takes headerless
arrays even when the model was trained on a DataFrame (named features).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from modelcrate.predictors.base import (
    CLASSIFICATION,
    REGRESSION,
    ModelLoadError,
    ModelMetadata,
    Prediction,
    Predictor,
    labelled,
)
from modelcrate.predictors.formats import ModelFile

# Objectives whose output is a class index rather than probabilities.
_LABEL_ONLY_OBJECTIVES = {"binary:hinge", "multi:softmax"}


class XGBoostPredictor(Predictor):
    framework = "xgboost"
    accepts_nan = True  # NaN is XGBoost's missing value

    def __init__(self, booster, model_file: ModelFile, metadata: ModelMetadata):
        self.booster = booster
        self.model_format = model_file.model_format
        config = json.loads(booster.save_config())["learner"]
        self.objective = config["objective"]["name"]
        self.n_features = booster.num_features()
        self.feature_names = list(booster.feature_names or []) or metadata.feature_names
        if self.objective.startswith(("binary:", "multi:")):
            self.task = CLASSIFICATION
            n_classes = max(int(config["learner_model_param"].get("num_class", 0)), 2)
            self.labels = metadata.labels or list(range(n_classes))
            if len(self.labels) != n_classes:
                raise ModelLoadError(
                    f"{model_file.path} has {n_classes} classes but {len(self.labels)} labels are "
                    "recorded in modelcrate.json; fix the labels list"
                )
            self._emits_probabilities = self.objective not in _LABEL_ONLY_OBJECTIVES
        else:
            self.task = REGRESSION

    def predict(self, records: np.ndarray) -> Prediction:
        # validate_features=False: names are checked by count upstream; arrays carry no names.
        raw = self.booster.inplace_predict(records, validate_features=False)
        if self.task == REGRESSION:
            return Prediction(values=raw)
        if not self._emits_probabilities:
            indexes = raw.astype(np.int64)
            return Prediction(values=np.asarray(self.labels, dtype=object)[indexes], labels=self.labels)
        if self.objective == "binary:logitraw":
            raw = 1.0 / (1.0 + np.exp(-raw))
        if raw.ndim == 1:
            raw = np.column_stack([1.0 - raw, raw])
        return labelled(raw, self.labels)


def _import_xgboost():
    """Import XGBoost without its optional scikit-learn and pandas integrations.

    A Booster needs neither, and importing them quadruples start-up (measured: 1.16 s -> 0.29 s), which
    counts against SageMaker's health check. Left alone when they are already imported.
    """
    hidden = [name for name in ("sklearn", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes `import name` raise ImportError inside xgboost.compat
    try:
        import xgboost
    finally:
        for name in hidden:
            del sys.modules[name]
    return xgboost


def load(model_file: ModelFile, metadata: ModelMetadata) -> XGBoostPredictor:
    xgboost = _import_xgboost()

    booster = xgboost.Booster()
    try:
        booster.load_model(str(model_file.path))
    except xgboost.core.XGBoostError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"XGBoost {xgboost.__version__} cannot load {model_file.path} as a {model_file.model_format} "
            f"model: {first_line}"
        ) from exc
    return XGBoostPredictor(booster, model_file, metadata)
