"""``modelcrate pipeline``: serve a serial inference pipeline. Heavy modules are imported inside commands;
imported by ``modelcrate.cli``, this module registers its command group on ``app``."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from modelcrate.cli import app, err, error, say

pipeline_app = typer.Typer(
    help="Serial inference pipelines: 2 to 15 containers behind one endpoint, as SageMaker runs them.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(pipeline_app, name="pipeline")

# Typer's markdown keeps single line breaks, so each paragraph is one line.
SERVE_HELP = "\n\n".join(
    [
        "Start every container of PIPELINE.json, then answer on one endpoint until Ctrl-C (or SIGTERM), which "
        "stops them all.",
        "PIPELINE.json is SageMaker's CreateModel request with `Containers`. Each container has an `Image`, a "
        "model (`ModelDataUrl`: a local directory, `model.tar.gz` or `file://` URI, relative to PIPELINE.json; "
        "or `ModelDirectory`), or both (the image serves the model at /opt/ml/model); optional `Environment` "
        "and `ContainerHostname`. For example:",
        """{
  "Containers": [
    {"ContainerHostname": "features",
     "ModelDataUrl": "models/features",
     "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}},
    {"ContainerHostname": "algorithm",
     "ModelDataUrl": "file:///srv/models/xgboost.tar.gz",
     "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                     "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label"}},
    {"ContainerHostname": "labels", "Image": "my-postprocessing:latest"}
  ],
  "InferenceExecutionConfig": {"Mode": "Serial"}
}""",
        "**Serial** (the default): POST /invocations goes through the containers in order. Your Content-Type "
        "goes to the first, your Accept to the last; each container in between answers in its "
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT. An error names the container that gave it.",
        "**Direct**: the header `X-Amzn-SageMaker-Target-Container-Hostname` picks the one container to call.",
        "GET /ping is 200 only when every container is healthy.",
        "Try it: `python -m modelcrate.pipeline.example DIR` writes an Autopilot-style pipeline to serve.",
    ]
)


@pipeline_app.command(
    "serve", help=SERVE_HELP, short_help="Serve PIPELINE.json's containers behind one endpoint until Ctrl-C."
)
def serve_pipeline(
    definition: Annotated[Path, typer.Argument(metavar="PIPELINE.json", help="The pipeline definition.")],
    host: Annotated[str, typer.Option(help="Address of the pipeline's endpoint.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the pipeline's endpoint.")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes per container, unless its Environment sets SAGEMAKER_MODEL_SERVER_WORKERS."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds one invocation may take through all containers.")
    ] = 60.0,
) -> None:
    from modelcrate.containers.endpoint import ServerError
    from modelcrate.pipeline import PipelineDefinitionError, PipelineError, load_definition, running_pipeline
    from modelcrate.pipeline.runner import DrainCutOff
    from modelcrate.serving.supervisor import EXIT_DRAIN_CUT_OFF

    try:
        loaded = load_definition(definition)
    except PipelineDefinitionError as exc:
        error(str(exc))
        raise typer.Exit(2) from None

    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        if not stopping:  # a second Ctrl-C must not interrupt the containers' shutdown
            stopping = True
            say("stopping the pipeline: answering the requests already received, then stopping each container...")
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with (
            err.status("starting the pipeline's containers...") as status,
            running_pipeline(
                loaded,
                host=host,
                port=port,
                workers=workers,
                invocation_timeout=timeout,
                progress=lambda line: status.update(Text(line)),
            ) as endpoint,
        ):
            status.stop()
            chain = " -> " if loaded.mode == "Serial" else " | "
            containers = chain.join(f"{c.spec.hostname} (:{c.port})" for c in endpoint.containers)
            say(f"{loaded.name} ({loaded.mode}: {containers}) on {endpoint.url}; Ctrl-C stops it", "serving", "green")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        say("stopped the pipeline and its containers")
    except DrainCutOff as exc:
        error(str(exc))
        raise typer.Exit(EXIT_DRAIN_CUT_OFF) from None
    except (PipelineError, ServerError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
