"""Tree models compiled to ONNX by ``modelcrate optimize``, served with ONNX Runtime.

ONNX Runtime was measured against Treelite + TL2cgen on the Abalone sample models (2 cores, 1-row predict):
RandomForest regressor 6.6 ms original, 15 us ONNX Runtime, 65 us TL2cgen; XGBoost regressor 372 us, 31 us,
37 us. ONNX Runtime is also a plain wheel, while TL2cgen needs a C compiler at optimize time (minutes for a
RandomForest) and a shared library built for each image architecture.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from modelcrate.predictors.base import CLASSIFICATION, ModelMetadata, Prediction, Predictor, labelled

COMPILED_FILE = "model.onnx"
RUNTIME = "onnxruntime"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inference_session(model: bytes):
    """One thread per session: the server scales with worker processes, and a 1-row tree predict is too
    short to gain from a thread pool."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class CompiledPredictor(Predictor):
    """Same answers as the original model (checked by ``modelcrate optimize``), from its ONNX graph."""

    model_format = "onnx"

    def __init__(self, session, compiled: dict):
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._output_name = session.get_outputs()[compiled["output_index"]].name
        # scikit-learn's trees (not HistGradientBoosting) and XGBoost compare float32 features: the graph
        # takes float64 (exact thresholds) or float32, and the records are rounded the way the original rounds.
        self._rounds_to_float32 = compiled["input_precision"] == "float32"
        self._graph_dtype = np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32
        self.framework = compiled["framework"]
        self.task = compiled["task"]
        self.labels = compiled["labels"]
        self.n_features = compiled["n_features"]
        self.feature_names = compiled["feature_names"]
        self.accepts_nan = compiled["accepts_nan"]

    def predict(self, records: np.ndarray) -> Prediction:
        if self._rounds_to_float32:
            records = records.astype(np.float32)
        graph_input = np.ascontiguousarray(records, dtype=self._graph_dtype)
        (output,) = self._session.run([self._output_name], {self._input_name: graph_input})
        output = np.asarray(output, dtype=np.float64)
        if self.task == CLASSIFICATION:
            return labelled(output, self.labels)
        return Prediction(values=output.reshape(len(records)))


def load(model_dir: Path, metadata: ModelMetadata) -> CompiledPredictor:
    compiled = metadata.compiled
    return CompiledPredictor(inference_session((model_dir / compiled["file"]).read_bytes()), compiled)
