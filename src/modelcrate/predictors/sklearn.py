"""scikit-learn objects: estimators (predict), feature transformers (transform) and label encoders.

Estimators are what model containers serve. The containers around them in a serial inference pipeline
serve the other two: a fitted transformer (a Pipeline, ColumnTransformer, StandardScaler...) answers
with the transformed features, and a fitted LabelEncoder turns the class indexes a classifier trained
on encoded labels emits back into the original class names.
"""

from __future__ import annotations

import warnings

import numpy as np

from modelcrate.predictors.base import (
    CLASSIFICATION,
    FEATURE_TRANSFORM,
    LABEL_DECODING,
    REGRESSION,
    InvalidInput,
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


class _RecordsModel(Predictor):
    """What estimators and transformers share: one method that takes the records, feature names, and
    DataFrame input for models that select columns by name."""

    framework = "sklearn"
    method = "predict"

    def __init__(self, model, model_file: ModelFile, metadata: ModelMetadata):
        self.model = model
        self.model_format = model_file.model_format
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else metadata.feature_names
        self.n_features = getattr(model, "n_features_in_", None) or (
            len(self.feature_names) if self.feature_names else None
        )
        self.accepts_nan = _allows_nan(model)
        # Models fitted on DataFrames warn on every plain-array call; records arrive without headers.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self._frame_columns = self._columns_if_frame_needed()

    def _columns_if_frame_needed(self) -> list[str] | None:
        """Column names when the model selects columns by name (a ColumnTransformer): it needs a DataFrame."""
        if self.feature_names is None or self.n_features is None:
            return None
        call = getattr(self.model, self.method)
        probe = np.zeros((1, self.n_features))
        try:
            call(probe)
            return None
        except Exception:
            try:
                import pandas as pd

                call(pd.DataFrame(probe, columns=self.feature_names))
            except Exception:
                return None  # zeros are no valid record for this model; plain arrays it is
            return self.feature_names

    def _as_model_input(self, records: np.ndarray):
        if self._frame_columns is None:
            return records
        import pandas as pd

        return pd.DataFrame(records, columns=self._frame_columns)


class SklearnPredictor(_RecordsModel):
    """An estimator: a regressor or a classifier."""

    def __init__(self, model, model_file: ModelFile, metadata: ModelMetadata):
        super().__init__(model, model_file, metadata)
        classes = getattr(model, "classes_", None)
        if classes is not None or getattr(model, "_estimator_type", None) == "classifier":
            self.task = CLASSIFICATION
            # classes_ orders predict_proba's columns, so it wins over any labels recorded beside the model.
            self.labels = np.asarray(classes).tolist() if classes is not None else metadata.labels
            self._emits_probabilities = hasattr(model, "predict_proba") and self.labels is not None
        else:
            self.task = metadata.task or REGRESSION

    def predict(self, records: np.ndarray) -> Prediction:
        data = self._as_model_input(records)
        if self.task == CLASSIFICATION and self._emits_probabilities:
            return labelled(np.asarray(self.model.predict_proba(data)), self.labels)
        return Prediction(values=np.asarray(self.model.predict(data)), labels=self.labels)


class SklearnTransformer(_RecordsModel):
    """A feature-engineering step: its prediction is the transformed records, for the next container."""

    task = FEATURE_TRANSFORM
    method = "transform"

    def predict(self, records: np.ndarray) -> Prediction:
        features = self.model.transform(self._as_model_input(records))
        if hasattr(features, "toarray"):  # sparse output (a OneHotEncoder): the next container reads dense rows
            features = features.toarray()
        values = np.asarray(features)
        if values.dtype.kind not in "iuf":
            try:
                values = values.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{type(self.model).__name__}.transform() returned {values.dtype} values that are not numbers; "
                    "the next container of the pipeline reads numeric records only"
                ) from None
        return Prediction(values=values)


class SklearnLabelDecoder(Predictor):
    """A fitted LabelEncoder (or any object with ``classes_`` and ``inverse_transform``): each record is one
    class index, as a classifier trained on encoded labels emits it (XGBoost writes ``2.0``); its prediction
    is the class name."""

    framework = "sklearn"
    task = LABEL_DECODING
    n_features = 1

    def __init__(self, model, model_file: ModelFile):
        self.model = model
        self.model_format = model_file.model_format
        self.labels = np.asarray(model.classes_).tolist()
        try:
            decoded = np.asarray(model.inverse_transform(np.arange(len(self.labels)))).tolist()
        except Exception:
            decoded = None
        if not self.labels or decoded != self.labels:
            raise ModelLoadError(
                f"{model_file.path} holds a {type(model).__name__} with classes_ and inverse_transform(), but "
                "inverse_transform() does not turn class indexes into classes_ as a LabelEncoder's does; "
                "serve a fitted LabelEncoder, or load and apply it yourself with model_fn and predict_fn in "
                "code/inference.py"
            )

    def predict(self, records: np.ndarray) -> Prediction:
        indexes = records[:, 0]
        valid = np.isfinite(indexes) & (indexes == np.floor(indexes)) & (indexes >= 0) & (indexes < len(self.labels))
        if not valid.all():
            bad = int(np.argmin(valid))
            raise InvalidInput(
                f"record {bad + 1}: {float(indexes[bad])!r} is not a class index; this label encoder knows "
                f"{len(self.labels)} classes, indexes 0 to {len(self.labels) - 1}"
            )
        return Prediction(values=np.asarray(self.model.inverse_transform(indexes.astype(np.int64))), labels=self.labels)


def load(model_file: ModelFile, metadata: ModelMetadata) -> Predictor:
    import joblib  # reads plain pickles as well as joblib dumps

    try:
        model = joblib.load(model_file.path)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot unpickle {model_file.path}: {type(exc).__name__}: {exc}. Was it saved with a "
            "different scikit-learn version? Pin the version it was saved with in requirements.txt"
        ) from exc
    if hasattr(model, "predict"):
        return SklearnPredictor(model, model_file, metadata)
    if hasattr(model, "classes_") and hasattr(model, "inverse_transform"):
        return SklearnLabelDecoder(model, model_file)
    if hasattr(model, "transform"):
        return SklearnTransformer(model, model_file, metadata)
    raise ModelLoadError(
        f"{model_file.path} holds a {type(model).__name__}, which has no predict() (a model), no transform() "
        "(a feature transformer) and no classes_ with inverse_transform() (a label encoder); save one of these"
    )
