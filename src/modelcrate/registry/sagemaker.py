"""Take a registered model package to Amazon SageMaker.

``create_model_package_request`` turns a package as DescribeModelPackage shows it into the input of
CreateModelPackage (what ``aws sagemaker create-model-package --cli-input-json`` reads); ``push`` uploads the
package's model.tar.gz to S3 and registers the package in SageMaker. botocore's service model decides what
CreateModelPackage accepts, so a request that passes here is one the AWS CLI and boto3 accept as well.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from botocore.model import StructureShape
from botocore.validate import ParamValidator

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


def create_model_package_request(package: dict, model_data_url: str | None = None) -> dict:
    """The CreateModelPackage input for ``package`` (a DescribeModelPackage-shaped dict), checked by botocore.

    Output-only fields (ARN, status, times, version...) are dropped. ``model_data_url`` (an ``s3://`` URI)
    replaces every container's ModelDataUrl; a local one left in place is refused, as SageMaker cannot read it.
    """
    _check_approved(package)
    label = _package_label(package)
    if model_data_url is not None and not model_data_url.startswith("s3://"):
        raise BridgeError(f"model_data_url {model_data_url!r} for {label} must be an s3:// URI of a model.tar.gz")

    input_shape = _create_model_package_input()
    request = {key: copy.deepcopy(value) for key, value in package.items() if key in input_shape.members}
    if _is_versioned(package):
        # DescribeModelPackage repeats the group as ModelPackageName; CreateModelPackage takes exactly one.
        request.pop("ModelPackageName", None)
    else:
        # SageMaker's approval "does not apply to unversioned models".
        request.pop("ModelApprovalStatus", None)
    # Checked before the containers are walked: from here on, every shape is the one botocore expects.
    report = ParamValidator().validate(request, input_shape)
    if report.has_errors():
        raise BridgeError(f"{label} is not a valid CreateModelPackage request:\n{report.generate_report()}")

    containers = list(_containers(request))
    if model_data_url is not None:
        with_model_data = [container for _, container in containers if "ModelDataUrl" in container]
        if not with_model_data:
            raise BridgeError(f"{label} has no container with a ModelDataUrl to point at {model_data_url}")
        for container in with_model_data:
            container["ModelDataUrl"] = model_data_url
            # The ETag belonged to the old artifact.
            container.pop("ModelDataETag", None)
    for where, container in containers:
        url = container.get("ModelDataUrl")
        if url is not None and not url.startswith(REMOTE_MODEL_DATA_SCHEMES):
            raise BridgeError(
                f"{label}: {where}.ModelDataUrl is the local {url!r}, which SageMaker cannot read; pass the S3 "
                "location of its model.tar.gz as model_data_url, or use push to upload it there"
            )
    return request


def _artifact_location(package: dict, s3_uri_prefix: str) -> tuple[str, str]:
    """(bucket, key) of the package's model.tar.gz: ``<prefix>/<group>/<version>/`` or ``<prefix>/<name>/``."""
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
    key = "/".join(part for part in [prefix.path.strip("/"), *where, ARTIFACT_NAME] if part)
    return prefix.netloc, key


def _ensure_group(client, group: str) -> None:
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error.response["Error"]["Code"] not in MISSING_GROUP_ERROR_CODES:
            raise
        client.create_model_package_group(ModelPackageGroupName=group)


def push(package: dict, artifact_path: Path, s3_uri_prefix: str, *, client=None, s3_client=None) -> dict:
    """Upload ``artifact_path`` (the package's model.tar.gz) under ``s3_uri_prefix`` and create the package in
    SageMaker (and its group, if missing). Returns ``{"ModelPackageArn": ..., "ModelDataUrl": ...}``.

    The clients default to ``boto3.client("s3")`` and ``boto3.client("sagemaker")`` (AWS_ENDPOINT_URL and the
    usual credentials apply).
    """
    artifact_path = Path(artifact_path)
    if not artifact_path.is_file():
        raise BridgeError(f"model artifact {artifact_path} is not a file: pass the package's {ARTIFACT_NAME}")
    bucket, key = _artifact_location(package, s3_uri_prefix)
    model_data_url = f"s3://{bucket}/{key}"
    # Built before the upload, so a package SageMaker would refuse leaves nothing behind in S3.
    request = create_model_package_request(package, model_data_url)
    s3_client = s3_client or boto3.client("s3")
    client = client or boto3.client("sagemaker")

    try:
        s3_client.upload_file(str(artifact_path), bucket, key)
    except (S3UploadFailedError, BotoCoreError) as error:
        raise BridgeError(
            f"cannot upload {artifact_path} to {model_data_url}: {error}; check that the bucket exists and that "
            "these credentials may write to it"
        ) from error
    if _is_versioned(request):
        _ensure_group(client, request["ModelPackageGroupName"])
    try:
        arn = client.create_model_package(**request)["ModelPackageArn"]
    except ClientError as error:
        raise BridgeError(f"SageMaker refused CreateModelPackage for {_package_label(package)}: {error}") from error
    return {"ModelPackageArn": arn, "ModelDataUrl": model_data_url}
