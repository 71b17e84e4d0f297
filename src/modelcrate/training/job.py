"""One training job in SageMaker's layout: check everything, train, evaluate, then publish the model.

Nothing is trained before the spec, hyperparameters, channels and data are all checked, and the model is
written to a hidden staging directory inside ``model/`` (the same file system, which may be a mount point)
and moved into place only once it is complete, so a failed job leaves ``model/`` as it found it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from modelcrate.predictors import CLASSIFICATION, ModelMetadata, find_model_file, load_predictor
from modelcrate.predictors.evaluation import framework_version, prediction_metrics, recorded_samples
from modelcrate.predictors.trust import record_model_files
from modelcrate.training.data import Channel, channel_directories, current_host, read_channel, read_hyperparameters
from modelcrate.training.errors import EXIT_INTERNAL_ERROR, EXIT_JOB_ERROR, EXIT_OK, JobError
from modelcrate.training.spec import TrainingSpec, load_spec, metric_line, parse_hyperparameters
from modelcrate.training.trainers import TRAINERS, Trainer

DEFAULT_SPEC_PATH = Path("/opt/ml/code/training.json")
SPEC_PATH_ENV = "MODELCRATE_TRAINING_SPEC"


def run_training(prefix: Path = Path("/opt/ml"), spec_path: Path | None = None) -> int:
    """Run one job rooted at ``prefix``; returns the exit code and never raises for the job's own errors.

    Exit codes: 0 success; 1 the job's input or configuration (spec, hyperparameters, channels, data, hosts),
    or data too big for the memory the job has; 2 an internal error. On failure the reason is in
    ``prefix/output/failure`` and on stderr.
    """
    prefix = Path(prefix)
    spec_path = Path(spec_path or os.environ.get(SPEC_PATH_ENV) or DEFAULT_SPEC_PATH)
    try:
        _train(prefix, spec_path)
    except JobError as exc:
        return _fail(prefix, str(exc), EXIT_JOB_ERROR)
    except Exception as exc:
        if _ran_out_of_memory(exc):
            return _fail(prefix, "ran out of memory; use an instance with more memory", EXIT_JOB_ERROR)
        traceback.print_exc()
        first_line = next(iter(str(exc).strip().splitlines()), "")  # XGBoost's errors carry a native stack
        return _fail(
            prefix,
            f"internal error while training: {type(exc).__name__}: {first_line}; the traceback is in the job's log",
            EXIT_INTERNAL_ERROR,
        )
    return EXIT_OK


def _fail(prefix: Path, reason: str, code: int) -> int:
    print(f"training failed: {reason}", file=sys.stderr, flush=True)
    failure = prefix / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(reason + "\n")
    except OSError as exc:
        print(f"could not write {failure}: {exc}", file=sys.stderr, flush=True)
    return code


def _train(prefix: Path, spec_path: Path) -> None:
    spec = load_spec(spec_path)
    trainer = TRAINERS[spec.framework]
    host = current_host(prefix)
    hyperparameters = parse_hyperparameters(spec, read_hyperparameters(prefix))
    channels = {name: read_channel(name, path, spec.label_column) for name, path in channel_directories(prefix).items()}
    train, validation = channels["train"], channels.get("validation")
    feature_names = _feature_names(spec, channels)
    labels = trainer.class_labels(hyperparameters, train, validation) if spec.task == CLASSIFICATION else None
    model_dir = prefix / "model"
    _check_empty(model_dir)
    if importlib.util.find_spec(spec.framework) is None:
        raise JobError(
            f"{spec.path} trains with {spec.framework}, which is not installed here; "
            f"rebuild the image with it in requirements.txt (pip install 'modelcrate[{spec.framework}]')"
        )

    print(
        f"modelcrate training: {spec.framework} {spec.task} on host {host}; hyperparameters: "
        + " ".join(f"{name}={value}" for name, value in hyperparameters.items())
        + "; channels: "
        + ", ".join(f"{c.name} {len(c.labels)} rows" for c in channels.values())
        + f"; {len(feature_names)} features",
        flush=True,
    )
    staging = Path(tempfile.mkdtemp(prefix=".training-", dir=model_dir))
    try:
        _fit(spec, trainer, hyperparameters, labels, train, validation, staging / trainer.model_file)
        metadata = ModelMetadata(
            framework=spec.framework,
            framework_version=framework_version(spec.framework),
            model_format=trainer.model_format,
            task=spec.task,
            feature_names=feature_names,
            labels=labels,
        )
        _evaluate(staging, metadata, spec, channels)
        _publish(staging, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fit(
    spec: TrainingSpec,
    trainer: Trainer,
    hyperparameters: dict[str, Any],
    labels: list | None,
    train: Channel,
    validation: Channel | None,
    path: Path,
) -> None:
    """The trainer's fit; running out of memory is the job's size, reported with it rather than as a bug."""
    try:
        trainer.fit_and_save(spec.task, hyperparameters, labels, train, validation, path)
    except Exception as exc:
        if not _ran_out_of_memory(exc):
            raise
        rows, features = train.features.shape
        raise JobError(
            f"ran out of memory training {spec.framework} on channel 'train' ({rows:,} rows x {features} features "
            f"= {train.features.nbytes / 1e6:,.0f} MB as float64); use an instance with more memory, fewer rows "
            "or smaller models (fewer or shallower trees)"
        ) from None


def _ran_out_of_memory(exc: Exception) -> bool:
    # XGBoost reports a failed allocation in its C++ core as an XGBoostError naming std::bad_alloc or bad_malloc.
    return isinstance(exc, MemoryError) or any(word in str(exc) for word in ("std::bad_alloc", "bad_malloc"))


def _feature_names(spec: TrainingSpec, channels: dict[str, Channel]) -> list[str]:
    widths = {name: channel.features.shape[1] for name, channel in channels.items()}
    if len(set(widths.values())) > 1:
        raise JobError(
            "the channels have different numbers of feature columns ("
            + ", ".join(f"{name}: {width}" for name, width in widths.items())
            + "); train and validation need the same columns"
        )
    width = widths["train"]
    if spec.feature_names is None:
        return [f"f{i}" for i in range(1, width + 1)]
    if len(spec.feature_names) != width:
        raise JobError(
            f"{spec.path} names {len(spec.feature_names)} features but the data has {width} feature columns "
            "(besides the label); fix feature_names or the data"
        )
    return spec.feature_names


def _check_empty(model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    present = sorted(entry.name for entry in model_dir.iterdir() if not entry.name.startswith("."))
    if present:
        raise JobError(
            f"{model_dir} already holds {', '.join(present)}; training writes a new model into an empty directory "
            "(SageMaker gives every job one): empty it or train into another prefix"
        )


def _evaluate(staging: Path, metadata: ModelMetadata, spec: TrainingSpec, channels: dict[str, Channel]) -> None:
    """Metrics for every channel and recorded samples, from the saved model loaded as the server loads it."""
    record_model_files(staging, find_model_file(staging), metadata)
    metadata.write(staging)
    predictor = load_predictor(staging, prefer_compiled=False)
    predictions = {name: predictor.predict(channel.features) for name, channel in channels.items()}
    for name, channel in channels.items():
        truth = channel.labels if spec.task != CLASSIFICATION else channel.labels.astype(type(metadata.labels[0]))
        metrics = prediction_metrics(spec.task, predictions[name], truth)
        print(metric_line(name, metrics), flush=True)
        metadata.metrics.update({f"{name}:{metric}": value for metric, value in metrics.items()})
    # Samples come from held-out rows when there are any.
    sampled = "validation" if "validation" in channels else "train"
    metadata.samples = recorded_samples(channels[sampled].features, predictions[sampled])
    metadata.write(staging)


def _publish(staging: Path, model_dir: Path) -> None:
    """Move the finished files into ``model_dir``; if one move fails, the ones already moved are taken back."""
    moved: list[Path] = []
    try:
        for entry in sorted(staging.iterdir()):
            target = model_dir / entry.name
            os.replace(entry, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise
