"""Load a model directory into a :class:`Predictor`; each framework is imported only when needed."""

from __future__ import annotations

import importlib
import importlib.util
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
    find_model_file,
)

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


def load_predictor(model_dir: str | Path, model_format: str | None = None, model_file: str | None = None) -> Predictor:
    """Find the model file in ``model_dir`` and load it with its framework."""
    model_dir = Path(model_dir)
    found = find_model_file(model_dir, model_format, model_file)
    metadata = ModelMetadata.read(model_dir)
    if importlib.util.find_spec(found.framework) is None:
        raise ModelLoadError(
            f"{found.path} is a {found.model_format} model and needs {found.framework}, which is not "
            f"installed here: pip install 'modelcrate[{found.framework}]'"
        )
    module = importlib.import_module(f"modelcrate.predictors.{found.framework}")
    return module.load(found, metadata)
