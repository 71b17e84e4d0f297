"""``modelcrate registry``: the AWS CLI's model registry commands, names and shapes, on a local registry.

Every operation takes its request's fields as flags (``--model-package-group-name NAME``; structures and
lists as JSON, or ``file://request.json``), or the whole request with ``--cli-input-json``; prints
``--generate-cli-skeleton``; and answers with the AWS response's JSON.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from modelcrate.cli import app, error, say

registry_app = typer.Typer(
    help="A model registry that speaks SageMaker: package groups, versioned packages, approval, validation, "
    "history. SQLite under ~/.local/share/modelcrate (MODELCRATE_HOME) or MODELCRATE_DATABASE_URL; artifacts "
    "in MODELCRATE_ARTIFACT_STORE (a directory or s3://bucket/prefix).",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def _json_value(raw: str, flag: str):
    text = raw
    if raw.startswith("file://"):
        try:
            text = Path(raw[len("file://") :]).read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {raw}: {exc.strerror}", param_hint=flag) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=flag) from None


def _scalar_type(shape, name: str) -> type | None:
    """int or bool when the field holds one (flags arrive as text; the shapes are strict)."""
    if shape is None:
        return None
    return {"integer": int, "long": int, "boolean": bool}.get(shape.members[name].type_name)


def _scalar(raw: str, kind: type | None, flag: str):
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise typer.BadParameter(f"{raw!r}: write true or false (or the flag alone for true)", param_hint=flag)
        return raw.lower() == "true"
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise typer.BadParameter(f"{raw!r} is not a whole number", param_hint=flag) from None
    return raw


def _request_from(args: list[str], shape, fields: list[str], operation: str) -> dict | None:
    """The request from ``--cli-input-json`` and the field flags (which win); None for the skeleton."""
    by_flag = {f"--{_kebab(name)}": name for name in fields}
    request: dict = {}
    flags: dict = {}
    position = 0
    while position < len(args):
        flag = args[position]
        values = []
        position += 1
        while position < len(args) and not args[position].startswith("--"):
            values.append(args[position])
            position += 1
        if flag == "--generate-cli-skeleton":
            return None
        if flag == "--cli-input-json":
            if len(values) != 1:
                raise typer.BadParameter("give one JSON document or file://PATH", param_hint=flag)
            loaded = _json_value(values[0], flag)
            if not isinstance(loaded, dict):
                raise typer.BadParameter("must be a JSON object", param_hint=flag)
            request.update(loaded)
            continue
        name = by_flag.get(flag.split("=", 1)[0])
        if name is None:
            known = ", ".join(sorted(by_flag))
            raise typer.BadParameter(f"{operation} has no option {flag}; its options: {known}", param_hint=flag)
        if "=" in flag:
            values.insert(0, flag.split("=", 1)[1])
        if not values:
            flags[name] = True  # --certify-for-marketplace
        elif len(values) > 1:
            flags[name] = values  # --customer-metadata-properties-to-remove a b c
        else:
            value = values[0]
            if value.startswith(("{", "[", "file://")):
                flags[name] = _json_value(value, flag)
            else:
                flags[name] = _scalar(value, _scalar_type(shape, name), flag)
    request.update(flags)
    return request


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
            say(f"An error occurred ({exc.code}) when calling the {operation} operation: {exc}")
        else:
            error(str(exc))
        raise typer.Exit(2 if exc.code == "ValidationException" else 1) from None
    except (ArtifactError, *also) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        # The driver's own first line (the server and why); never the statement or the URL with its password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        error(f"the registry database cannot be used: {reason}")
        raise typer.Exit(1) from None


def _operation(command: str, shape_name: str | None, call: str, identifier: str | None = None, summary: str = ""):
    """Register ``modelcrate registry COMMAND``: parse the request, call the service, print its answer."""
    operation = "".join(part.capitalize() for part in command.split("-"))

    def run(ctx: typer.Context) -> None:
        from modelcrate.registry import contract
        from modelcrate.registry.service import Registry, RegistryError

        shape = contract.service_model().shape_for(shape_name) if shape_name else None
        fields = list(shape.members) if shape else [identifier]
        try:
            request = _request_from(ctx.args, shape, fields, operation)
        except typer.BadParameter as exc:
            error(exc.format_message())
            raise typer.Exit(2) from None
        if request is None:
            skeleton = contract.skeleton(shape) if shape else {identifier: ""}
            print(json.dumps(skeleton, indent=4))
            return
        with registry_failures(operation):
            registry = Registry()
            method = getattr(registry, call)
            if shape is None:
                if not request.get(identifier):
                    raise RegistryError(f"--{_kebab(identifier)} is required")
                answer = method(request[identifier])
            else:
                answer = method(request)
        print(json.dumps(answer, indent=4, default=str))

    flags = f"--{_kebab(identifier)} VALUE" if identifier else "the request's fields as --kebab-case flags"
    run.__doc__ = (
        f"{summary}\n\nAs `aws sagemaker {command}`: {flags}, --cli-input-json JSON|file://PATH, "
        "--generate-cli-skeleton. Prints the AWS response as JSON."
    )
    registry_app.command(command, context_settings=EXTRA_ARGS)(run)


def _register_operations() -> None:
    for command, shape, call, identifier, summary in (
        (
            "create-model-package-group",
            "CreateModelPackageGroupInput",
            "create_model_package_group",
            None,
            "Create a group that versions its packages 1, 2, 3...",
        ),
        (
            "describe-model-package-group",
            None,
            "describe_model_package_group",
            "ModelPackageGroupName",
            "Describe a group.",
        ),
        (
            "list-model-package-groups",
            "ListModelPackageGroupsInput",
            "list_model_package_groups",
            None,
            "List groups (NameContains, CreationTimeAfter/Before, SortBy, SortOrder, MaxResults, NextToken).",
        ),
        (
            "delete-model-package-group",
            None,
            "delete_model_package_group",
            "ModelPackageGroupName",
            "Delete an empty group.",
        ),
        (
            "create-model-package",
            "CreateModelPackageInput",
            "create_model_package",
            None,
            "Register a package: the model is stored with its sha256, then validated when it has a ValidationProfile.",
        ),
        (
            "describe-model-package",
            None,
            "describe_model_package",
            "ModelPackageName",
            "Describe a package (GROUP/VERSION, its ARN, or an unversioned package's name).",
        ),
        (
            "list-model-packages",
            "ListModelPackagesInput",
            "list_model_packages",
            None,
            "List packages (filters, sorting and pagination as AWS).",
        ),
        (
            "update-model-package",
            "UpdateModelPackageInput",
            "update_model_package",
            None,
            "Approve or reject (with --approval-description as the reason), set metadata, lifecycle...",
        ),
        ("delete-model-package", None, "delete_model_package", "ModelPackageName", "Delete a package."),
        (
            "history",
            None,
            "history",
            "ModelPackageName",
            "Every status and lifecycle change of a package: who, when, from, to, why.",
        ),
    ):
        _operation(command, shape, call, identifier, summary)


_register_operations()


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
) -> None:
    """Package a model directory or a project's model and register it as the next version of a group.

    Fills the inference specification (image, framework and version, content types) from the project and the
    model's modelcrate.json, and attaches the training metrics recorded with the model as
    CustomerMetadataProperties. Example: modelcrate registry register my-project/ --group abalone
    """
    from modelcrate.registry.register import registration_request
    from modelcrate.registry.service import Registry

    with registry_failures():
        registry = Registry()
        # Packed inside the store, not in /tmp: recovery removes what a killed registration left.
        with registry.store.staging() as scratch:
            request = registration_request(
                source, group, description, approval_status, image, validation_input, scratch=scratch
            )
            registry.ensure_model_package_group(group)
            answer = registry.create_model_package(request)
        described = registry.describe_model_package(answer["ModelPackageArn"])
    print(json.dumps(answer, indent=4))
    say(
        f"{group} version {described['ModelPackageVersion']} "
        f"({described['ModelApprovalStatus']}, {described['ModelPackageStatus']})",
        "registered",
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
    from modelcrate.registry.service import Registry

    with registry_failures(also=(BridgeError,)):
        registry = Registry()
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
    from modelcrate.registry.service import Registry

    with registry_failures(also=(BridgeError,)):
        registry = Registry()
        described = registry.describe_model_package(package)
        with registry.store.staging() as scratch:
            artifacts = registry.verified_artifacts(package, scratch)
            tags = registry.list_tags({"ResourceArn": described["ModelPackageArn"]})["Tags"]
            answer = push_package(described, artifacts, s3_prefix, tags=tags)
    print(json.dumps(answer, indent=4))
