"""scikit-learn estimators (and anything pickled with a scikit-learn style predict API)."""

from __future__ import annotations

import warnings

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


def _allows_nan(model) -> bool:
    if type(model).__module__.startswith("xgboost"):
        return True  # XGBoost 2.1's sklearn wrappers do not declare it in scikit-learn 1.6+ tags
    try:
        return bool(model.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:  # not a scikit-learn estimator
        return False


class SklearnPredictor(Predictor):
    framework = "sklearn"

    def __init__(self, model, model_file: ModelFile, metadata: ModelMetadata):
        if not hasattr(model, "predict"):
            raise ModelLoadError(f"{model_file.path} holds a {type(model).__name__}, which has no predict()")
        self.model = model
        self.model_format = model_file.model_format
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else metadata.feature_names
        self.n_features = getattr(model, "n_features_in_", None) or (
            len(self.feature_names) if self.feature_names else None
        )
        self.accepts_nan = _allows_nan(model)
        classes = getattr(model, "classes_", None)
        if classes is not None or getattr(model, "_estimator_type", None) == "classifier":
            self.task = CLASSIFICATION
            # classes_ orders predict_proba's columns, so it wins over any labels recorded beside the model.
            self.labels = np.asarray(classes).tolist() if classes is not None else metadata.labels
            self._emits_probabilities = hasattr(model, "predict_proba") and self.labels is not None
        else:
            self.task = metadata.task or REGRESSION
        # Models fitted on DataFrames warn on every plain-array call; records arrive without headers.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self._frame_columns = self._columns_if_frame_needed()

    def _columns_if_frame_needed(self) -> list[str] | None:
        """Column names when the model selects columns by name (a ColumnTransformer): it needs a DataFrame."""
        if self.feature_names is None or self.n_features is None:
            return None
        probe = np.zeros((1, self.n_features))
        try:
            self.model.predict(probe)
            return None
        except Exception:
            try:
                import pandas as pd

                self.model.predict(pd.DataFrame(probe, columns=self.feature_names))
            except Exception:
                return None  # zeros are no valid record for this model; plain arrays it is
            return self.feature_names

    def _as_model_input(self, records: np.ndarray):
        if self._frame_columns is None:
            return records
        import pandas as pd

        return pd.DataFrame(records, columns=self._frame_columns)

    def predict(self, records: np.ndarray) -> Prediction:
        data = self._as_model_input(records)
        if self.task == CLASSIFICATION and self._emits_probabilities:
            return labelled(np.asarray(self.model.predict_proba(data)), self.labels)
        return Prediction(values=np.asarray(self.model.predict(data)), labels=self.labels)


def load(model_file: ModelFile, metadata: ModelMetadata) -> SklearnPredictor:
    import joblib  # reads plain pickles as well as joblib dumps

    try:
        model = joblib.load(model_file.path)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot unpickle {model_file.path}: {type(exc).__name__}: {exc}. Was it saved with a "
            "different scikit-learn version? Pin the version it was saved with in requirements.txt"
        ) from exc
    return SklearnPredictor(model, model_file, metadata)
