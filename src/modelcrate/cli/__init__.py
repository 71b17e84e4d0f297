"""The ``modelcrate`` command line. Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="modelcrate",
    help="Ship a classic ML model (scikit-learn, XGBoost, TensorFlow/Keras) as a SageMaker-compatible "
    "container: make sample models, serve them, invoke them.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


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
        with err.status(f"training {framework} {task} model on Abalone..."):
            metadata = create_sample_model(framework, model_format, task, output)
    except SampleModelError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    metrics = ", ".join(f"{k}={v}" for k, v in metadata.metrics.items())
    err.print(
        f"[green]wrote[/] {output} ({metadata.framework} {metadata.framework_version}, "
        f"{metadata.model_format}, {metadata.task}; held-out {metrics})"
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
    host: Annotated[str | None, typer.Option(help="Address to bind (default 0.0.0.0).")] = None,
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
    from modelcrate.cli.invoke import InvokeError, invoke_endpoint

    try:
        body = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        err.print(f"[red]error:[/] cannot read {source}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        payload, _ = invoke_endpoint(url, body, content_type, accept, custom_attributes, timeout)
    except InvokeError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    sys.stdout.buffer.write(payload)
    if payload and not payload.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")


def main() -> None:
    app()
