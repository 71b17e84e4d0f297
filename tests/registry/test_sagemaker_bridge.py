"""The SageMaker bridge: CreateModelPackage requests checked by botocore, and pushes to moto's S3 + SageMaker
server on 127.0.0.1."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from modelcrate.archives import file_digest
from modelcrate.registry.sagemaker import BridgeError, create_model_package_request, model_data_urls, push

BUCKET = "models"
S3_MODEL = "s3://models/abalone/7/model.tar.gz"
READ_ONLY_FIELDS = {
    "ModelPackageArn",
    "ModelPackageVersion",
    "CreationTime",
    "ModelPackageStatus",
    "ModelPackageStatusDetails",
    "CreatedBy",
    "LastModifiedTime",
    "LastModifiedBy",
    "ApprovalDescription",
}


def metrics(name: str) -> dict:
    return {"ContentType": "application/json", "S3Uri": f"s3://models/abalone/7/{name}.json"}


def described_package(model_data_url: str = "file:///var/lib/modelcrate/artifacts/ab12.tar.gz") -> dict:
    """Version 7 of group abalone as DescribeModelPackage shows it, with every field CreateModelPackage takes."""
    container = {
        "ContainerHostname": "abalone",
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/abalone:1.0",
        "ImageDigest": "sha256:" + "a" * 64,
        "ModelDataUrl": model_data_url,
        "ModelDataETag": "etag-of-the-registry-copy",
        "Environment": {"MODELCRATE_WORKERS": "2"},
        "ModelInput": {"DataInputConfig": '{"input": [1, 8]}'},
        "Framework": "XGBOOST",
        "FrameworkVersion": "2.1.3",
        "NearestModelName": "xgboost",
    }
    return {
        "ModelPackageGroupName": "abalone",
        "ModelPackageVersion": 7,
        "ModelPackageName": "abalone",
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:000000000000:model-package/abalone/7",
        "ModelPackageDescription": "Abalone rings from shell measurements",
        "CreationTime": datetime(2025, 11, 1, tzinfo=timezone.utc),
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [{"Name": "csv", "Status": "Completed"}]},
        "CreatedBy": {"UserProfileName": "alice"},
        "LastModifiedTime": "2025-11-02T10:00:00+00:00",
        "ApprovalDescription": "beats version 6",
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
        },
        "AdditionalInferenceSpecifications": [
            {
                "Name": "graviton",
                "Containers": [{**container, "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/abalone:arm"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            }
        ],
        "ValidationSpecification": {
            "ValidationRole": "arn:aws:iam::000000000000:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "csv",
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {
                                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://models/validation/"}
                            },
                            "ContentType": "text/csv",
                        },
                        "TransformOutput": {"S3OutputPath": "s3://models/validation-out/"},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    },
                }
            ],
        },
        "MetadataProperties": {"CommitId": "4f2a9c1", "Repository": "git@example.com:ml/abalone.git"},
        "ModelMetrics": {
            "ModelQuality": {"Statistics": metrics("quality")},
            "ModelDataQuality": {"Statistics": metrics("data-statistics"), "Constraints": metrics("data-constraints")},
            "Bias": {"Report": metrics("bias")},
            "Explainability": {"Report": metrics("explainability")},
        },
        "DriftCheckBaselines": {"ModelQuality": {"Statistics": metrics("quality")}},
        "CustomerMetadataProperties": {"team": "shellfish"},
        "Domain": "MACHINE_LEARNING",
        "Task": "REGRESSION",
        "SamplePayloadUrl": "s3://models/abalone/7/payload.tar.gz",
        "SourceUri": "s3://models/abalone/7/source.tar.gz",
        "ModelLifeCycle": {"Stage": "Production", "StageStatus": "Approved", "StageDescription": "serving"},
        "SkipModelValidation": "None",
        "Tags": [{"Key": "owner", "Value": "alice"}],
    }


def unversioned_package() -> dict:
    package = described_package()
    for field in ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "ModelApprovalStatus"):
        del package[field]
    return {**package, "ModelPackageName": "abalone-marketplace", "CertifyForMarketplace": False}


def botocore_report(request: dict) -> str:
    service = botocore.session.get_session().get_service_model("sagemaker")
    return ParamValidator().validate(request, service.shape_for("CreateModelPackageInput")).generate_report()


@pytest.fixture(scope="module")
def aws(aws_environment):
    """(s3, sagemaker) clients of our own for checking what the bridge's default clients did."""
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    return s3, sagemaker


@pytest.fixture
def artifact(tmp_path) -> Path:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        content = b'{"learner": "abalone"}'
        member = tarfile.TarInfo("model.json")
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))
    return path


def test_export_of_a_full_package_is_a_create_model_package_input_botocore_accepts():
    package = described_package()
    original = copy.deepcopy(package)

    request = create_model_package_request(package, {0: S3_MODEL})

    assert botocore_report(request) == ""
    assert package == original
    assert READ_ONLY_FIELDS.isdisjoint(request)
    assert "ModelPackageName" not in request  # versioned: the group alone names it
    containers = [
        *request["InferenceSpecification"]["Containers"],
        *request["AdditionalInferenceSpecifications"][0]["Containers"],
    ]
    assert [c["ModelDataUrl"] for c in containers] == [S3_MODEL, S3_MODEL]
    assert all("ModelDataETag" not in c for c in containers)
    untouched = (
        set(original)
        - READ_ONLY_FIELDS
        - {"ModelPackageName", "InferenceSpecification", "AdditionalInferenceSpecifications"}
    )
    assert {key: request[key] for key in untouched} == {key: original[key] for key in untouched}
    json.dumps(request)  # what `aws sagemaker create-model-package --cli-input-json` reads


def test_a_package_already_on_s3_exports_as_it_is():
    request = create_model_package_request(described_package(model_data_url=S3_MODEL))
    assert request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == S3_MODEL
    assert botocore_report(request) == ""


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected", None])
def test_only_an_approved_package_is_exported(status):
    package = described_package()
    if status is None:
        del package["ModelApprovalStatus"]
    else:
        package["ModelApprovalStatus"] = status
    with pytest.raises(BridgeError, match="only an Approved package") as refusal:
        create_model_package_request(package, {0: S3_MODEL})
    assert str(status or "no ModelApprovalStatus") in str(refusal.value)
    assert "model-package/abalone/7" in str(refusal.value)


@pytest.mark.parametrize(
    "local", ["file:///var/lib/modelcrate/artifacts/ab12.tar.gz", "/srv/models/model.tar.gz", "model.tar.gz"]
)
def test_a_local_model_data_url_is_refused_without_an_s3_replacement(local):
    with pytest.raises(BridgeError) as refusal:
        create_model_package_request(described_package(model_data_url=local))
    message = str(refusal.value)
    assert f"InferenceSpecification.Containers[0].ModelDataUrl is the local {local!r}" in message
    assert "model data URL" in message and "push" in message


def test_the_replacement_must_be_an_s3_uri():
    with pytest.raises(BridgeError, match="must be an s3:// URI"):
        create_model_package_request(described_package(), {0: "/tmp/model.tar.gz"})


def test_a_request_botocore_rejects_shows_botocore_report():
    package = described_package()
    package["InferenceSpecification"]["Containers"][0]["Environment"] = {"MODELCRATE_WORKERS": 2}
    with pytest.raises(BridgeError, match="not a valid CreateModelPackage request") as refusal:
        create_model_package_request(package, {0: S3_MODEL})
    same_breakage = create_model_package_request(described_package(), {0: S3_MODEL})
    same_breakage["InferenceSpecification"]["Containers"][0]["Environment"] = {"MODELCRATE_WORKERS": 2}
    report = botocore_report(same_breakage)
    assert "Invalid type for parameter InferenceSpecification.Containers[0].Environment.MODELCRATE_WORKERS" in report
    assert report in str(refusal.value)


def three_containers() -> dict:
    """An Autopilot-shaped package: features, algorithm and labels, each with its own model (by URL)."""
    package = described_package()
    container = package["InferenceSpecification"]["Containers"][0]
    package["InferenceSpecification"]["Containers"] = [
        {**container, "ContainerHostname": name, "ModelDataUrl": f"file:///registry/sha256/{name}/model.tar.gz"}
        for name in ("features", "algorithm", "labels")
    ]
    package["AdditionalInferenceSpecifications"][0]["Containers"][0]["ModelDataUrl"] = (
        "file:///registry/sha256/algorithm/model.tar.gz"
    )
    return package


def test_each_container_gets_its_own_model_data_url_by_name_or_index():
    package = three_containers()
    urls = model_data_urls(package, ["features=s3://m/f.tar.gz", "1=s3://m/a=1/a.tar.gz", "labels=s3://m/l.tar.gz"])
    assert urls == {0: "s3://m/f.tar.gz", 1: "s3://m/a=1/a.tar.gz", 2: "s3://m/l.tar.gz"}

    request = create_model_package_request(package, urls)

    assert [c["ModelDataUrl"] for c in request["InferenceSpecification"]["Containers"]] == list(urls.values())
    # The Graviton variant of the algorithm holds the algorithm's model, so it follows it.
    assert request["AdditionalInferenceSpecifications"][0]["Containers"][0]["ModelDataUrl"] == "s3://m/a=1/a.tar.gz"
    assert botocore_report(request) == ""


def test_one_url_for_containers_holding_different_models_is_refused():
    with pytest.raises(BridgeError, match=r"hold different models \(features, algorithm, labels\)") as refusal:
        model_data_urls(three_containers(), [S3_MODEL])
    assert "--model-data-url features=s3://" in str(refusal.value)
    shared = three_containers()
    for container in shared["InferenceSpecification"]["Containers"]:
        container["ModelDataUrl"] = "file:///registry/sha256/same/model.tar.gz"
    assert model_data_urls(shared, [S3_MODEL]) == {0: S3_MODEL, 1: S3_MODEL, 2: S3_MODEL}


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (["scaler=s3://m/s.tar.gz"], "has no container scaler with a model; its containers: features, algorithm"),
        (["3=s3://m/s.tar.gz"], "has no container 3 with a model"),
        (["features=s3://m/f.tar.gz", "0=s3://m/g.tar.gz"], "container 0 of .* more than one model data URL"),
        ([S3_MODEL, "labels=s3://m/l.tar.gz"], "not both"),
    ],
)
def test_model_data_url_mistakes_are_named(values, problem):
    with pytest.raises(BridgeError, match=problem):
        model_data_urls(three_containers(), values)


def test_a_container_left_without_an_s3_url_is_refused():
    with pytest.raises(BridgeError, match=r"Containers\[2\].ModelDataUrl is the local"):
        create_model_package_request(three_containers(), {0: "s3://m/f.tar.gz", 1: "s3://m/a.tar.gz"})


def test_push_uploads_the_artifact_and_registers_versions_in_sagemaker(aws, artifact):
    s3, sagemaker = aws
    digest = file_digest(artifact)
    first = push(described_package(), {0: artifact}, f"s3://{BUCKET}/registry/")
    url = f"s3://{BUCKET}/registry/abalone/7/{digest}/model.tar.gz"
    assert first["Containers"] == [{"Index": 0, "ContainerHostname": "abalone", "ModelDataUrl": url, "Sha256": digest}]
    key = f"registry/abalone/7/{digest}/model.tar.gz"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == artifact.read_bytes()

    described = sagemaker.describe_model_package(ModelPackageName=first["ModelPackageArn"])
    assert described["ModelPackageGroupName"] == "abalone"
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == url
    assert described["AdditionalInferenceSpecifications"][0]["Containers"][0]["ModelDataUrl"] == url
    assert described["CustomerMetadataProperties"] == {"team": "shellfish"}
    assert sagemaker.describe_model_package_group(ModelPackageGroupName="abalone")["ModelPackageGroupName"] == "abalone"

    # The group exists now; the next version joins it.
    second = push(
        {**described_package(), "ModelPackageVersion": 8},
        {0: artifact},
        f"s3://{BUCKET}/registry",
        client=sagemaker,
        s3_client=s3,
    )
    assert second["Containers"][0]["ModelDataUrl"] == f"s3://{BUCKET}/registry/abalone/8/{digest}/model.tar.gz"
    listed = sagemaker.list_model_packages(ModelPackageGroupName="abalone")["ModelPackageSummaryList"]
    assert sorted(p["ModelPackageArn"] for p in listed) == sorted([first["ModelPackageArn"], second["ModelPackageArn"]])


def test_containers_holding_the_same_model_share_one_object(aws, artifact, tmp_path):
    s3, sagemaker = aws
    other = tmp_path / "other" / "model.tar.gz"
    other.parent.mkdir()
    other.write_bytes(artifact.read_bytes() + b"\0")  # another model: other bytes
    package = {**three_containers(), "ModelPackageGroupName": "shared"}
    pushed = push(package, {0: artifact, 1: other, 2: artifact}, f"s3://{BUCKET}")
    urls = [container["ModelDataUrl"] for container in pushed["Containers"]]
    assert urls[0] == urls[2] != urls[1]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="shared/7/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted({url.removeprefix(f"s3://{BUCKET}/") for url in urls})
    landed = sagemaker.describe_model_package(ModelPackageName=pushed["ModelPackageArn"])
    assert [c["ModelDataUrl"] for c in landed["InferenceSpecification"]["Containers"]] == urls


def test_push_of_an_unversioned_package(aws, artifact):
    s3, sagemaker = aws
    pushed = push(unversioned_package(), {0: artifact}, f"s3://{BUCKET}")
    key = f"abalone-marketplace/{file_digest(artifact)}/model.tar.gz"
    assert pushed["Containers"][0]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == artifact.read_bytes()
    described = sagemaker.describe_model_package(ModelPackageName="abalone-marketplace")
    assert described["ModelPackageArn"] == pushed["ModelPackageArn"]
    assert "ModelPackageGroupName" not in described


def test_push_to_a_missing_bucket_says_so_and_registers_nothing(aws, artifact):
    _, sagemaker = aws
    package = {**described_package(), "ModelPackageGroupName": "no-bucket"}
    where = r"s3://no-such-bucket/no-bucket/7/[0-9a-f]{64}/model.tar.gz"
    with pytest.raises(BridgeError, match=rf"cannot upload .* to {where}") as refusal:
        push(package, {0: artifact}, "s3://no-such-bucket")
    assert "NoSuchBucket" in str(refusal.value)
    listed = sagemaker.list_model_packages(ModelPackageGroupName="no-bucket")["ModelPackageSummaryList"]
    assert listed == []


def test_push_refuses_before_uploading_anything(aws, artifact):
    s3, _ = aws
    with pytest.raises(BridgeError, match="ModelApprovalStatus Rejected"):
        push(
            {**described_package(), "ModelApprovalStatus": "Rejected", "ModelPackageGroupName": "rejected"},
            {0: artifact},
            f"s3://{BUCKET}",
        )
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="rejected/")


def test_a_model_data_url_for_a_package_without_models_is_refused():
    package = described_package()
    del package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    with pytest.raises(BridgeError, match="has no container with a ModelDataUrl to point at s3://"):
        model_data_urls(package, [S3_MODEL])
