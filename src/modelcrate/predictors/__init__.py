"""Load a model directory into a :class:`Predictor`; each framework is imported only when needed."""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path

from modelcrate.predictors.base import (
    CLASSIFICATION,
    FEATURE_TRANSFORM,
    LABEL_DECODING,
    METADATA_FILE,
    REGRESSION,
    InvalidInput,
    ModelLoadError,
    ModelMetadata,
    Prediction,
    Predictor,
)
from modelcrate.predictors.formats import (
    FORMATS_OF_FRAMEWORK,
    FRAMEWORK_OF_FORMAT,
    ModelFile,
    check_content,
    find_model_file,
)
from modelcrate.predictors.trust import check_before_loading, file_sha256

__all__ = [
    "CLASSIFICATION",
    "FEATURE_TRANSFORM",
    "FORMATS_OF_FRAMEWORK",
    "FRAMEWORK_OF_FORMAT",
    "LABEL_DECODING",
    "METADATA_FILE",
    "REGRESSION",
    "InvalidInput",
    "ModelFile",
    "ModelLoadError",
    "ModelMetadata",
    "Prediction",
    "Predictor",
    "find_model_file",
    "load_predictor",
]


def load_predictor(
    model_dir: str | Path,
    model_format: str | None = None,
    model_file: str | None = None,
    prefer_compiled: bool = True,
    accept_mismatch: bool = False,
) -> Predictor:
    """Find the model file in ``model_dir`` and load it with its framework, or its verified compiled form; first
    check the files and framework version ``modelcrate.json`` records (``accept_mismatch``: warn, do not refuse)."""
    model_dir = Path(model_dir)
    found = find_model_file(model_dir, model_format, model_file)
    check_content(found)
    metadata = ModelMetadata.read(model_dir)
    check_before_loading(model_dir, found, metadata, accept_mismatch)
    if prefer_compiled and _compiled_form_usable(model_dir, found, metadata):
        from modelcrate.predictors import compiled

        return compiled.load(model_dir, metadata, accept_mismatch)
    if importlib.util.find_spec(found.framework) is None:
        raise ModelLoadError(
            f"{found.path} is a {found.model_format} model and needs {found.framework}, which is not "
            f"installed here: pip install 'modelcrate[{found.framework}]'"
        )
    module = importlib.import_module(f"modelcrate.predictors.{found.framework}")
    return module.load(found, metadata)


_warned_runtime_missing = False


def _compiled_form_usable(model_dir: Path, found: ModelFile, metadata: ModelMetadata) -> bool:
    """True when ``modelcrate optimize`` verified a compiled form of exactly this model file and its runtime
    is installed; a missing runtime is warned about once per process, and the original model serves."""
    global _warned_runtime_missing
    record = metadata.compiled
    if not record or not record.get("verified") or record.get("source_file") != found.path.name:
        return False
    if not (model_dir / record["file"]).is_file() or file_sha256(found.path) != record["source_sha256"]:
        warnings.warn(
            f"{model_dir / record['file']} is missing or was compiled from another version of {found.path.name}; "
            f"serving the original model. Run modelcrate optimize {model_dir} again",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if importlib.util.find_spec(record["runtime"]) is None:
        if not _warned_runtime_missing:
            _warned_runtime_missing = True
            warnings.warn(
                f"{model_dir / record['file']} needs {record['runtime']}, which is not installed here; serving "
                "the original model (slower). Install it with: pip install 'modelcrate[compiled]'",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    return True
