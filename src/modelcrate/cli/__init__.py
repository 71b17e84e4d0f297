"""The ``modelcrate`` command line. Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    name="modelcrate",
    no_args_is_help=True,
    add_completion=False,
    # Inherited by every command and group: -h is --help everywhere.
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, soft_wrap=True)  # one error, one line: never wrapped


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        print(f"modelcrate {version('modelcrate')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Ship a classic ML model (scikit-learn, XGBoost, TensorFlow/Keras) as a SageMaker-compatible container:
    make sample models, serve them, invoke them."""


def say(message: str, label: str = "", style: str = "") -> None:
    """``message`` on stderr exactly as written, after ``label`` in ``style`` (no label: the message in ``style``).

    Every message with user text (names, paths, error messages quoting patterns such as '^[a-z]{1,128}$') is
    printed through here, or as a rich ``Text`` in tables and status lines: Rich would read brackets as markup.
    """
    line = Text.assemble((f"{label} ", style), message) if label else Text(message, style)
    err.print(line, highlight=False)


def error(message: str) -> None:
    say(message, "error:", "red")


def warning(message: str) -> None:
    say(message, "warning:", "yellow")


@app.command("sample-model")
def sample_model(
    framework: Annotated[str, typer.Option(help="sklearn, xgboost or tensorflow.")],
    output: Annotated[Path, typer.Option(help="Directory to create (must not exist, or be empty).")],
    model_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="sklearn: pkl|joblib; xgboost: json|ubj|model; "
            "tensorflow: keras|h5|savedmodel. Default: the framework's first.",
        ),
    ] = None,
    task: Annotated[str, typer.Option(help="regression (Rings) or classification (Sex: F, I, M).")] = "regression",
) -> None:
    """Train an Abalone sample model offline and write it with its modelcrate.json metadata.

    Example: modelcrate sample-model --framework xgboost --format json --task classification --output model/
    """
    from modelcrate.scaffold.sample_models import SampleModelError, create_sample_model

    try:
        with err.status(Text(f"training {framework} {task} model on Abalone...")):
            metadata = create_sample_model(framework, model_format, task, output)
    except SampleModelError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    metrics = ", ".join(f"{k}={v}" for k, v in metadata.metrics.items())
    say(
        f"{output} ({metadata.framework} {metadata.framework_version}, "
        f"{metadata.model_format}, {metadata.task}; held-out {metrics})",
        "wrote",
        "green",
    )


@app.command()
def serve(
    model_dir: Annotated[
        Path | None, typer.Option(help="Model directory (default: $SM_MODEL_DIR or /opt/ml/model).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $SAGEMAKER_BIND_TO_PORT or 8080).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS or CPU count)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to bind (default: $MODELCRATE_BIND_HOST; 0.0.0.0 in a container, else 127.0.0.1)."),
    ] = None,
    model_file: Annotated[
        str | None, typer.Option(help="Model file to serve when the directory holds several.")
    ] = None,
    model_format: Annotated[str | None, typer.Option("--format", help="Override format detection.")] = None,
) -> None:
    """Serve a model with the SageMaker hosting contract: /ping, /invocations, /execution-parameters, /metrics.

    Every SAGEMAKER_* variable of the contract is honoured; flags win over the environment.
    Per request, `X-Amzn-SageMaker-Custom-Attributes: inference_output=predicted_label,probabilities`
    chooses the inference keys.
    """
    from modelcrate.serving.supervisor import serve_from_env

    code = serve_from_env(
        model_dir=model_dir,
        port=port,
        workers=workers,
        host=host,
        model_file=model_file,
        model_format=model_format,
    )
    raise typer.Exit(code)


@app.command()
def invoke(
    source: Annotated[str, typer.Argument(help="File with the request body, or - for standard input.")],
    content_type: Annotated[
        str, typer.Option(help="text/csv, application/json, application/jsonlines, application/x-npy.")
    ],
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8080",
    accept: Annotated[str | None, typer.Option(help="Response type wanted (default: the server's).")] = None,
    custom_attributes: Annotated[
        str | None,
        typer.Option(help="X-Amzn-SageMaker-Custom-Attributes, e.g. inference_output=predicted_label,probabilities"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 60.0,
) -> None:
    """Send one request to /invocations and print the response body (errors go to stderr, exit 1)."""
    from modelcrate.containers.invoke import InvokeError, invoke_endpoint

    try:
        body = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        error(f"cannot read {source}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        payload, _ = invoke_endpoint(url, body, content_type, accept, custom_attributes, timeout)
    except InvokeError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    sys.stdout.buffer.write(payload)
    if payload and not payload.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")


_PROMPTS = {
    "project_name": "Project name",
    "framework": "Framework (sklearn, xgboost, tensorflow)",
    "model_format": "Model format",
    "model_source": "Model source (local, sample, s3, registry)",
    "model_path": "Model file or directory to copy",
    "registry_package": "Registry package (GROUP for its latest Approved version, or GROUP/N)",
    "sample_task": "Sample model task (regression, classification)",
    "include_tests": "Include tests",
    "optimize": "Compile tree models for faster serving",
    "with_training": "Also train in the image (docker run IMAGE train)",
    "deploy_target": "Deploy target (sagemaker, codebuild)",
    "instance_type": "Instance type (cpu, gpu or ml.<family>.<size>)",
    "region": "AWS region",
    "role_arn": "Execution role ARN (empty to set later)",
    "base_image": "Base image",
}


def _prompt(name: str, known: dict):
    """Ask for one option; a bad answer is explained and asked again."""
    from rich.prompt import Confirm, Prompt

    from modelcrate.predictors import FORMATS_OF_FRAMEWORK
    from modelcrate.scaffold.options import ProjectOptions, answer_problem

    label = _PROMPTS[name]
    if name == "model_format" and known.get("framework") in FORMATS_OF_FRAMEWORK:
        label = f"Model format ({', '.join(FORMATS_OF_FRAMEWORK[known['framework']])})"
    if name in ("include_tests", "optimize", "with_training"):
        return Confirm.ask(label, default=bool(known.get(name, ProjectOptions.model_fields[name].default)), console=err)
    default = known.get(name)
    while True:
        answer = Prompt.ask(label, default=None if default is None else str(default), console=err) or None
        if answer is None:
            problem = "an answer is needed" if ProjectOptions.model_fields[name].is_required() else None
        else:
            problem = answer_problem(name, answer, known)
        if problem is None:
            return answer
        say(problem, style="red")


@app.command()
def init(
    project_name: Annotated[
        str | None, typer.Argument(help="Project name (lower-case letters, digits, hyphens).")
    ] = None,
    framework: Annotated[str | None, typer.Option(help="sklearn, xgboost or tensorflow.")] = None,
    model_format: Annotated[str | None, typer.Option(help="pkl|joblib, json|ubj|model, keras|h5|savedmodel.")] = None,
    model_source: Annotated[
        str | None, typer.Option(help="local, sample (Abalone), s3 (model.tar.gz) or registry.")
    ] = None,
    model_path: Annotated[Path | None, typer.Option(help="For --model-source local: the file or directory.")] = None,
    sample_task: Annotated[
        str | None, typer.Option(help="For --model-source sample: regression or classification.")
    ] = None,
    registry_package: Annotated[str | None, typer.Option(help="--model-source registry: GROUP or GROUP/N.")] = None,
    include_tests: Annotated[bool | None, typer.Option("--include-tests/--no-tests", help="Generate test/.")] = None,
    optimize: Annotated[
        bool | None,
        typer.Option(
            "--optimize/--no-optimize",
            help="Compile a tree model (scikit-learn ensembles, XGBoost) to ONNX, verified, for faster serving; "
            "a registry model is compiled at build.",
        ),
    ] = None,
    with_training: Annotated[
        bool | None,
        typer.Option(
            "--with-training/--without-training",
            help="Make the image an algorithm too: `train` follows SageMaker's training contract "
            "(sklearn, xgboost); then modelcrate train.",
        ),
    ] = None,
    deploy_target: Annotated[str | None, typer.Option(help="sagemaker or codebuild.")] = None,
    instance_type: Annotated[str | None, typer.Option(help="cpu, gpu or ml.<family>.<size>.")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region, e.g. eu-west-1.")] = None,
    role_arn: Annotated[str | None, typer.Option(help="SageMaker execution role ARN.")] = None,
    destination: Annotated[Path | None, typer.Option(help="Directory to create (default: ./NAME).")] = None,
    base_image: Annotated[str | None, typer.Option(help="Base image with python3 (default python:3.11-slim).")] = None,
    config: Annotated[Path | None, typer.Option(help="Options from a YAML or JSON file.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Never prompt: use defaults for what is not given.")] = False,
    force: Annotated[bool, typer.Option(help="Replace a non-empty destination.")] = False,
    print_config: Annotated[bool, typer.Option(help="Show the resolved options and their sources, then stop.")] = False,
) -> None:
    """Create a container project for a model (ML Container Creator's job).

    Options come from flags, then MODELCRATE_<OPTION> environment variables, then --config, then defaults;
    on a terminal, whatever is still missing is asked for (never with --yes).

    Example: modelcrate init demo --framework xgboost --model-format json --model-source sample --yes
    """
    from rich.table import Table

    from modelcrate.errors import ModelLoadError
    from modelcrate.scaffold.generate import generate
    from modelcrate.scaffold.options import OptionsError, resolve

    flags = {k: v for k, v in locals().items() if k in _PROMPTS or k == "destination"}
    interactive = not yes and sys.stdin.isatty()
    try:
        options, origin = resolve(flags, config_file=config, prompt=_prompt if interactive else None)
        if print_config:
            table = Table("option", "value", "source")
            for name, value in options.model_dump().items():
                table.add_row(name, Text("" if value is None else str(value)), origin.get(name, "default"))
            Console().print(table)
            return
        with err.status(Text(f"generating {options.target_dir}...")):
            project = generate(options, force=force)
    except (OptionsError, ModelLoadError) as exc:  # ModelLoadError: --optimize loads the model
        error(str(exc))
        raise typer.Exit(2) from None
    for problem in project.warnings:
        warning(problem)
    say(
        f"{project.path} ({options.framework} {project.framework_version}, {options.model_format}, "
        f"model source {options.model_source}). Next: modelcrate build {project.path}",
        "created",
        "green",
    )


def _project_or_image(target: str):
    """A project directory (with modelcrate-project.json) or an image reference."""
    from modelcrate.containers.docker import Project
    from modelcrate.scaffold.generate import PROJECT_FILE

    path = Path(target)
    return Project.load(path) if (path / PROJECT_FILE).is_file() else None


@app.command()
def build(
    project: Annotated[Path, typer.Argument(help="Project directory made by modelcrate init.")] = Path("."),
    tag: Annotated[str | None, typer.Option(help="Image tag (default: PROJECT_NAME:latest).")] = None,
    base_image: Annotated[str | None, typer.Option(help="Override the Dockerfile's BASE_IMAGE.")] = None,
    platform: Annotated[str | None, typer.Option(help="linux/amd64 or linux/arm64 (default: the engine's).")] = None,
    pip_ca: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle for pip inside the build (TLS-inspecting proxies); "
            "also $MODELCRATE_PIP_CA. Passed as a BuildKit secret, never stored."
        ),
    ] = None,
    context_only: Annotated[bool, typer.Option(help="Only place the runtime wheel in dist/ (for CodeBuild).")] = False,
) -> None:
    """Build the project's image: the modelcrate runtime wheel goes into dist/, then docker build (BuildKit)."""
    from modelcrate.containers.docker import DockerError, Project, build_image, place_runtime_wheel

    try:
        loaded = Project.load(project)
        if loaded.options.model_source == "registry":
            _model_from_registry(loaded)
            if loaded.options.optimize:
                _compile_project_model(loaded)
        if context_only:
            say(str(place_runtime_wheel(project)), "placed", "green")
            return
        with err.status(Text(f"building {tag or loaded.image}...")) as status:
            image = build_image(
                loaded, tag, base_image, platform, pip_ca, on_line=lambda line: status.update(Text(line[:100], "dim"))
            )
    except DockerError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    say(f"{image}. Next: modelcrate test-image {project}", "built", "green")


def _model_from_registry(project) -> None:
    """Resolve the project's registry package (GROUP: its latest Approved version; GROUP/N: that version,
    which must be Approved, of the project's framework) into the project's model/ directory, checked against its
    sha256; requirements.txt pins the package's FrameworkVersion."""
    from modelcrate.registry.artifacts import ArtifactError
    from modelcrate.registry.service import RegistryError
    from modelcrate.scaffold.generate import place_registry_model
    from modelcrate.scaffold.options import OptionsError

    try:
        arn = place_registry_model(project.path, project.options)
    except (RegistryError, ArtifactError, OptionsError) as exc:
        package = project.options.registry_package
        error(f"registry package {package}: {exc}")
        raise typer.Exit(1) from None
    say(f"model: registry package {arn}")


def _compile_project_model(project) -> None:
    from modelcrate.scaffold.generate import compile_model

    with err.status("compiling the model (modelcrate optimize)..."):
        problem = compile_model(project.path / "model")
    if problem:
        warning(problem)
    else:
        say("model: compiled to ONNX and verified")


@app.command("test-image")
def test_image_command(
    target: Annotated[str, typer.Argument(help="Project directory or image reference.")] = ".",
    model_tar: Annotated[Path | None, typer.Option(help="model.tar.gz to mount at /opt/ml/model (s3 source).")] = None,
) -> None:
    """Start the image with --network none, wait for /ping, replay the recorded samples as CSV, JSON and
    JSON Lines inside it, and compare with the outputs recorded at training time. Exit 1 on any mismatch."""
    from rich.table import Table

    from modelcrate.containers.docker import DockerError, require_engine
    from modelcrate.containers.image_test import test_image

    project = _project_or_image(target)
    image = project.image if project else target
    try:
        require_engine()
        with err.status(Text(f"testing {image} (network-isolated)...")):
            report = test_image(image, model_tar)
    except DockerError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    table = Table("check", "result", "detail", title=Text(f"test-image {image}"))
    for check in report.checks:
        table.add_row(
            Text(check.name),
            "[green]pass[/]" if check.passed else "[red]FAIL[/]",
            Text(check.detail if not check.passed or check.name.startswith(("healthy", "answers")) else ""),
        )
    Console().print(table)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="Project directory or image reference.")] = ".",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (host networking).")] = 8080,
    isolated: Annotated[bool, typer.Option(help="--network none, as Marketplace runs containers.")] = False,
    model_tar: Annotated[Path | None, typer.Option(help="model.tar.gz to mount at /opt/ml/model.")] = None,
) -> None:
    """Run the image the way SageMaker does (`docker run IMAGE serve`) until Ctrl-C, then drain it."""
    import time

    from modelcrate.containers.docker import DockerError, running_container
    from modelcrate.containers.image_test import unpacked_model

    project = _project_or_image(target)
    image = project.image if project else target
    try:
        with unpacked_model(model_tar) as model_dir, running_container(image, isolated, port, model_dir) as container:
            where = "with no network" if isolated else f"on http://127.0.0.1:{port}"
            say(f"{image} {where} (container {container.id[:12]}); Ctrl-C stops it", "running", "green")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                say("stopping (SIGTERM, drains within 30 s)...")
        print(container.final_log[-3000:], file=sys.stderr)
    except DockerError as exc:
        error(str(exc))
        raise typer.Exit(1) from None


# Larger command groups live in their own modules and register on `app` when imported.
from modelcrate.cli import card as _card  # noqa: E402, F401
from modelcrate.cli import check_image as _check_image  # noqa: E402, F401
from modelcrate.cli import optimize as _optimize  # noqa: E402, F401
from modelcrate.cli import pipeline as _pipeline  # noqa: E402, F401
from modelcrate.cli import registry as _registry  # noqa: E402, F401
from modelcrate.cli import train as _train  # noqa: E402, F401
from modelcrate.cli import transform as _transform  # noqa: E402, F401
from modelcrate.cli import ui as _ui  # noqa: E402, F401
