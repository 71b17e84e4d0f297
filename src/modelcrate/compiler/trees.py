"""``modelcrate optimize``: compile a tree model to ONNX and prove it answers like the original.

Verification replays the samples recorded in modelcrate.json and 10,000 random rows drawn uniformly within
each feature's range (the recorded samples and every split threshold of the compiled trees, widened by 10%),
with a quarter of the values set exactly on a threshold, where a rounding difference would show first.
Labels must match exactly; probabilities and regression values within ``ABSOLUTE_TOLERANCE +
RELATIVE_TOLERANCE * |original|`` (the compiled graph sums leaf values in float32). Records with missing
values (NaN) are checked on 2,000 of those rows with a fifth of their values made NaN: where the graph does
not answer them like the original (scikit-learn's trees), the server answers them with the original model.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelcrate.predictors import CLASSIFICATION, ModelMetadata, Predictor, find_model_file, load_predictor
from modelcrate.predictors.compiled import (
    COMPILED_FILE,
    MISSING_BY_GRAPH,
    MISSING_BY_ORIGINAL,
    MISSING_REFUSED,
    RUNTIME,
    CompiledPredictor,
    inference_session,
)
from modelcrate.predictors.trust import file_sha256, record_model_files

ABSOLUTE_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-5
RANDOM_ROWS = 10_000
MISSING_ROWS = 2_000
SEED = 0
ONNX_OPSET = 15  # the newest that onnxmltools' XGBoost converter accepts
ONNX_ML_OPSET = 3

# scikit-learn estimators compiled, and whether they round features to float32 before comparing them.
SKLEARN_TREE_MODELS = {
    "DecisionTreeClassifier": "float32",
    "DecisionTreeRegressor": "float32",
    "ExtraTreeClassifier": "float32",
    "ExtraTreeRegressor": "float32",
    "RandomForestClassifier": "float32",
    "RandomForestRegressor": "float32",
    "ExtraTreesClassifier": "float32",
    "ExtraTreesRegressor": "float32",
    "GradientBoostingClassifier": "float32",
    "GradientBoostingRegressor": "float32",
    "HistGradientBoostingClassifier": "float64",
    "HistGradientBoostingRegressor": "float64",
}


class NotCompilable(Exception):
    """The model cannot be compiled, or its compiled form does not answer like it; it serves as before."""


@dataclass(frozen=True)
class Verification:
    rows_checked: int
    max_abs_error: float
    label_mismatches: int


def _convert_sklearn(predictor: Predictor) -> tuple[bytes, str, str]:
    model = predictor.model
    kind = type(model).__name__
    if kind not in SKLEARN_TREE_MODELS:
        raise NotCompilable(
            f"{kind} is not a tree model optimize compiles ({', '.join(sorted(SKLEARN_TREE_MODELS))}); "
            "a Pipeline or any other estimator is served as it is"
        )
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    # ONNX Runtime's tree ensembles emit float32 only, so the graph takes float32 (thresholds rounded to
    # float32: the verification's rows on thresholds catch any split that moved).
    try:
        graph = to_onnx(
            model,
            initial_types=[("X", FloatTensorType([None, predictor.n_features]))],
            options={"zipmap": False} if predictor.task == CLASSIFICATION else None,
            target_opset={"": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
        )
    except Exception as exc:
        raise NotCompilable(f"skl2onnx cannot convert this {kind}: {type(exc).__name__}: {exc}") from exc
    return graph.SerializeToString(), f"skl2onnx {version('skl2onnx')}", SKLEARN_TREE_MODELS[kind]


def _convert_xgboost(predictor: Predictor) -> tuple[bytes, str, str]:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = predictor.booster.copy()
    booster.feature_names = None  # the converter reads features as f0, f1... and records carry no names
    try:
        graph = onnxmltools.convert_xgboost(
            booster, initial_types=[("X", FloatTensorType([None, predictor.n_features]))], target_opset=ONNX_OPSET
        )
    except Exception as exc:
        raise NotCompilable(
            f"onnxmltools cannot convert this XGBoost model ({predictor.objective}): {type(exc).__name__}: {exc}"
        ) from exc
    return graph.SerializeToString(), f"onnxmltools {version('onnxmltools')}", "float32"


def _split_thresholds(graph: bytes, n_features: int) -> list[np.ndarray]:
    """Every split threshold of the graph's tree ensembles, per feature."""
    import onnx
    from onnx import numpy_helper

    per_feature: list[list[float]] = [[] for _ in range(n_features)]
    for node in onnx.load_from_string(graph).graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attributes = {a.name: a for a in node.attribute}
        modes = list(attributes["nodes_modes"].strings)
        features = list(attributes["nodes_featureids"].ints)
        if "nodes_values_as_tensor" in attributes:
            values = numpy_helper.to_array(attributes["nodes_values_as_tensor"].t).tolist()
        else:
            values = list(attributes["nodes_values"].floats)
        for mode, feature, value in zip(modes, features, values, strict=True):
            if mode != b"LEAF":
                per_feature[feature].append(value)
    return [np.unique(np.asarray(values, dtype=np.float64)) for values in per_feature]


def verification_rows(graph: bytes, n_features: int, samples: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    thresholds = _split_thresholds(graph, n_features)
    columns = []
    for feature in range(n_features):
        seen = np.concatenate([thresholds[feature], samples[:, feature]]) if len(samples) else thresholds[feature]
        low, high = (float(seen.min()), float(seen.max())) if len(seen) else (0.0, 1.0)
        margin = 0.1 * (high - low) or 1.0
        column = rng.uniform(low - margin, high + margin, RANDOM_ROWS)
        if len(thresholds[feature]):
            on_threshold = rng.random(RANDOM_ROWS) < 0.25
            column[on_threshold] = rng.choice(thresholds[feature], int(on_threshold.sum()))
        columns.append(column)
    return np.vstack([samples.reshape(-1, n_features), np.column_stack(columns)])


def verify(original: Predictor, compiled: CompiledPredictor, rows: np.ndarray) -> Verification:
    expected, got = original.predict(rows), compiled.predict_with_graph(rows)
    if original.task == CLASSIFICATION:
        expected_values = np.asarray(expected.probabilities, dtype=np.float64)
        got_values = got.probabilities
        differ = np.asarray(expected.values) != np.asarray(got.values)
        # A tie between the two most probable labels may break the other way after float32 sums: allowed
        # (and counted) only when both models' probabilities are within tolerance anyway, checked below.
        top_two = np.sort(expected_values[differ], axis=1)[:, -2:]
        if np.any(top_two[:, 1] - top_two[:, 0] > 2 * ABSOLUTE_TOLERANCE):
            raise NotCompilable(f"the compiled model predicts another label on {int(differ.sum())} of {len(rows)} rows")
        label_mismatches = int(differ.sum())
    else:
        expected_values, got_values = np.asarray(expected.values, dtype=np.float64), got.values
        label_mismatches = 0
    error = np.abs(got_values - expected_values)
    allowed = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * np.abs(expected_values)
    if not np.all(error <= allowed):
        worst = np.unravel_index(np.argmax(error - allowed), error.shape)[0]
        raise NotCompilable(
            f"the compiled model differs from the original by {float(error.max()):.3g} (tolerance "
            f"{ABSOLUTE_TOLERANCE:g} + {RELATIVE_TOLERANCE:g} x |value|), e.g. on row {rows[worst].tolist()}"
        )
    return Verification(len(rows), float(error.max()), label_mismatches)


def missing_value_handling(original: Predictor, compiled: CompiledPredictor, rows: np.ndarray) -> str:
    """Whether the graph answers records with missing values (NaN) as the original does, on MISSING_ROWS of
    the verification rows with a fifth of their values made NaN."""
    if not original.accepts_nan:
        return MISSING_REFUSED
    with_missing = rows[-MISSING_ROWS:].copy()
    with_missing[np.random.default_rng(SEED).random(with_missing.shape) < 0.2] = np.nan
    try:
        verify(original, compiled, with_missing)
    except NotCompilable:
        return MISSING_BY_ORIGINAL  # e.g. scikit-learn's learnt NaN directions are not in skl2onnx's graph
    return MISSING_BY_GRAPH


def optimize(model_dir: Path) -> dict:
    """Compile the model in ``model_dir`` beside it and record the verified result in its modelcrate.json.

    Raises NotCompilable, leaving the directory untouched, when the model cannot be compiled faithfully.
    """
    model_dir = Path(model_dir)
    found = find_model_file(model_dir)
    metadata = ModelMetadata.read(model_dir)
    original = load_predictor(model_dir, prefer_compiled=False)
    if original.framework == "sklearn" and hasattr(original, "model") and original.task != "feature_transform":
        graph, converter, input_precision = _convert_sklearn(original)
    elif original.framework == "xgboost":
        graph, converter, input_precision = _convert_xgboost(original)
    else:
        raise NotCompilable(
            f"{found.path.name} is a {original.framework} {original.task} model; optimize compiles scikit-learn "
            "tree ensembles and XGBoost models"
        )
    if original.task == CLASSIFICATION and not original.has_probabilities:
        raise NotCompilable("this classifier emits labels only; optimize compiles classifiers with probabilities")

    record = {
        "file": COMPILED_FILE,
        "runtime": RUNTIME,
        "runtime_version": version(RUNTIME),
        "converter": converter,
        "source_file": found.path.name,
        "source_sha256": file_sha256(found.path),
        "framework": original.framework,
        "task": original.task,
        "labels": original.labels,
        "n_features": original.n_features,
        "feature_names": original.feature_names,
        "missing_values": MISSING_REFUSED,  # until checked below
        "input_precision": input_precision,
        # Classifiers: the probabilities output; regressors: the only one.
        "output_index": 1 if original.task == CLASSIFICATION else 0,
    }
    compiled = CompiledPredictor(inference_session(graph), record, model_dir)
    samples = np.asarray([s["input"] for s in metadata.samples], dtype=np.float64)
    rows = verification_rows(graph, original.n_features, samples)
    checked = verify(original, compiled, rows)
    record["missing_values"] = missing_value_handling(original, compiled, rows)
    record.update(
        verified=True,
        absolute_tolerance=ABSOLUTE_TOLERANCE,
        relative_tolerance=RELATIVE_TOLERANCE,
        rows_checked=checked.rows_checked,
        max_abs_error=checked.max_abs_error,
        label_mismatches=checked.label_mismatches,
    )
    (model_dir / COMPILED_FILE).write_bytes(graph)
    metadata.compiled = record
    record_model_files(model_dir, found, metadata)
    metadata.write(model_dir)
    return record
