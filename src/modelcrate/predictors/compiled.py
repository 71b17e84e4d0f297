"""Tree models compiled to ONNX by ``modelcrate optimize``, served with ONNX Runtime.

ONNX Runtime was measured against Treelite + TL2cgen on the Abalone sample models (2 cores, 1-row predict):
RandomForest regressor 6.6 ms original, 15 us ONNX Runtime, 65 us TL2cgen; XGBoost regressor 372 us, 31 us,
37 us. ONNX Runtime is also a plain wheel, while TL2cgen needs a C compiler at optimize time (minutes for a
RandomForest) and a shared library built for each image architecture.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from modelcrate.predictors.base import CLASSIFICATION, ModelMetadata, Prediction, Predictor, labelled

COMPILED_FILE = "model.onnx"
RUNTIME = "onnxruntime"
# Records with a missing value (NaN) are answered by the compiled graph (it routes them as the original
# does), by the original model (it does not), or refused (the original refuses them too).
MISSING_BY_GRAPH, MISSING_BY_ORIGINAL, MISSING_REFUSED = "compiled", "original", "refused"
MODEL_COMPILED, MODEL_ORIGINAL = "compiled", "original"
LARGE_BATCH_ROWS = 1_000

log = logging.getLogger("modelcrate.serving")


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

    def __init__(self, session, compiled: dict, model_dir: Path, accept_mismatch: bool = False):
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
        # How records with a missing value (NaN) are answered; `modelcrate optimize` checked which is faithful.
        self._missing_values = compiled["missing_values"]
        self.accepts_nan = self._missing_values != MISSING_REFUSED
        self._model_dir = model_dir
        self._accept_mismatch = accept_mismatch  # for the original model, loaded later
        self._original: Predictor | None = None
        # Which model answers large batches: decided by timing both on the first one (see _predict_large).
        self.large_batch_model: str | None = None

    def predict(self, records: np.ndarray) -> Prediction:
        if self._missing_values == MISSING_BY_ORIGINAL and np.isnan(records).any():
            return self._original_model().predict(records)
        if len(records) >= LARGE_BATCH_ROWS:
            return self._predict_large(records)
        return self.predict_with_graph(records)

    def _predict_large(self, records: np.ndarray) -> Prediction:
        """Which model predicts a large batch faster depends on the model and on the data: a scikit-learn forest
        walks one tree at a time over the whole batch, keeping it in cache, where the graph walks every tree for
        each row in turn (measured on Abalone: 10,000 rows 46 ms against 90 ms). So the first large batch is
        timed on both, and the faster one answers the rest (one extra predict per worker, once)."""
        if self.large_batch_model == MODEL_ORIGINAL:
            return self._original_model().predict(records)
        if self.large_batch_model == MODEL_COMPILED:
            return self.predict_with_graph(records)
        original = self._original_model()
        start = time.perf_counter()
        self.predict_with_graph(records)
        graph_seconds = time.perf_counter() - start
        start = time.perf_counter()
        answer = original.predict(records)
        original_seconds = time.perf_counter() - start
        self.large_batch_model = MODEL_ORIGINAL if graph_seconds > original_seconds else MODEL_COMPILED
        log.info(
            f"batches of {LARGE_BATCH_ROWS:,} rows or more: the {self.large_batch_model} model answers them "
            f"(on {len(records):,} rows the compiled one took {graph_seconds * 1000:.1f} ms, the original "
            f"{original_seconds * 1000:.1f} ms)"
        )
        return answer

    def predict_with_graph(self, records: np.ndarray) -> Prediction:
        """The compiled graph's answer, whatever the batch (what `modelcrate optimize` verifies)."""
        if self._rounds_to_float32:
            records = records.astype(np.float32)
        graph_input = np.ascontiguousarray(records, dtype=self._graph_dtype)
        (output,) = self._session.run([self._output_name], {self._input_name: graph_input})
        output = np.asarray(output, dtype=np.float64)
        if self.task == CLASSIFICATION:
            return labelled(output, self.labels)
        return Prediction(values=output.reshape(len(records)))

    def read_remaining_files(self) -> None:
        self._original_model()

    def _original_model(self) -> Predictor:
        """Loaded on the first large batch or record with a missing value (most traffic never needs it), or before
        a worker drops root (read_remaining_files)."""
        if self._original is None:
            from modelcrate.predictors import load_predictor

            self._original = load_predictor(
                self._model_dir, prefer_compiled=False, accept_mismatch=self._accept_mismatch
            )
        return self._original


def load(model_dir: Path, metadata: ModelMetadata, accept_mismatch: bool = False) -> CompiledPredictor:
    compiled = metadata.compiled
    session = inference_session((model_dir / compiled["file"]).read_bytes())
    return CompiledPredictor(session, compiled, model_dir, accept_mismatch)
