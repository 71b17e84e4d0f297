"""Is this the model that was recorded? The sha256 of every model file and the framework version it was saved
with, recorded in ``modelcrate.json`` when modelcrate writes or registers a model, are checked before any file is
loaded: unpickling runs whatever code the file holds, so the check must come first.

A recorded digest proves the file is the one recorded, not that it is safe; see the README's "Trust model".
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from pathlib import Path

from modelcrate.predictors.base import METADATA_FILE, ModelLoadError, ModelMetadata
from modelcrate.predictors.formats import ModelFile

ACCEPT_MISMATCH_VARIABLE = "MODELCRATE_ACCEPT_MODEL_MISMATCH"
PICKLE_FORMATS = ("pkl", "joblib")
# Its own logger, so that all workers but the first can leave the warnings about the same files to the first.
log = logging.getLogger("modelcrate.model_trust")
_warned: set[str] = set()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(model_dir: Path, found: ModelFile, metadata: ModelMetadata) -> list[Path]:
    """Every file a predictor of ``found`` reads: the model file (each file of a SavedModel directory) and the
    compiled form ``modelcrate optimize`` recorded."""
    if found.path.is_dir():
        files = sorted(p for p in found.path.rglob("*") if p.is_file() and p.name != METADATA_FILE)
    else:
        files = [found.path]
    if metadata.compiled and (model_dir / metadata.compiled["file"]).is_file():
        files.append(model_dir / metadata.compiled["file"])
    return files


def record_model_files(model_dir: Path, found: ModelFile, metadata: ModelMetadata) -> None:
    """Record in ``metadata`` the sha256 of every file a predictor of ``found`` reads (paths relative to
    ``model_dir``)."""
    metadata.sha256_of_files = {
        _name(model_dir, path): file_sha256(path) for path in model_files(model_dir, found, metadata)
    }


def _name(model_dir: Path, path: Path) -> str:
    """How ``sha256_of_files`` names a file: relative to the model directory (a model file given by an absolute
    path elsewhere keeps it)."""
    return path.relative_to(model_dir).as_posix() if path.is_relative_to(model_dir) else str(path)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _installed_version(framework: str) -> str | None:
    if importlib.util.find_spec(framework) is None:
        return None  # nothing to compare with: loading says what to install
    from modelcrate.predictors.evaluation import framework_version

    return framework_version(framework)


def _version_problem(model_dir: Path, metadata: ModelMetadata) -> str | None:
    if not (metadata.framework and metadata.framework_version):
        return None
    installed = _installed_version(metadata.framework)
    if installed is None or installed == metadata.framework_version:
        return None
    return (
        f"{model_dir / METADATA_FILE} records {metadata.framework} {metadata.framework_version}, but {installed} is "
        f"installed here (a model saved by one version can fail or answer differently under another): rebuild the "
        f"image with {metadata.framework} {metadata.framework_version} pinned, or save the model again with "
        f"{installed} and record it"
    )


def recorded_file_problems(model_dir: Path, metadata: ModelMetadata) -> list[str]:
    """What differs from the digests ``modelcrate.json`` records: a missing file, a changed one (one line each)."""
    problems = []
    started, size = time.perf_counter(), 0
    for name, recorded in (metadata.sha256_of_files or {}).items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"{path} is recorded in {model_dir / METADATA_FILE} but missing: restore it")
            continue
        size += path.stat().st_size
        found = file_sha256(path)
        if found != recorded:
            problems.append(
                f"{path} has sha256 {found[:16]}..., not the {recorded[:16]}... recorded in "
                f"{model_dir / METADATA_FILE}: it changed after it was recorded; restore the recorded file, or "
                "delete sha256_of_files from modelcrate.json to accept the files as they are"
            )
    if metadata.sha256_of_files:
        log.info(
            f"checked the sha256 of {len(metadata.sha256_of_files)} model files "
            f"({size / 1e6:.1f} MB) in {time.perf_counter() - started:.2f} s"
        )
    return problems


def verify_recorded(model_dir: Path, metadata: ModelMetadata, accept_mismatch: bool = False) -> None:
    """Refuse (ModelLoadError, one line) when a recorded file is missing or changed, or the installed framework is
    not the recorded version; with ``accept_mismatch`` warn instead, once per process."""
    version_problem = _version_problem(model_dir, metadata)
    problems = ([version_problem] if version_problem else []) + recorded_file_problems(model_dir, metadata)
    if problems and not accept_mismatch:
        raise ModelLoadError(f"{problems[0]}; or set {ACCEPT_MISMATCH_VARIABLE}=true to serve it anyway")
    for problem in problems:
        _warn_once(f"{problem}; serving it anyway because {ACCEPT_MISMATCH_VARIABLE}=true")


def check_before_loading(
    model_dir: Path, found: ModelFile, metadata: ModelMetadata, accept_mismatch: bool = False
) -> None:
    """What :func:`verify_recorded` checks; besides, when digests are recorded, every file to load must be among
    them; and a pickle whose digest is not recorded is loaded with a warning naming the risk."""
    verify_recorded(model_dir, metadata, accept_mismatch)
    recorded = metadata.sha256_of_files or {}
    unrecorded = [p for p in model_files(model_dir, found, metadata) if _name(model_dir, p) not in recorded]
    if recorded and unrecorded:
        problem = f"{unrecorded[0]} is not among the files {model_dir / METADATA_FILE} records"
        if not accept_mismatch:
            raise ModelLoadError(
                f"{problem}: serve a recorded file, or set {ACCEPT_MISMATCH_VARIABLE}=true to serve it anyway"
            )
        _warn_once(f"{problem}; serving it anyway because {ACCEPT_MISMATCH_VARIABLE}=true")
    if found.model_format in PICKLE_FORMATS and found.path in unrecorded:
        _warn_once(
            f"{found.path} is a pickle and its sha256 is not recorded: loading it runs any code it holds, so serve "
            "only pickles you made or trust (modelcrate records the digest of the models it writes or registers)"
        )
