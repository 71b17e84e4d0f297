"""``modelcrate train`` and ``modelcrate sample-data``: a SageMaker training job on this machine, in the project's
image (no network) or by this machine's modelcrate, and Abalone channels to try it on."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

import modelcrate
from modelcrate.cli import _project_or_image, app, error, say

_LOCAL = f"modelcrate {modelcrate.__version__} on this machine"


@app.command("sample-data")
def sample_data(
    output: Annotated[Path, typer.Option(help="Directory to write train/ and validation/ into.")],
    task: Annotated[str, typer.Option(help="regression (label: Rings) or classification (label: Sex 0=F 1=I 2=M).")] = (
        "regression"
    ),
) -> None:
    """Write the bundled Abalone data as training channels: OUTPUT/train/abalone.csv (80%) and
    OUTPUT/validation/abalone.csv (20%), numeric CSV with the label first and no header.

    Example: modelcrate sample-data --task classification --output data/
    """
    from modelcrate.containers.training_job import TrainingJobError, write_abalone_channels

    try:
        channels = write_abalone_channels(task, output)
    except TrainingJobError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    shown = " ".join(f"--channel {name}={path}" for name, path in channels.items())
    say(f"{output} (Abalone, {task}). Next: modelcrate train PROJECT {shown} --output out/", "wrote", "green")


def _channels(values: list[str]) -> dict[str, Path]:
    channels: dict[str, Path] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or not name or not path:
            raise typer.BadParameter(
                f"{value!r}: write NAME=DIR, e.g. --channel train=data/train", param_hint="--channel"
            )
        if name in channels:
            raise typer.BadParameter(f"channel {name} is given twice", param_hint="--channel")
        if not Path(path).exists():
            raise typer.BadParameter(
                f"channel {name}: {path} does not exist; give a directory of CSV files (modelcrate sample-data "
                "writes some)",
                param_hint="--channel",
            )
        channels[name] = Path(path)
    return channels


def _hyperparameters(raw: str) -> dict:
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {raw[1:]}: {exc.strerror}", param_hint="--hyperparameters") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"not valid JSON ({exc}); give an object such as '{{\"max_depth\": 6}}' or @file.json",
            param_hint="--hyperparameters",
        ) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"give a JSON object of names to values, not {type(value).__name__}", param_hint="--hyperparameters"
        )
    return value


def _write_atomically(path: Path, data: dict) -> None:
    from modelcrate.transform.storage import write_atomically

    write_atomically(str(path), [(json.dumps(data, indent=2) + "\n").encode()])


def _pack_model(model_dir: Path, output: Path) -> Path:
    """OUTPUT/model.tar.gz with the model directory's files at its root, as SageMaker uploads it; written whole
    or not at all."""
    from modelcrate.archives import pack_directory

    target = output / "model.tar.gz"
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=output))
    try:
        os.replace(pack_directory(model_dir, staging), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _algorithm_name(image: str) -> str:
    """An image reference as SageMaker's AlgorithmName: letters, digits and hyphens, at most 63."""
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return re.sub(r"[^a-zA-Z0-9]+", "-", repository).strip("-")[:63].strip("-") or "modelcrate-algorithm"


def _register(model_dir: Path, model_tar: Path, image: str, group: str) -> str:
    """The trained model as the next version of GROUP, with the algorithm that trained it; returns its ARN."""
    # Imported here, not by `train`: only --register needs the registry extra.
    from modelcrate.registration import registration_request
    from modelcrate.registry.service import Registry, RegistryError
    from modelcrate.validation import create_validated_package

    try:
        registry = Registry()
        with registry.store.staging() as scratch:
            request = registration_request(model_dir, group, image=image, scratch=scratch)
            request["SourceAlgorithmSpecification"] = {
                "SourceAlgorithms": [
                    {"AlgorithmName": _algorithm_name(image), "ModelDataUrl": str(model_tar.resolve())}
                ]
            }
            registry.ensure_model_package_group(group)
            return create_validated_package(registry, request)["ModelPackageArn"]
    except RegistryError as exc:
        error(str(exc))
        raise typer.Exit(1) from None


@app.command()
def train(
    target: Annotated[str, typer.Argument(help="Project made by modelcrate init --with-training, or its image.")] = ".",
    channel: Annotated[
        list[str],
        typer.Option(help="NAME=DIR (or a CSV file), once per channel: train=..., validation=...; label first."),
    ] = ...,
    output: Annotated[Path, typer.Option(help="Where model.tar.gz, metrics.json and training-job.json go.")] = ...,
    hyperparameters: Annotated[
        str,
        typer.Option(
            help="""A JSON object such as '{"max_depth": 6}', or @file.json; sent as strings, as SageMaker does."""
        ),
    ] = "{}",
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Train with this machine's modelcrate instead of in the image.")
    ] = False,
    register: Annotated[
        str | None, typer.Option(help="Register the trained model as the next version of this package group.")
    ] = None,
) -> None:
    """Run a SageMaker training job locally, laid out exactly as SageMaker does: in the built image
    (`docker run --network none IMAGE train`), or with this machine's modelcrate when no Docker engine is
    reachable (or with --in-process). Writes OUTPUT/model.tar.gz, metrics.json and training-job.json; a failed
    job prints the reason it left in /opt/ml/output/failure and exits 1. Abalone channels to try it on:
    modelcrate sample-data --task regression --output data/

    Example: modelcrate train demo --channel train=data/train --channel validation=data/validation --output out/
    """
    from modelcrate.containers.docker import DockerError
    from modelcrate.containers.training_job import TrainingJobError, training_job
    from modelcrate.registry.artifacts import ArtifactError

    channels = _channels(channel)
    values = _hyperparameters(hyperparameters)
    project, image = _training_target(target)
    try:
        in_process = in_process or not _engine_reachable()
        if not in_process:
            _require_image(image, project)
        output.mkdir(parents=True, exist_ok=True)
        with training_job(channels, values) as job:
            if in_process:
                spec_path = project.path / "code" / "training.json" if project else _spec_of_image(image, job.prefix)
                say(f"training in-process with {_LOCAL}")
                result = job.run_in_process(spec_path, on_line=_show)
            else:
                say(f"training in {image} with no network (docker run --network none {image} train)")
                result = job.run_in_image(image, on_line=_show)
            record = {
                "image": None if in_process else image,
                "runner": _LOCAL if in_process else "docker",
                "hyperparameters": job.hyperparameters,
                "channels": {name: str(path.resolve()) for name, path in job.channels.items()},
                "exit_code": result.exit_code,
                "failure": None if result.succeeded else result.reason,
                "duration_s": round(result.duration_s, 3),
            }
            if not result.succeeded:
                _write_atomically(output / "training-job.json", record)
                say(f"(exit {result.exit_code}): {result.reason}", "training job failed", "red")
                raise typer.Exit(1)
            model_tar = _pack_model(result.model_dir, output)
            _write_atomically(output / "metrics.json", result.metrics)
            _write_atomically(output / "training-job.json", record)
            shown = ", ".join(f"{name}={value:g}" for name, value in result.metrics.items()) or "no metrics scraped"
            say(f"in {result.duration_s:.1f} s ({shown}): wrote {model_tar}", "trained", "green")
            if register:
                arn = _register(result.model_dir, model_tar, image, register)
                print(arn)
                say(arn, "registered", "green")
    except (DockerError, TrainingJobError, ArtifactError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None


def _training_target(target: str):
    """(project or None, image) of a project directory or an image reference; exits on a project that cannot
    train."""
    from modelcrate.scaffold.generate import PROJECT_FILE

    project = _project_or_image(target)
    if project is None and Path(target).is_dir():
        error(f"{target} is not a modelcrate project (no {PROJECT_FILE}); give a project or an image")
        raise typer.Exit(2)
    if project is not None and not project.options.with_training:
        error(f"project {project.path} cannot train: make it with modelcrate init --with-training")
        raise typer.Exit(2)
    return project, project.image if project else target


def _engine_reachable() -> bool:
    from modelcrate.containers.docker import DockerError, require_engine

    try:
        require_engine()
    except DockerError:
        say(f"no Docker engine: training in-process with {_LOCAL}")
        return False
    return True


def _require_image(image: str, project) -> None:
    from modelcrate.containers.docker import docker

    if not docker("image", "ls", "--quiet", image).strip():
        build = f"modelcrate build {project.path}" if project else "modelcrate build PROJECT"
        error(f"image {image} is not built; build it first: {build}")
        raise typer.Exit(1)


def _show(line: str) -> None:
    """The job's log as it runs."""
    say(line, style="dim")


def _spec_of_image(image: str, prefix: Path) -> Path:
    """An image's /opt/ml/code/training.json, copied to the same place under the job's prefix, for training the
    image in-process without its project."""
    from modelcrate.containers.docker import DockerError
    from modelcrate.containers.training_job import TrainingJobError, image_training_spec

    try:
        spec = image_training_spec(image)
    except DockerError as exc:
        raise TrainingJobError(
            f"training {image} in-process needs its training spec, read from the image through Docker ({exc}); "
            "give the project directory instead"
        ) from None
    path = prefix / "code" / "training.json"
    path.parent.mkdir()
    path.write_text(json.dumps(spec))
    return path
