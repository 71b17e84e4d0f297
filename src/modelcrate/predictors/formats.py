"""Which model file in a model directory to load, and with which framework."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelcrate.predictors.base import METADATA_FILE, ModelLoadError

# Format name -> framework. Format names are unique across frameworks.
FRAMEWORK_OF_FORMAT = {
    "pkl": "sklearn",
    "joblib": "sklearn",
    "json": "xgboost",
    "ubj": "xgboost",
    "model": "xgboost",
    "keras": "tensorflow",
    "h5": "tensorflow",
    "savedmodel": "tensorflow",
}
FORMATS_OF_FRAMEWORK = {
    fw: [fmt for fmt, owner in FRAMEWORK_OF_FORMAT.items() if owner == fw]
    for fw in ("sklearn", "xgboost", "tensorflow")
}

_SUFFIX_FORMAT = {
    ".pkl": "pkl",
    ".pickle": "pkl",
    ".joblib": "joblib",
    ".json": "json",
    ".ubj": "ubj",
    ".model": "model",
    ".bst": "model",
    ".keras": "keras",
    ".h5": "h5",
    ".hdf5": "h5",
}
# SageMaker's built-in XGBoost algorithm writes its model under this name, without a suffix.
_NAME_FORMAT = {"xgboost-model": "model"}
_IGNORED_DIRS = {"code", "__pycache__"}
# How a pickle begins: PROTO (protocol 2 and later), else MARK, GLOBAL, EMPTY_LIST or EMPTY_DICT (protocols 0-1);
# how a compressed joblib.dump begins: zlib, gzip, bz2, xz, lzma, lz4, or old joblib's own "ZF".
_PICKLE_STARTS = (b"\x80", b"(", b"c", b"]", b"}")
_COMPRESSED_JOBLIB_STARTS = (b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18", b"ZF")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    model_format: str

    @property
    def framework(self) -> str:
        return FRAMEWORK_OF_FORMAT[self.model_format]


def format_of(path: Path) -> str | None:
    """The format a single path is in, or None when it is not a model file modelcrate knows."""
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    if path.name == METADATA_FILE:
        return None
    return _NAME_FORMAT.get(path.name) or _SUFFIX_FORMAT.get(path.suffix.lower())


def _candidates(model_dir: Path) -> list[ModelFile]:
    if format_of(model_dir) == "savedmodel":
        return [ModelFile(model_dir, "savedmodel")]
    found = []
    for entry in sorted(model_dir.iterdir()):
        if entry.name.startswith(".") or entry.name in _IGNORED_DIRS:
            continue
        fmt = format_of(entry)
        if fmt:
            found.append(ModelFile(entry, fmt))
        elif entry.is_dir():
            # TensorFlow Serving layout: model_dir/<version>/saved_model.pb; the newest version wins.
            versions = [d for d in entry.iterdir() if d.name.isdigit() and format_of(d) == "savedmodel"]
            if versions:
                found.append(ModelFile(max(versions, key=lambda d: int(d.name)), "savedmodel"))
    return found


def find_model_file(model_dir: Path, model_format: str | None = None, model_file: str | None = None) -> ModelFile:
    """Pick the one model file in ``model_dir``; ``model_format`` / ``model_file`` override detection."""
    if model_format is not None and model_format not in FRAMEWORK_OF_FORMAT:
        raise ModelLoadError(f"unknown model format {model_format!r}; choose one of {', '.join(FRAMEWORK_OF_FORMAT)}")
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist (or is not a directory)")
    if model_file:
        path = Path(model_file)
        path = path if path.is_absolute() else model_dir / path
        if not path.exists():
            raise ModelLoadError(f"model file {path} does not exist")
        fmt = model_format or format_of(path)
        if fmt is None:
            raise ModelLoadError(
                f"cannot tell the format of {path} from its name; give the format too "
                f"(one of {', '.join(FRAMEWORK_OF_FORMAT)})"
            )
        return ModelFile(path, fmt)

    found = _candidates(model_dir)
    if model_format:
        found = [c for c in found if c.model_format == model_format]
    if not found:
        present = sorted(p.name for p in model_dir.iterdir()) or ["(empty directory)"]
        wanted = f"{model_format} model" if model_format else "model file"
        raise ModelLoadError(
            f"no {wanted} found in {model_dir}; looked for *.pkl, *.joblib, *.json, *.ubj, *.model, "
            f"xgboost-model, *.keras, *.h5 and SavedModel directories; found: {', '.join(present)}"
        )
    if len(found) > 1:
        names = ", ".join(str(c.path.relative_to(model_dir)) or "." for c in found)
        raise ModelLoadError(
            f"several candidate model files in {model_dir}: {names}; name the one to serve "
            "with --model-file or MODELCRATE_MODEL_FILE (or the format with MODELCRATE_MODEL_FORMAT)"
        )
    return found[0]


def check_content(found: ModelFile) -> None:
    """Refuse a file whose first bytes contradict its name (a pickle named .json, a CSV named .joblib), before
    anything warns about or runs it: the framework's own error would send the user looking elsewhere."""
    if found.path.is_dir() or found.model_format not in ("pkl", "joblib", "json", "ubj"):
        return
    with found.path.open("rb") as file:
        head = file.read(8)
    pickled = head.startswith(_PICKLE_STARTS + _COMPRESSED_JOBLIB_STARTS)
    if found.model_format in ("pkl", "joblib") and not pickled:
        raise ModelLoadError(
            f"{found.path} is not a joblib or pickle file (it begins {head!r}): serve the file that joblib.dump or "
            "pickle.dump wrote"
        )
    if found.model_format in ("json", "ubj") and head.startswith(b"\x80"):
        raise ModelLoadError(
            f"{found.path} is a joblib or pickle file, not an XGBoost {found.model_format} model: name it .joblib "
            f"(a scikit-learn model), or save the booster with booster.save_model('model.{found.model_format}')"
        )
