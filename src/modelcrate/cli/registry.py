"""``modelcrate registry``: the AWS CLI's model registry commands, names and shapes, on a local registry.

Each AWS operation is built from botocore's model of it (see ``modelcrate.cli.aws``): every request member as a
flag, JSON or shorthand, ``--cli-input-json``/``--cli-input-yaml``, ``--generate-cli-skeleton``, ``--output`` and
``--query``. ``register``, ``history``, ``export-sagemaker`` and ``push`` are modelcrate's own.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcrate.cli import app, error, say
from modelcrate.cli.aws import Output, command_name, compiled_query, operations_group, print_answer


def _one_line(message: str) -> str:
    """A refusal listing several problems, one per line, as one line: the problems separated by semicolons."""
    first, *problems = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    return " ".join([first, "; ".join(problems)]).strip()


@contextmanager
def registry_failures(operation: str | None = None, also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Every failure of a registry command as one line, never a traceback: a refused request (exit 2 when the
    request is invalid, else 1; worded as the AWS CLI does when ``operation`` names the call), an artifact that
    cannot be stored or read, a database that cannot be used, or an error of the types in ``also`` (exit 1)."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelcrate.registry.artifacts import ArtifactError
    from modelcrate.registry.service import RegistryError

    try:
        yield
    except RegistryError as exc:
        if operation:
            say(f"An error occurred ({exc.code}) when calling the {operation} operation: {_one_line(str(exc))}")
        else:
            error(_one_line(str(exc)))
        raise typer.Exit(2 if exc.code == "ValidationException" else 1) from None
    except (ArtifactError, *also) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        # The driver's own first line (the server and why); never the statement or the URL with its password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        error(f"the registry database cannot be used: {reason}")
        raise typer.Exit(1) from None


def client_call(make_client: Callable[[], Any], operation: str) -> Callable[[dict], dict]:
    """The call of ``make_client()``'s method named after ``operation`` (DescribeModelPackage:
    describe_model_package) with the request's members as keywords, as the Python API is called; a request
    holding a member that method does not take is refused."""
    method = command_name(operation).replace("-", "_")

    def call(request: dict) -> dict:
        from modelcrate.registry.service import RegistryError

        bound = getattr(make_client(), method)
        parameters = inspect.signature(bound).parameters
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            unsupported = sorted(set(request) - set(parameters))
            if unsupported:
                taken = ", ".join(parameters)
                raise RegistryError(f"{operation} here takes only {taken}; {unsupported[0]} is not supported")
        return bound(**request)

    return call


def sagemaker_client():
    """The registry as the Python API's client, configured from the environment."""
    from modelcrate.api import client

    return client()


def _registry():
    return sagemaker_client().registry


REGISTRY_OPERATIONS = (
    "CreateModelPackageGroup",
    "DescribeModelPackageGroup",
    "ListModelPackageGroups",
    "DeleteModelPackageGroup",
    "CreateModelPackage",
    "DescribeModelPackage",
    "ListModelPackages",
    "UpdateModelPackage",
    "DeleteModelPackage",
    "AddTags",
    "ListTags",
    "DeleteTags",
)
REGISTRY_CALLS = {operation: client_call(sagemaker_client, operation) for operation in REGISTRY_OPERATIONS}
SUMMARIES = {
    "CreateModelPackageGroup": "Create a group that versions its packages 1, 2, 3...",
    "CreateModelPackage": "Register a package: the model is stored with its sha256, then validated when it has a "
    "ValidationProfile.",
    "DescribeModelPackage": "Describe a package (GROUP/VERSION, its ARN, or an unversioned package's name).",
    "UpdateModelPackage": "Approve or reject (a reason in --approval-description is required, as in the console), "
    "set metadata, lifecycle...",
    "DeleteModelPackageGroup": "Delete an empty group.",
}

registry_app = typer.Typer(
    cls=operations_group(REGISTRY_CALLS, registry_failures, SUMMARIES),
    help="A model registry that speaks SageMaker: package groups, versioned packages, approval, validation, "
    "history. SQLite under ~/.local/share/modelcrate (MODELCRATE_HOME) or MODELCRATE_DATABASE_URL; artifacts "
    "in MODELCRATE_ARTIFACT_STORE (a directory or s3://bucket/prefix).",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")


@registry_app.command()
def history(
    package: Annotated[
        str | None, typer.Argument(help="GROUP/N, a package ARN, or an unversioned package's name.")
    ] = None,
    model_package_name: Annotated[str | None, typer.Option(help="The same, as a flag.")] = None,
    output: Annotated[Output, typer.Option(help="How the history is printed.")] = Output.json,
    query: Annotated[str | None, typer.Option(help="A JMESPath expression applied to the history.")] = None,
) -> None:
    """Every status and lifecycle change of a package: who, when, from, to, why.

    Example: modelcrate registry history abalone/1 --output table
    """
    if (package is None) == (model_package_name is None):
        error("give the package once: modelcrate registry history GROUP/N")
        raise typer.Exit(2)
    expression = compiled_query(query)
    with registry_failures("History"):
        answer = _registry().history(package or model_package_name)
    print_answer(answer, output.value, expression, "History")


@registry_app.command()
def register(
    source: Annotated[Path, typer.Argument(help="A model directory, or a project made by modelcrate init.")],
    group: Annotated[str, typer.Option(help="Model package group (created when missing).")],
    description: Annotated[str | None, typer.Option(help="ModelPackageDescription.")] = None,
    approval_status: Annotated[
        str | None, typer.Option(help="Approved, Rejected or PendingManualApproval (the default).")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Inference image (default: the project's image).")] = None,
    validation_input: Annotated[
        str | None,
        typer.Option(help="CSV data (path, file:// or s3://) to validate the package on, as a transform job."),
    ] = None,
    carry_card: Annotated[
        bool,
        typer.Option(
            help="Draft a card for the new version (GROUP-vN) from the card of the version before it: business "
            "details, intended uses and additional information carry over."
        ),
    ] = True,
) -> None:
    """Package a model directory or a project's model and register it as the next version of a group.

    Fills the inference specification (image, framework and version, content types) from the project and the
    model's modelcrate.json, and attaches the training metrics recorded with the model as
    CustomerMetadataProperties. When the version before it has a model card, the new version gets a Draft card
    carried over from it (--no-carry-card: none). Example: modelcrate registry register my-project/ --group abalone
    """
    with registry_failures():
        registered = sagemaker_client().register_model(
            source,
            group,
            description=description,
            approval_status=approval_status,
            image=image,
            validation_input=validation_input,
            carry_card=carry_card,
        )
    described = registered.package
    print(json.dumps({"ModelPackageArn": described["ModelPackageArn"]}, indent=4))
    say(
        f"{group} version {described['ModelPackageVersion']} "
        f"({described['ModelApprovalStatus']}, {described['ModelPackageStatus']})",
        "registered",
        "green",
    )
    if registered.card:
        origin = registered.card["CarriedOverFrom"]
        say(
            f"{registered.card['ModelCardName']} ({registered.card['ModelCardStatus']}), carried over from "
            f"{origin['ModelCardName']} version {origin['ModelCardVersion']} ({group} version "
            f"{origin['ModelPackageVersion']})",
            "drafted card",
            "green",
        )
    if described["ModelPackageStatus"] == "Failed":
        sys.exit(1)


@registry_app.command("export-sagemaker")
def export_sagemaker(
    package: Annotated[str, typer.Argument(help="GROUP/N, a package ARN, or an unversioned package's name.")],
    model_data_url: Annotated[
        list[str] | None,
        typer.Option(
            help="The s3:// location each container's model.tar.gz will have (SageMaker cannot read ours): "
            "NAME=s3://... per container (its ContainerHostname or index; repeat the option), or one s3:// URI "
            "when every container holds the same model."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the JSON here instead of stdout.")] = None,
) -> None:
    """Write the CreateModelPackage input of an Approved package, checked by botocore's own validator.

    Example: modelcrate registry export-sagemaker abalone/3 --model-data-url s3://bucket/abalone/3/model.tar.gz
    > request.json && aws sagemaker create-model-package --cli-input-json file://request.json
    """
    from modelcrate.registry.sagemaker import BridgeError, create_model_package_request, model_data_urls

    with registry_failures(also=(BridgeError,)):
        registry = _registry()
        described = registry.describe_model_package(package)
        tags = registry.list_tags({"ResourceArn": described["ModelPackageArn"]})["Tags"]
        request = create_model_package_request(described, model_data_urls(described, model_data_url or []), tags)
    text = json.dumps(request, indent=4, default=str) + "\n"
    if output:
        output.write_text(text)
        say(str(output), "wrote", "green")
    else:
        print(text, end="")


@registry_app.command()
def push(
    package: Annotated[str, typer.Argument(help="GROUP/N, a package ARN, or an unversioned package's name.")],
    s3_prefix: Annotated[str, typer.Option(help="s3://bucket/prefix for the models (model.tar.gz).")],
) -> None:
    """Register an Approved package in SageMaker with boto3: each container's model (checked against its sha256)
    is uploaded under --s3-prefix as <group>/<version>/<sha256>/model.tar.gz, then CreateModelPackage is called
    with each container pointing at its own model (the group is created when missing).

    Uses the usual AWS credentials and region; AWS_ENDPOINT_URL points at another endpoint.
    """
    from modelcrate.registry.sagemaker import BridgeError
    from modelcrate.registry.sagemaker import push as push_package

    with registry_failures(also=(BridgeError,)):
        registry = _registry()
        described = registry.describe_model_package(package)
        with registry.store.staging() as scratch:
            artifacts = registry.verified_artifacts(package, scratch)
            tags = registry.list_tags({"ResourceArn": described["ModelPackageArn"]})["Tags"]
            answer = push_package(described, artifacts, s3_prefix, tags=tags)
    print(json.dumps(answer, indent=4))
