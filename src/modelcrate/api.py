"""modelcrate's Python API: the registry and model cards as a boto3-shaped ``sagemaker`` client, local serving,
batch transform, sample models and project scaffolding, for notebooks and scripts.

The command line calls the same functions: each entry point here is a thin layer over the services the
``modelcrate`` commands use, never a second implementation. Heavy modules (SQLAlchemy, botocore, the
frameworks) are imported when a function needs them, so importing this module stays cheap.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelcrate.cards.service import Cards
    from modelcrate.containers.endpoint import Endpoint
    from modelcrate.predictors import ModelMetadata
    from modelcrate.registration import Registered
    from modelcrate.registry.service import Registry
    from modelcrate.scaffold.generate import GeneratedProject
    from modelcrate.transform.job import TransformJob
    from modelcrate.transform.targets import Target

__all__ = [
    "LocalServer",
    "SageMakerClient",
    "batch_transform",
    "client",
    "init_project",
    "sample_model",
    "serve_locally",
]

REGISTRY_PREFIX = "registry:"  # a transform target naming a registered package: registry:GROUP/N or registry:GROUP
DECISIONS = ("Approved", "Rejected")


class SageMakerClient:
    """The model registry and model cards with the method names, keyword arguments and answers of boto3's
    ``sagemaker`` client, so code moves between the two by changing the client::

        sm = modelcrate.client("sagemaker", database_url="sqlite:///registry.db", artifacts="artifacts/")
        # sm = boto3.client("sagemaker")
        sm.create_model_package_group(ModelPackageGroupName="abalone")
        sm.describe_model_package(ModelPackageName="abalone/1")

    Requests are checked against botocore's service model and modelcrate's stricter rules; a refused request
    raises :class:`modelcrate.RegistryError` (its ``code`` is the AWS error code: ValidationException,
    ResourceNotFound, ConflictException), where boto3 raises ``botocore.exceptions.ClientError``. Where modelcrate
    says more than SageMaker, answers carry extra keys (a container's ``ModelDataDigests``, how a validation ran
    in ``ValidatedWith``) and ``describe_model_card`` gives ``Content`` as the JSON object rather than its text.
    ``ModelDataUrl`` may be a local path or ``file://`` besides ``s3://``. Methods that are modelcrate's own
    (``register_model``, ``create_model_card_from_package``, ``history``) have snake_case arguments.
    """

    def __init__(self, registry: Registry):
        """A client over ``registry``; :func:`modelcrate.client` makes one from a database URL and an artifact
        store."""
        self.registry = registry

    @property
    def cards(self) -> Cards:
        """The model card service on the same registry (what the card methods call)."""
        from modelcrate.cards.service import Cards

        return Cards(self.registry)

    # ---------------------------------------------------------------- model package groups

    def create_model_package_group(self, **request: Any) -> dict:
        """CreateModelPackageGroup: a group whose packages are versioned 1, 2, 3... Returns its ARN."""
        return self.registry.create_model_package_group(request)

    def describe_model_package_group(self, *, ModelPackageGroupName: str) -> dict:
        """DescribeModelPackageGroup, by name or ARN."""
        return self.registry.describe_model_package_group(ModelPackageGroupName)

    def list_model_package_groups(self, **request: Any) -> dict:
        """ListModelPackageGroups: a page of ModelPackageGroupSummaryList (NameContains, SortBy, NextToken...)."""
        return self.registry.list_model_package_groups(request)

    def delete_model_package_group(self, *, ModelPackageGroupName: str) -> dict:
        """DeleteModelPackageGroup: an empty group only."""
        return self.registry.delete_model_package_group(ModelPackageGroupName)

    # ---------------------------------------------------------------- model packages

    def create_model_package(self, **request: Any) -> dict:
        """CreateModelPackage: each container's model (``ModelDataUrl``) is stored with its sha256; a package with
        ValidationProfiles is then validated by running them as transform jobs (its ModelPackageStatus becomes
        Completed or Failed). Returns its ARN."""
        from modelcrate.validation import create_validated_package

        return create_validated_package(self.registry, request)

    def describe_model_package(self, *, ModelPackageName: str) -> dict:
        """DescribeModelPackage: GROUP/VERSION, the package's ARN, or an unversioned package's name."""
        return self.registry.describe_model_package(ModelPackageName)

    def list_model_packages(self, **request: Any) -> dict:
        """ListModelPackages: a page of ModelPackageSummaryList (ModelPackageGroupName, ModelApprovalStatus,
        NameContains, CreationTimeAfter, SortBy, NextToken...)."""
        return self.registry.list_model_packages(request)

    def update_model_package(self, **request: Any) -> dict:
        """UpdateModelPackage: approve or reject (``ApprovalDescription``, the reason, is required for both, as
        in the web console: the history must say why), change metadata, lifecycle, inference specification."""
        from modelcrate.registry.service import RegistryError

        decision = request.get("ModelApprovalStatus")
        if decision in DECISIONS and not str(request.get("ApprovalDescription") or "").strip():
            raise RegistryError(
                f"a reason is required to mark a package {decision}: give ApprovalDescription (--approval-description)"
            )
        return self.registry.update_model_package(request)

    def delete_model_package(self, *, ModelPackageName: str) -> dict:
        """DeleteModelPackage: its models are removed from the artifact store when nothing else holds them."""
        return self.registry.delete_model_package(ModelPackageName)

    # ---------------------------------------------------------------- tags

    def add_tags(self, **request: Any) -> dict:
        """AddTags to a group, package or card (ResourceArn, Tags)."""
        return self.registry.add_tags(request)

    def list_tags(self, **request: Any) -> dict:
        """ListTags of a group, package or card (ResourceArn)."""
        return self.registry.list_tags(request)

    def delete_tags(self, **request: Any) -> dict:
        """DeleteTags from a group, package or card (ResourceArn, TagKeys)."""
        return self.registry.delete_tags(request)

    # ---------------------------------------------------------------- model cards

    def create_model_card(self, **request: Any) -> dict:
        """CreateModelCard: version 1 of a card (ModelCardName, Content, ModelCardStatus). ``Content`` may be the
        JSON object itself or its text; it is checked against the model card schema. Returns its ARN."""
        return self.cards.create_model_card(request)

    def update_model_card(self, **request: Any) -> dict:
        """UpdateModelCard: new Content (a new version) or a new ModelCardStatus (no new version), one at a time."""
        return self.cards.update_model_card(request)

    def describe_model_card(self, *, ModelCardName: str, ModelCardVersion: int | None = None) -> dict:
        """DescribeModelCard: the latest version, or ``ModelCardVersion``; ``Content`` as a JSON object."""
        return self.cards.describe_model_card(ModelCardName, ModelCardVersion)

    def list_model_cards(self, **request: Any) -> dict:
        """ListModelCards: a page of ModelCardSummaries (NameContains, ModelCardStatus, SortBy, NextToken...)."""
        return self.cards.list_model_cards(request)

    def list_model_card_versions(self, *, ModelCardName: str) -> dict:
        """ListModelCardVersions: a card's versions, oldest first."""
        return self.cards.list_model_card_versions(ModelCardName)

    def delete_model_card(self, *, ModelCardName: str) -> dict:
        """DeleteModelCard: the card with all its versions."""
        return self.cards.delete_model_card(ModelCardName)

    # ---------------------------------------------------------------- modelcrate's own

    def register_model(
        self,
        source: str | Path,
        group: str,
        *,
        description: str | None = None,
        approval_status: str | None = None,
        image: str | None = None,
        validation_input: str | None = None,
        carry_card: bool = True,
    ) -> Registered:
        """Package a model directory (or a project made by :func:`init_project`) and register it as the next
        version of ``group`` (created when missing), as ``modelcrate registry register`` does: the inference
        specification is filled from the model's modelcrate.json, its training metrics become
        CustomerMetadataProperties, and ``validation_input`` (CSV: a path, ``file://`` or ``s3://``) validates
        it as a transform job. Unless ``carry_card`` is False, the new version gets a Draft card carried over
        from the card of the version before it. Returns the new package's description and that card (or None)."""
        from modelcrate.registration import register, registration_request

        # Packed inside the store, not in /tmp: recovery removes what a killed registration left.
        with self.registry.store.staging() as scratch:
            request = registration_request(
                Path(source), group, description, approval_status, image, validation_input, scratch=scratch
            )
            return register(self.registry, request, carry_card=carry_card)

    def create_model_card_from_package(self, card_name: str, package: str) -> dict:
        """A Draft card for a package version (GROUP/N or its ARN), filled from what the registry knows: the model
        overview, the package details and its training metrics. Returns its DescribeModelCard answer."""
        return self.cards.create_from_package(card_name, package)

    def history(self, package: str) -> dict:
        """Every status and lifecycle change of a package (GROUP/N or its ARN): who, when, from, to, why."""
        return self.registry.history(package)


def client(
    service_name: str = "sagemaker",
    *,
    database_url: str | None = None,
    artifacts: str | Path | None = None,
    user: str | None = None,
) -> SageMakerClient:
    """The registry as a ``sagemaker`` client, like ``boto3.client("sagemaker")``.

    ``database_url``: any SQLAlchemy URL (``sqlite:///path/registry.db``, ``postgresql+psycopg://...``); the
    schema is created or migrated on open. ``artifacts``: a directory or ``s3://bucket/prefix`` for the models.
    ``user``: the name the history records. Each defaults as the command line does: ``MODELCRATE_DATABASE_URL``,
    ``MODELCRATE_ARTIFACT_STORE``, ``MODELCRATE_USER``, else SQLite and a directory under ``MODELCRATE_HOME``
    (``~/.local/share/modelcrate``) and the login name.
    """
    from modelcrate.registry.artifacts import ArtifactStore
    from modelcrate.registry.db import open_engine
    from modelcrate.registry.service import Registry

    if service_name != "sagemaker":
        raise ValueError(f"modelcrate offers the 'sagemaker' client only, not {service_name!r}")
    engine = open_engine(database_url) if database_url else None
    store = ArtifactStore(str(artifacts)) if artifacts else None
    return SageMakerClient(Registry(engine, store, who=user))


# ---------------------------------------------------------------- serving


class LocalServer:
    """A model server for a model directory on 127.0.0.1, run by this machine's serving runtime (the one inside
    every image) in its own process. Use it as a context manager, or call :meth:`stop`."""

    def __init__(self, endpoint: Endpoint, stack: ExitStack):
        self._endpoint = endpoint
        self._stack = stack

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._endpoint.url

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._endpoint.port

    def invoke(
        self,
        body: bytes | str,
        content_type: str = "text/csv",
        *,
        accept: str | None = None,
        custom_attributes: str | None = None,
        timeout: float = 60.0,
    ) -> bytes:
        """POST ``body`` to /invocations, as ``modelcrate invoke`` does; the response body. A refused request
        raises :class:`modelcrate.InvokeError` with the status and the server's message."""
        from modelcrate.containers.invoke import invoke_endpoint

        payload = body.encode() if isinstance(body, str) else body
        return invoke_endpoint(self.url, payload, content_type, accept, custom_attributes, timeout)[0]

    def logs(self) -> str:
        """What the server has logged so far, one JSON object a line (while it runs: the log goes when it stops)."""
        return self._endpoint.logs()

    def stop(self) -> None:
        """Stop the server, letting requests in flight finish (SIGTERM); stopping twice does nothing."""
        self._stack.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def serve_locally(
    model_dir: str | Path,
    *,
    port: int | None = None,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
) -> LocalServer:
    """Start serving ``model_dir`` with the SageMaker hosting contract (/ping, /invocations,
    /execution-parameters) and return once /ping answers 200.

    ``port``: default, a free one; ``workers``: worker processes (default: the CPU count); ``env``: SAGEMAKER_*
    or MODELCRATE_* settings for the server. Raises ``ServerError`` with the reason when it cannot start::

        with modelcrate.serve_locally("model/") as server:
            server.invoke("0,0,1,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\\n")
    """
    from modelcrate.containers.endpoint import ServerSpec, running_server

    stack = ExitStack()
    endpoint = stack.enter_context(
        running_server(ServerSpec(model_dir=Path(model_dir), env=dict(env or {})), port, workers)
    )
    return LocalServer(endpoint, stack)


# ---------------------------------------------------------------- batch transform

# A keyword of transform() (and a flag of ``modelcrate transform``) -> where it goes in CreateTransformJob.
JOB_FIELDS: dict[str, tuple[str, ...]] = {
    "input": ("TransformInput", "DataSource", "S3DataSource", "S3Uri"),
    "data_type": ("TransformInput", "DataSource", "S3DataSource", "S3DataType"),
    "content_type": ("TransformInput", "ContentType"),
    "compression": ("TransformInput", "CompressionType"),
    "split_type": ("TransformInput", "SplitType"),
    "output": ("TransformOutput", "S3OutputPath"),
    "accept": ("TransformOutput", "Accept"),
    "assemble_with": ("TransformOutput", "AssembleWith"),
    "input_filter": ("DataProcessing", "InputFilter"),
    "output_filter": ("DataProcessing", "OutputFilter"),
    "join_source": ("DataProcessing", "JoinSource"),
    "strategy": ("BatchStrategy",),
    "max_payload": ("MaxPayloadInMB",),
    "max_concurrent": ("MaxConcurrentTransforms",),
    "instance_count": ("TransformResources", "InstanceCount"),
    "name": ("TransformJobName",),
}


def transform_job(
    request: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
    source: str = "the job",
) -> TransformJob:
    """A checked transform job: the CreateTransformJob ``request``, with the ``fields`` (the keywords of
    :data:`JOB_FIELDS`; None leaves a field as it is) and ``environment`` laid over it. Raises ``JobError``."""
    import copy

    from modelcrate.transform.job import TransformJob

    data = copy.deepcopy(dict(request or {}))
    for keyword, value in (fields or {}).items():
        if value is None:
            continue
        *parents, last = JOB_FIELDS[keyword]
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    if environment:
        data.setdefault("Environment", {}).update(environment)
    return TransformJob.parse(data, source)


def transform_target(target: str | Path, scratch: Path, registry: Registry | None = None) -> tuple[Target, str | None]:
    """What a job runs against, and for a registry package what it resolved to, in words: ``registry:GROUP/N``
    (``registry:GROUP``: its latest Approved version) is the package's own containers in ``registry`` (default:
    the environment's), its models unpacked into ``scratch``; anything else is a model directory, a project, a
    pipeline definition or an image. Raises ``TargetError``."""
    from modelcrate.transform.targets import TargetError, resolve_target

    target = str(target)
    if not target.startswith(REGISTRY_PREFIX):
        return resolve_target(target), None
    from modelcrate.registry.artifacts import ArtifactError
    from modelcrate.registry.service import Registry, RegistryError
    from modelcrate.validation import package_target

    identifier = target.removeprefix(REGISTRY_PREFIX)
    try:
        registry = registry or Registry()
        arn = identifier if "/" in identifier else registry.latest_approved(identifier)
        resolved, how = package_target(registry, arn, scratch)
    except (RegistryError, ArtifactError) as exc:
        raise TargetError(f"{target}: {exc}") from None
    return resolved, f"{arn}: {how}"


def batch_transform(
    target: str | Path,
    *,
    input: str | Path | None = None,
    output: str | Path | None = None,
    content_type: str | None = None,
    split_type: str | None = None,
    accept: str | None = None,
    assemble_with: str | None = None,
    strategy: str | None = None,
    job: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
    engine: str = "local",
    workers: int | None = None,
    resume: bool = False,
    registry: SageMakerClient | None = None,
) -> dict:
    """Run a batch transform job with SageMaker's semantics, as ``modelcrate transform`` does, and return its
    summary (TransformJobStatus, FailureReason, RecordsIn, Files...).

    ``target``: a model directory, a project, an image, a pipeline definition (.json) or ``registry:GROUP/N``.
    ``input``/``output``: a path, ``file://`` or ``s3://``; every input object becomes OUTPUT/<name>.out.
    ``job``: a CreateTransformJob request for any other field (DataProcessing, MaxPayloadInMB...); the keywords
    win over it. With no ``content_type``, the inputs' one extension tells it (.csv: text/csv...).
    ``registry``: the client a ``registry:`` target is read from (default: the environment's registry).
    A job that fails on some records returns TransformJobStatus "Failed" with the reason; a job that cannot
    start raises (``JobError``, ``TargetError``, ``ServerError``, ``StorageError``).
    """
    from modelcrate.transform.engine import fill_content_type, list_inputs
    from modelcrate.transform.run import run_job

    fields = {
        "input": None if input is None else str(input),
        "output": None if output is None else str(output),
        "content_type": content_type,
        "split_type": split_type,
        "accept": accept,
        "assemble_with": assemble_with,
        "strategy": strategy,
    }
    parsed = transform_job(job, fields, environment)
    items = list_inputs(parsed)
    fill_content_type(parsed, items)  # as the command line does, from the inputs' one extension
    with tempfile.TemporaryDirectory(prefix="modelcrate-transform-") as scratch:
        resolved, _ = transform_target(target, Path(scratch), registry.registry if registry else None)
        summary = run_job(parsed, resolved, items, engine=engine, workers=workers, resume=resume)
    return summary.as_dict()


# ---------------------------------------------------------------- models and projects


def sample_model(
    framework: str, output: str | Path, *, model_format: str | None = None, task: str = "regression"
) -> ModelMetadata:
    """Train an Abalone sample model offline (as ``modelcrate sample-model``) and write it with its
    modelcrate.json into ``output``, a new or empty directory. ``framework``: sklearn, xgboost or tensorflow;
    ``task``: regression (Rings) or classification (Sex). Returns the metadata written (metrics, samples...)."""
    from modelcrate.scaffold.sample_models import create_sample_model

    return create_sample_model(framework, model_format, task, Path(output))


def init_project(
    project_name: str,
    *,
    destination: str | Path | None = None,
    config: str | Path | None = None,
    force: bool = False,
    **options: Any,
) -> GeneratedProject:
    """Create a container project, as ``modelcrate init --yes`` does: the same options, as keywords
    (``framework``, ``model_format``, ``model_source``, ``model_path``, ``sample_task``, ``registry_package``,
    ``include_tests``, ``optimize``, ``with_training``, ``deploy_target``, ``instance_type``, ``region``,
    ``role_arn``, ``base_image``), then ``MODELCRATE_<OPTION>`` variables, then ``config`` (YAML or JSON), then
    defaults. ``destination`` defaults to ./PROJECT_NAME; a non-empty one is replaced only with ``force``.
    Returns the project's path, framework version and warnings. Raises ``OptionsError``."""
    from modelcrate.scaffold.generate import generate
    from modelcrate.scaffold.options import resolve

    flags = {**options, "project_name": project_name, "destination": destination}
    resolved, _ = resolve(flags, config_file=Path(config) if config else None)
    return generate(resolved, force=force)
