"""What a freshly written model directory records about itself in ``modelcrate.json``.

Shared by the Abalone sample models (control plane) and the in-image training runtime, so it stays light:
numpy and the standard library only. Metrics and samples are computed from the model as the server loads
it, so the recorded outputs are exactly what serving answers.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from modelcrate.predictors.base import REGRESSION, Prediction

SAMPLE_ROWS = 5
# Probabilities are clipped before the logarithm so a confident miss costs a large, finite loss.
_SMALLEST_PROBABILITY = 1e-15


def framework_version(framework: str) -> str:
    """The installed version of a framework, from the module itself (images install XGBoost as the distribution
    ``xgboost-cpu``, so the distribution name is no guide), imported as its predictor imports it: serve checks the
    version before loading, and XGBoost's own import brings pandas along when present (+87 MB per worker)."""
    if framework == "xgboost":
        from modelcrate.predictors.xgboost import import_xgboost

        return import_xgboost().__version__
    return importlib.import_module(framework).__version__


def prediction_metrics(task: str, prediction: Prediction, truth: np.ndarray) -> dict[str, float]:
    """Regression: rmse, mae and r2 (when the truth varies); classification: accuracy and log_loss (when the
    model gives probabilities). ``truth`` holds target values, or for classifiers labels from ``prediction.labels``."""
    if task == REGRESSION:
        truth = np.asarray(truth, dtype=float)
        err = prediction.values.astype(float) - truth
        metrics = {
            "rmse": round(float(np.sqrt((err**2).mean())), 6),
            "mae": round(float(np.abs(err).mean()), 6),
        }
        total = ((truth - truth.mean()) ** 2).sum()
        if total > 0:
            metrics["r2"] = round(float(1 - (err**2).sum() / total), 6)
        return metrics
    index_of = {label: i for i, label in enumerate(prediction.labels)}
    truth_index = np.array([index_of[label] for label in truth])
    truth_labels = np.asarray(prediction.labels, dtype=object)[truth_index]
    metrics = {"accuracy": round(float((prediction.values == truth_labels).mean()), 6)}
    if prediction.probabilities is not None:
        proba = prediction.probabilities[np.arange(len(truth_index)), truth_index]
        metrics["log_loss"] = round(float(-np.log(np.clip(proba, _SMALLEST_PROBABILITY, 1.0)).mean()), 6)
    return metrics


def _expected(prediction: Prediction, i: int) -> dict[str, Any]:
    if prediction.probabilities is None:
        return {"prediction": prediction.values[i].item()}
    return {
        "predicted_label": prediction.values[i].item()
        if hasattr(prediction.values[i], "item")
        else prediction.values[i],
        "probabilities": prediction.probabilities[i].tolist(),
    }


def recorded_samples(records: np.ndarray, prediction: Prediction, count: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first ``count`` records with the outputs the model gave them, for parity checks of built images."""
    return [
        {"input": records[i].tolist(), "expected": _expected(prediction, i)} for i in range(min(count, len(records)))
    ]
