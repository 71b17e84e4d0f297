"""TensorFlow / Keras models: ``.keras``, ``.h5`` and SavedModel directories."""

from __future__ import annotations

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


class TensorFlowPredictor(Predictor):
    framework = "tensorflow"

    def __init__(
        self,
        call,
        n_features: int | None,
        n_outputs: int,
        activation: str | None,
        model_file: ModelFile,
        metadata: ModelMetadata,
    ):
        self._call = call
        self.model_format = model_file.model_format
        self.n_features = n_features
        self.feature_names = metadata.feature_names
        is_classifier = metadata.task == CLASSIFICATION or (
            metadata.task is None and activation in ("sigmoid", "softmax")
        )
        if is_classifier:
            self.task = CLASSIFICATION
            n_classes = 2 if n_outputs == 1 else n_outputs
            self.labels = metadata.labels or list(range(n_classes))
            if len(self.labels) != n_classes:
                raise ModelLoadError(
                    f"{model_file.path} has {n_classes} classes but modelcrate.json lists {len(self.labels)} labels"
                )
        else:
            self.task = REGRESSION

    def predict(self, records: np.ndarray) -> Prediction:
        out = self._call(records.astype(np.float32, copy=False))
        if self.task == REGRESSION:
            return Prediction(values=out[:, 0] if out.shape[1] == 1 else out)
        if out.shape[1] == 1:  # sigmoid: P(positive class)
            out = np.column_stack([1.0 - out[:, 0], out[:, 0]])
        return labelled(out, self.labels)


def _keras_predictor(model_file: ModelFile, metadata: ModelMetadata, tf) -> TensorFlowPredictor:
    import keras

    try:
        model = keras.models.load_model(model_file.path, compile=False)
    except Exception as exc:
        raise ModelLoadError(
            f"Keras {keras.__version__} cannot load {model_file.path}: {type(exc).__name__}: {exc}"
        ) from exc
    n_features = model.inputs[0].shape[-1]
    n_outputs = model.outputs[0].shape[-1]
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", None)
    compiled = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, n_features], tf.float32)],
    )
    return TensorFlowPredictor(lambda x: compiled(x).numpy(), n_features, n_outputs, activation, model_file, metadata)


def _savedmodel_predictor(model_file: ModelFile, metadata: ModelMetadata, tf) -> TensorFlowPredictor:
    try:
        loaded = tf.saved_model.load(str(model_file.path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load SavedModel {model_file.path}: {type(exc).__name__}: {exc}") from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelLoadError(
            f"SavedModel {model_file.path} has no 'serving_default' signature "
            f"(it has: {', '.join(loaded.signatures) or 'none'}); export it with one"
        )
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ModelLoadError(f"SavedModel {model_file.path} takes {len(inputs)} inputs; modelcrate serves one")
    ((input_name, spec),) = inputs.items()
    output_name = sorted(signature.structured_outputs)[0]
    output_spec = signature.structured_outputs[output_name]
    n_outputs = output_spec.shape[-1] or 1

    def call(x):
        return signature(**{input_name: tf.constant(x, dtype=spec.dtype)})[output_name].numpy()

    return TensorFlowPredictor(call, spec.shape[-1], n_outputs, None, model_file, metadata)


def load(model_file: ModelFile, metadata: ModelMetadata) -> TensorFlowPredictor:
    import tensorflow as tf

    if model_file.model_format == "savedmodel":
        return _savedmodel_predictor(model_file, metadata, tf)
    return _keras_predictor(model_file, metadata, tf)
