"""``modelcrate transform``: a batch transform job, as SageMaker runs it, on this machine or on Ray."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from modelcrate.cli import app, err, error, say


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def _job_from(job_file: Path | None, flags: dict, environment: list[str]):  # -> TransformJob; flags win over the file
    from modelcrate.api import JOB_FIELDS, transform_job

    data: dict = {}
    if job_file:
        try:
            data = json.loads(job_file.read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read {job_file}: {exc}", param_hint="--job") from None
        if not isinstance(data, dict):
            raise typer.BadParameter(f"{job_file} must hold a JSON object (CreateTransformJob)", param_hint="--job")
    variables = {}
    for item in environment:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r}: write NAME=VALUE", param_hint="--env")
        variables[name] = value
    fields = {keyword: flags.get(keyword) for keyword in JOB_FIELDS}
    return transform_job(data, fields, variables, str(job_file) if job_file else "the flags")


@app.command()
def transform(
    target: Annotated[
        str,
        typer.Argument(
            help="Model directory, project directory, image reference, pipeline definition (.json), or a "
            "registry package: registry:GROUP/N (registry:GROUP: its latest Approved version)."
        ),
    ],
    job_file: Annotated[
        Path | None, typer.Option("--job", help="CreateTransformJob JSON; the flags below override its fields.")
    ] = None,
    input_uri: Annotated[
        str | None, typer.Option("--input", help="Input: local path, file:// or s3:// (S3Uri).")
    ] = None,
    output_uri: Annotated[str | None, typer.Option("--output", help="Output path (S3OutputPath).")] = None,
    data_type: Annotated[str | None, typer.Option(help="S3Prefix (default) or ManifestFile.")] = None,
    content_type: Annotated[
        str | None,
        typer.Option(help="ContentType of the input (default: from the files' extension: .csv, .json, .jsonl, .npy)."),
    ] = None,
    accept: Annotated[str | None, typer.Option(help="Accept: the output type asked of the model.")] = None,
    compression: Annotated[str | None, typer.Option(help="CompressionType: None or Gzip.")] = None,
    split_type: Annotated[str | None, typer.Option(help="SplitType: None, Line, RecordIO or TFRecord.")] = None,
    assemble_with: Annotated[str | None, typer.Option(help="AssembleWith: None or Line.")] = None,
    strategy: Annotated[str | None, typer.Option(help="BatchStrategy: MultiRecord or SingleRecord.")] = None,
    max_payload: Annotated[int | None, typer.Option(help="MaxPayloadInMB (0-100; 0 streams whole objects).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="MaxConcurrentTransforms per server.")] = None,
    input_filter: Annotated[str | None, typer.Option(help="DataProcessing InputFilter (JSONPath).")] = None,
    output_filter: Annotated[str | None, typer.Option(help="DataProcessing OutputFilter (JSONPath).")] = None,
    join_source: Annotated[str | None, typer.Option(help="DataProcessing JoinSource: None or Input.")] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="Servers to run (TransformResources.InstanceCount).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="TransformJobName.")] = None,
    env: Annotated[list[str], typer.Option("--env", help="NAME=VALUE for the containers (repeatable).")] = [],  # noqa: B006
    engine: Annotated[Engine, typer.Option(help="local: this machine; ray: spread over a Ray cluster.")] = Engine.local,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start a local one).")] = None,
    in_process: Annotated[
        bool, typer.Option(help="ray engine: each Ray worker predicts in-process instead of running a server.")
    ] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes per model server (default: cores).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip inputs whose .out is already complete.")] = False,
    summary_json: Annotated[Path | None, typer.Option("--summary", help="Also write the job summary here.")] = None,
) -> None:
    """Run a batch transform job with SageMaker's exact semantics.

    Every input object under --input becomes OUTPUT/<relative path>.out, records in input order, written only
    when complete (a killed job leaves no partial .out; --resume finishes it). A failed record fails its file,
    the other files complete, and the job ends Failed (exit 1) with the reason.

    Example: modelcrate transform model/ --input data/ --output out/ --content-type text/csv --split-type Line
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    from modelcrate.api import transform_target
    from modelcrate.containers.endpoint import ServerError
    from modelcrate.pipeline import PipelineDefinitionError, PipelineError
    from modelcrate.transform.engine import fill_content_type, list_inputs
    from modelcrate.transform.job import JobError
    from modelcrate.transform.run import run_job
    from modelcrate.transform.storage import StorageError
    from modelcrate.transform.targets import TargetError

    flags = dict(locals())
    flags.update(input=input_uri, output=output_uri)
    stack = ExitStack()
    try:
        job = _job_from(job_file, flags, env)
        if not job_file and not input_uri:
            raise JobError("give the job as --job job.json, or at least --input and --output")
        items = list_inputs(job)
        inferred = fill_content_type(job, items)
        if inferred:
            say(f"content type {inferred}, inferred from the input files' extension")
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelcrate-transform-"))
        resolved, how = transform_target(target, Path(scratch))
        if how:
            say(how)
        total = sum(i.size for i in items) if job.TransformInput.CompressionType == "None" else None
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[records]:,} records"),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as progress:
            bar = progress.add_task(f"{job.TransformJobName}: {len(items)} files", total=total, records=0)

            def advance(records: int, nbytes: int) -> None:
                done = progress.tasks[0].fields["records"] + records
                progress.update(bar, advance=nbytes, records=done)

            summary = run_job(
                job,
                resolved,
                items,
                engine=engine.value,
                ray_address=ray_address,
                in_process=in_process,
                workers=workers,
                resume=resume,
                progress=advance,
            )
    except (JobError, TargetError, StorageError, ServerError, PipelineDefinitionError, PipelineError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    finally:
        stack.close()
    report = summary.as_dict()
    if summary_json:
        summary_json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    say(summary.report_line, style="green" if summary.status == "Completed" else "red")
    if summary.status != "Completed":
        raise typer.Exit(1)
