"""Take a registered model package to Amazon SageMaker.

``create_model_package_request`` turns a package as DescribeModelPackage shows it into the input of
CreateModelPackage (what ``aws sagemaker create-model-package --cli-input-json`` reads); ``push`` uploads
each container's model.tar.gz to S3 and registers the package in SageMaker. botocore's service model decides what
CreateModelPackage accepts, so a request that passes here is one the AWS CLI and boto3 accept as well.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from botocore.model import StructureShape
from botocore.validate import ParamValidator

from modelcrate.archives import file_digest

# SageMaker downloads a ModelDataUrl itself: only these schemes name something it can read.
REMOTE_MODEL_DATA_SCHEMES = ("s3://", "https://")
# What describe_model_package_group answers for a group that does not exist.
MISSING_GROUP_ERROR_CODES = {"ValidationException", "ResourceNotFound"}
ARTIFACT_NAME = "model.tar.gz"


class BridgeError(ValueError):
    """A package cannot go to SageMaker as it is; the message says what is wrong, where, and what to do."""


@functools.cache
def _create_model_package_input() -> StructureShape:
    service = botocore.session.get_session().get_service_model("sagemaker")
    return service.shape_for("CreateModelPackageInput")


def _is_versioned(package: dict) -> bool:
    return bool(package.get("ModelPackageGroupName"))


def _package_label(package: dict) -> str:
    if package.get("ModelPackageArn"):
        return f"model package {package['ModelPackageArn']}"
    if _is_versioned(package):
        return f"model package {package['ModelPackageGroupName']}/{package.get('ModelPackageVersion', '?')}"
    return f"model package {package.get('ModelPackageName', '(unnamed)')}"


def _containers(request: dict) -> Iterator[tuple[str, dict]]:
    """Every container definition of ``request``, with its path in the request for messages."""
    for index, container in enumerate(request.get("InferenceSpecification", {}).get("Containers", [])):
        yield f"InferenceSpecification.Containers[{index}]", container
    for spec_index, specification in enumerate(request.get("AdditionalInferenceSpecifications", [])):
        for index, container in enumerate(specification.get("Containers", [])):
            yield f"AdditionalInferenceSpecifications[{spec_index}].Containers[{index}]", container


def _check_approved(package: dict) -> None:
    status = package.get("ModelApprovalStatus")
    # SageMaker has no approval for unversioned packages, so only a status that is there must be Approved.
    if status != "Approved" and (_is_versioned(package) or status is not None):
        shown = f"ModelApprovalStatus {status}" if status else "not approved (it has no ModelApprovalStatus)"
        raise BridgeError(
            f"{_package_label(package)} is {shown}: only an Approved package may be exported to SageMaker; "
            "approve it first (update-model-package --model-approval-status Approved)"
        )


def _model_containers(package: dict) -> list[tuple[int, str, str]]:
    """(index, name, ModelDataUrl) of each InferenceSpecification container that has a model; the name is its
    ContainerHostname, else its index."""
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    return [
        (index, container.get("ContainerHostname") or str(index), container["ModelDataUrl"])
        for index, container in enumerate(containers)
        if container.get("ModelDataUrl")
    ]


def model_data_urls(package: dict, values: list[str]) -> dict[int, str]:
    """``--model-data-url`` values as {container index: URL}: ``NAME=URL`` (ContainerHostname or index) for each
    container, or one bare URL, which only containers that hold the same model may share."""
    label = _package_label(package)
    containers = _model_containers(package)
    names = ", ".join(name for _, name, _ in containers)
    if values and not containers:
        raise BridgeError(f"{label} has no container with a ModelDataUrl to point at {values[0]}")
    bare = [value for value in values if value.startswith("s3://") or "=" not in value]
    if bare and len(values) > 1:
        raise BridgeError(f"give either one model data URL for {label} or NAME=URL for each container, not both")
    if bare:
        if len({url for _, _, url in containers}) > 1:
            raise BridgeError(
                f"the containers of {label} hold different models ({names}): give each its own URL, e.g. "
                f"--model-data-url {containers[0][1]}=s3://bucket/{containers[0][1]}/model.tar.gz"
            )
        return {index: bare[0] for index, _, _ in containers}
    by_name = {name: index for index, name, _ in containers} | {str(index): index for index, _, _ in containers}
    urls: dict[int, str] = {}
    for value in values:
        name, _, url = value.partition("=")
        if name not in by_name:
            raise BridgeError(f"{label} has no container {name} with a model; its containers: {names}")
        if by_name[name] in urls:
            raise BridgeError(f"container {name} of {label} is given more than one model data URL")
        urls[by_name[name]] = url
    return urls


def _point_at(container: dict, url: str) -> None:
    container["ModelDataUrl"] = url
    # The ETag belonged to the old artifact.
    container.pop("ModelDataETag", None)


def create_model_package_request(
    package: dict, model_data_urls: Mapping[int, str] | None = None, tags: list[dict] | None = None
) -> dict:
    """The CreateModelPackage input for ``package`` (a DescribeModelPackage-shaped dict) with its ``tags`` (as
    ListTags gives them), checked by botocore.

    Output-only fields (ARN, status, times, version...) are dropped. ``model_data_urls`` (``s3://`` URIs by the
    index of an InferenceSpecification container) replace those containers' ModelDataUrl, and that of each
    AdditionalInferenceSpecifications container holding the same model; a local one left in place is refused,
    as SageMaker cannot read it.
    """
    _check_approved(package)
    label = _package_label(package)
    model_data_urls = model_data_urls or {}
    for url in model_data_urls.values():
        if not url.startswith("s3://"):
            raise BridgeError(f"model data URL {url!r} for {label} must be an s3:// URI of a model.tar.gz")

    input_shape = _create_model_package_input()
    request = {key: copy.deepcopy(value) for key, value in package.items() if key in input_shape.members}
    if _is_versioned(package):
        # DescribeModelPackage repeats the group as ModelPackageName; CreateModelPackage takes exactly one.
        request.pop("ModelPackageName", None)
    else:
        # SageMaker's approval "does not apply to unversioned models".
        request.pop("ModelApprovalStatus", None)
    if tags:
        request["Tags"] = copy.deepcopy(tags)
    # Checked before the containers are walked: from here on, every shape is the one botocore expects.
    report = ParamValidator().validate(request, input_shape)
    if report.has_errors():
        raise BridgeError(f"{label} is not a valid CreateModelPackage request:\n{report.generate_report()}")

    primary = request.get("InferenceSpecification", {}).get("Containers", [])
    unknown = sorted(set(model_data_urls) - {index for index, _, _ in _model_containers(request)})
    if unknown:
        raise BridgeError(f"{label} has no container with a model at index {unknown[0]}")
    # The registry stores artifacts by content, so one old URL is one model, wherever it appears.
    replaced: dict[str, str] = {}
    for index, url in sorted(model_data_urls.items()):
        replaced.setdefault(primary[index]["ModelDataUrl"], url)
    for index, url in model_data_urls.items():
        _point_at(primary[index], url)
    for specification in request.get("AdditionalInferenceSpecifications", []):
        for container in specification.get("Containers", []):
            if container.get("ModelDataUrl") in replaced:
                _point_at(container, replaced[container["ModelDataUrl"]])
    for where, container in _containers(request):
        url = container.get("ModelDataUrl")
        if url is not None and not url.startswith(REMOTE_MODEL_DATA_SCHEMES):
            raise BridgeError(
                f"{label}: {where}.ModelDataUrl is the local {url!r}, which SageMaker cannot read; pass the S3 "
                "location of its model.tar.gz as a model data URL, or use push to upload it there"
            )
    return request


def _artifact_location(package: dict, s3_uri_prefix: str, sha256: str) -> tuple[str, str]:
    """(bucket, key) of a model.tar.gz of the package, by its content: ``<prefix>/<group>/<version>/<sha256>/``
    or ``<prefix>/<name>/<sha256>/``."""
    prefix = urlparse(s3_uri_prefix)
    if prefix.scheme != "s3" or not prefix.netloc:
        raise BridgeError(f"S3 prefix {s3_uri_prefix!r} is not an s3://bucket[/prefix] URI")
    if _is_versioned(package):
        version = package.get("ModelPackageVersion")
        if version is None:
            raise BridgeError(
                f"{_package_label(package)} has no ModelPackageVersion: pass the package as "
                "describe-model-package prints it"
            )
        where = [package["ModelPackageGroupName"], str(version)]
    else:
        if not package.get("ModelPackageName"):
            raise BridgeError("the package has neither ModelPackageGroupName nor ModelPackageName")
        where = [package["ModelPackageName"]]
    key = "/".join(part for part in [prefix.path.strip("/"), *where, sha256, ARTIFACT_NAME] if part)
    return prefix.netloc, key


def _ensure_group(client, group: str) -> None:
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error.response["Error"]["Code"] not in MISSING_GROUP_ERROR_CODES:
            raise
        client.create_model_package_group(ModelPackageGroupName=group)


def push(
    package: dict,
    artifacts: Mapping[int, Path],
    s3_uri_prefix: str,
    *,
    tags: list[dict] | None = None,
    client=None,
    s3_client=None,
) -> dict:
    """Upload each container's model.tar.gz (``artifacts``: by the index of its InferenceSpecification container)
    under ``s3_uri_prefix``, keyed by its sha256 (containers holding the same model share one object), and create
    the package in SageMaker (and its group, if missing), with ``tags`` (as ListTags gives them), each container
    pointing at its own model.
    Returns ``{"ModelPackageArn": ..., "Containers": [{"Index", "ContainerHostname", "ModelDataUrl", "Sha256"}]}``
    (ContainerHostname: the container's, else its index).

    The clients default to ``boto3.client("s3")`` and ``boto3.client("sagemaker")`` (AWS_ENDPOINT_URL and the
    usual credentials apply).
    """
    names = {index: name for index, name, _ in _model_containers(package)}
    uploads: dict[str, Path] = {}  # model data URL -> the file to upload there
    pushed = []
    for index, artifact_path in sorted(artifacts.items()):
        if index not in names:
            raise BridgeError(f"{_package_label(package)} has no container with a model at index {index}")
        artifact_path = Path(artifact_path)
        if not artifact_path.is_file():
            raise BridgeError(f"model artifact {artifact_path} is not a file: pass the package's {ARTIFACT_NAME}")
        sha256 = file_digest(artifact_path)
        bucket, key = _artifact_location(package, s3_uri_prefix, sha256)
        url = f"s3://{bucket}/{key}"
        uploads[url] = artifact_path
        pushed.append({"Index": index, "ContainerHostname": names[index], "ModelDataUrl": url, "Sha256": sha256})
    # Built before the upload, so a package SageMaker would refuse leaves nothing behind in S3.
    request = create_model_package_request(package, {entry["Index"]: entry["ModelDataUrl"] for entry in pushed}, tags)
    s3_client = s3_client or boto3.client("s3")
    client = client or boto3.client("sagemaker")

    for url, artifact_path in uploads.items():
        bucket, _, key = url[len("s3://") :].partition("/")
        try:
            s3_client.upload_file(str(artifact_path), bucket, key)
        except (S3UploadFailedError, BotoCoreError) as error:
            raise BridgeError(
                f"cannot upload {artifact_path} to {url}: {error}; check that the bucket exists and that "
                "these credentials may write to it"
            ) from error
    if _is_versioned(request):
        _ensure_group(client, request["ModelPackageGroupName"])
    try:
        arn = client.create_model_package(**request)["ModelPackageArn"]
    except ClientError as error:
        raise BridgeError(f"SageMaker refused CreateModelPackage for {_package_label(package)}: {error}") from error
    return {"ModelPackageArn": arn, "Containers": pushed}
