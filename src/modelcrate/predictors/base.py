"""The common predictor interface. Knows nothing about HTTP."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcrate.errors import ModelLoadError

METADATA_FILE = "modelcrate.json"
REGRESSION = "regression"
CLASSIFICATION = "classification"
# Serial inference pipelines: a feature-engineering container answers with transformed features, a
# post-processing container turns a classifier's class indexes back into class names.
FEATURE_TRANSFORM = "feature_transform"
LABEL_DECODING = "label_decoding"


class InvalidInput(ValueError):
    """The records handed to a predictor cannot be scored by this model (a client error)."""


@dataclass(frozen=True)
class Prediction:
    """What one predict call produced, for every record in order.

    ``values`` holds regression outputs, for classifiers and label decoders the predicted labels, and for
    feature transformers the transformed records (n_records, n_outputs).
    ``probabilities`` is (n_records, n_labels) in ``labels`` order, or None when the model has none.
    """

    values: np.ndarray
    probabilities: np.ndarray | None = None
    labels: list | None = None


@dataclass
class ModelMetadata:
    """The small file written beside a sample model (and optional for any model)."""

    framework: str | None = None
    framework_version: str | None = None
    model_format: str | None = None
    task: str | None = None
    feature_names: list[str] | None = None
    labels: list | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # Written by `modelcrate optimize` once the compiled model matched the original (see predictors/compiled.py).
    compiled: dict[str, Any] | None = None
    # The sha256 of every file a predictor reads, by path relative to the model directory (see predictors/trust.py).
    sha256_of_files: dict[str, str] | None = None

    @classmethod
    def read(cls, model_dir: Path) -> ModelMetadata:
        path = model_dir / METADATA_FILE
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"

    def write(self, model_dir: Path) -> Path:
        path = model_dir / METADATA_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path


class Predictor(ABC):
    """A loaded model: predicts a 2-D float array of records."""

    framework: str
    model_format: str
    task: str = REGRESSION
    feature_names: list[str] | None = None
    n_features: int | None = None
    labels: list | None = None
    accepts_nan: bool = False
    accepts_inf: bool = False

    @abstractmethod
    def predict(self, records: np.ndarray) -> Prediction:
        """Score ``records`` (n_records, n_features)."""

    def read_remaining_files(self) -> None:
        """Read now whatever ``predict`` would read from the model directory later: a worker calls this before it
        drops root, after which a root-only model directory is out of reach."""
        return  # most predictors read everything when loaded

    @property
    def has_probabilities(self) -> bool:
        return self.task == CLASSIFICATION and self._emits_probabilities

    _emits_probabilities: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "format": self.model_format,
            "task": self.task,
            "n_features": self.n_features,
            "labels": self.labels,
        }


def labelled(probabilities: np.ndarray, labels: list) -> Prediction:
    """A classifier's prediction: the label with the highest probability for each record."""
    label_array = np.asarray(labels, dtype=object if any(isinstance(x, str) for x in labels) else None)
    return Prediction(values=label_array[probabilities.argmax(axis=1)], probabilities=probabilities, labels=labels)
