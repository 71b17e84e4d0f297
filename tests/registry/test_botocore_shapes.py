"""Requests checked against botocore's sagemaker service model: every constraint, modelcrate's own rules,
what it refuses and why, versioned vs unversioned, messages, skeletons."""

import copy
import re
from datetime import datetime, timezone

import botocore
import botocore.session
import pytest
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

from modelcrate.registry import contract
from modelcrate.registry.contract import (
    HONOURED,
    MAX_ENVIRONMENT_VARIABLE,
    REFUSED,
    ShapeError,
    input_shape,
    parse,
    service_model,
)
from modelcrate.registry.service import RegistryError
from tests.registry.conftest import package_request

SERVICE = service_model()
INPUTS = [
    "CreateModelPackageGroup",
    "CreateModelPackage",
    "UpdateModelPackage",
    "ListModelPackages",
    "ListModelPackageGroups",
]
DIGEST = "sha256:" + "0123456789abcdef" * 4
S3 = "s3://models/churn"


def metrics(name: str) -> dict:
    return {"ContentType": "application/json", "ContentDigest": DIGEST, "S3Uri": f"{S3}/{name}.json"}


CONTAINER = {
    "ContainerHostname": "main",
    "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1",
    "ImageDigest": DIGEST,
    "ModelDataUrl": f"{S3}/model.tar.gz",
    "ProductId": "churn-1",
    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
    "ModelInput": {"DataInputConfig": '{"input": [1, 8]}'},
    "Framework": "XGBOOST",
    "FrameworkVersion": "2.1.3",
    "NearestModelName": "xgboost",
}
INFERENCE = {
    "Containers": [CONTAINER],
    "SupportedTransformInstanceTypes": ["ml.m5.xlarge"],
    "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["application/json"],
}
TRANSFORM_JOB = {
    "MaxConcurrentTransforms": 2,
    "MaxPayloadInMB": 6,
    "BatchStrategy": "MultiRecord",
    "Environment": {"MODE": "batch"},
    "TransformInput": {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{S3}/validation/input"}},
        "ContentType": "text/csv",
        "CompressionType": "None",
        "SplitType": "Line",
    },
    "TransformOutput": {
        "S3OutputPath": f"{S3}/validation/output",
        "Accept": "text/csv",
        "AssembleWith": "Line",
        "KmsKeyId": "alias/models",
    },
    "TransformResources": {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeKmsKeyId": "alias/volumes",
        "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-470",
    },
}
PROFILE = {"ProfileName": "batch", "TransformJobDefinition": TRANSFORM_JOB}
ALGORITHM = {"ModelDataUrl": f"{S3}/algorithm.tar.gz", "AlgorithmName": "xgboost-churn"}
TAG = {"Key": "team", "Value": "growth"}
ADDITIONAL = {"Name": "gpu", "Description": "The same model on GPU instances.", **INFERENCE}
# A versioned package with every field "CreateModelPackage" has.
FULL = {
    "ModelPackageGroupName": "churn",
    "ModelPackageDescription": "Churn model, trained on 2024 data.",
    "InferenceSpecification": INFERENCE,
    "ValidationSpecification": {
        "ValidationRole": "arn:aws:iam::123456789012:role/ModelValidation",
        "ValidationProfiles": [PROFILE],
    },
    "SourceAlgorithmSpecification": {"SourceAlgorithms": [ALGORITHM]},
    "Tags": [TAG],
    "ModelApprovalStatus": "Approved",
    "MetadataProperties": {
        "CommitId": "4f2a9c1",
        "Repository": "https://git.example.com/churn",
        "GeneratedBy": "ci",
        "ProjectId": "p-1",
    },
    "ModelMetrics": {
        "ModelQuality": {"Statistics": metrics("quality-statistics"), "Constraints": metrics("quality-constraints")},
        "ModelDataQuality": {"Statistics": metrics("data-statistics"), "Constraints": metrics("data-constraints")},
        "Bias": {
            "Report": metrics("bias"),
            "PreTrainingReport": metrics("bias-pre"),
            "PostTrainingReport": metrics("bias-post"),
        },
        "Explainability": {"Report": metrics("explainability")},
    },
    "ClientToken": "register-churn-1",
    "Domain": "MACHINE_LEARNING",
    "Task": "CLASSIFICATION",
    "SamplePayloadUrl": f"{S3}/payload.tar.gz",
    "CustomerMetadataProperties": {"owner": "growth team"},
    "DriftCheckBaselines": {
        "Bias": {
            "ConfigFile": metrics("bias-config"),
            "PreTrainingConstraints": metrics("bias-pre-constraints"),
            "PostTrainingConstraints": metrics("bias-post-constraints"),
        },
        "Explainability": {"Constraints": metrics("explainability-constraints"), "ConfigFile": metrics("shap")},
        "ModelQuality": {"Statistics": metrics("drift-statistics"), "Constraints": metrics("drift-constraints")},
        "ModelDataQuality": {"Statistics": metrics("drift-data-statistics"), "Constraints": metrics("drift-data")},
    },
    "AdditionalInferenceSpecifications": [ADDITIONAL],
    "SkipModelValidation": "None",
    "SourceUri": "s3://models/churn/source",
    "ModelLifeCycle": {"Stage": "Staging", "StageStatus": "InProgress", "StageDescription": "Canary at 5%"},
}
VERSIONED_ONLY = ("ModelPackageGroupName", "ModelApprovalStatus")
UNVERSIONED = {key: value for key, value in FULL.items() if key not in VERSIONED_ONLY} | {
    "ModelPackageName": "churn-marketplace",
    "CertifyForMarketplace": False,
}
GROUP = {"ModelPackageGroupName": "churn", "ModelPackageGroupDescription": "Churn models", "Tags": [TAG]}
UPDATE = {
    "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
    "ModelApprovalStatus": "Approved",
    "ApprovalDescription": "Passed the canary.",
    "CustomerMetadataProperties": {"reviewer": "dana"},
    "CustomerMetadataPropertiesToRemove": ["owner"],
    "AdditionalInferenceSpecificationsToAdd": [ADDITIONAL | {"Name": "arm"}],
    "InferenceSpecification": INFERENCE,
    "SourceUri": "s3://models/churn/source-2",
    "ModelLifeCycle": {"Stage": "Production", "StageStatus": "Approved"},
    "ClientToken": "approve-churn-3",
}
LIST = {
    "CreationTimeAfter": datetime(2024, 1, 1, tzinfo=timezone.utc),
    "CreationTimeBefore": datetime(2025, 1, 1, tzinfo=timezone.utc),
    "MaxResults": 10,
    "NameContains": "churn",
    "ModelApprovalStatus": "Approved",
    "ModelPackageGroupName": "churn",
    "ModelPackageType": "Versioned",
    "NextToken": "opaque",
    "SortBy": "CreationTime",
    "SortOrder": "Descending",
}
LIST_GROUPS = {key: LIST[key] for key in HONOURED["ListModelPackageGroupsInput"]}
FULL_REQUESTS = [
    pytest.param("CreateModelPackage", FULL, id="versioned"),
    pytest.param("CreateModelPackage", UNVERSIONED, id="unversioned"),
    pytest.param("CreateModelPackageGroup", GROUP, id="group"),
    pytest.param("UpdateModelPackage", UPDATE, id="update"),
    pytest.param("ListModelPackages", LIST, id="list"),
    pytest.param("ListModelPackageGroups", LIST_GROUPS, id="list-groups"),
]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def _steps(path: str) -> list[str | int]:
    """``A.B[0].C`` as the keys and indexes to follow."""
    return [int(step) if step.isdigit() else step for step in re.findall(r"[^.\[\]]+", path)]


def _copy(value):
    """A deep copy that shares nothing (copy.deepcopy would keep CONTAINER shared between its two places)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _with(request: dict, path: str, value) -> dict:
    """A copy of ``request`` with ``value`` at ``path`` (MISSING removes it)."""
    changed = _copy(request)
    *parents, last = _steps(path)
    target = changed
    for step in parents:
        target = target[step]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value
    return changed


def case(path: str, value, rule: str, at: str | None = None):
    """One bad value at ``path``; the problem is reported at ``at`` (default: path) and says ``rule``."""
    shown = repr(value) if len(repr(value)) <= 30 else f"<{type(value).__name__} of {len(value)}>"
    return pytest.param(path, value, rule, at or path, id=f"{path}={shown}")


def problems_of(model_class, request) -> list[str]:
    with pytest.raises(ShapeError) as caught:
        parse(model_class, request)
    return caught.value.problems


def assert_one_problem(model_class, request, at: str, rule: str) -> None:
    problems = problems_of(model_class, request)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{at}: "), problems
    assert rule in problems[0], problems


NAME_RULE = "letters, digits and hyphens, starting and ending with a letter or digit"
TAG_RULE = "letters, digits, spaces and _ . : / = + - @"
LOCATION_RULE = "s3://bucket/key, file:///path or a local path"
INSTANCE_TYPE_RULE = "is not a choice here (allowed: one of botocore's"
ENVIRONMENT_RULE = "letters, digits and underscores, not starting with a digit"
C = "InferenceSpecification.Containers[0]"
TJ = "ValidationSpecification.ValidationProfiles[0].TransformJobDefinition"
S3_SOURCE = f"{TJ}.TransformInput.DataSource.S3DataSource"
ALGORITHM_PATH = "SourceAlgorithmSpecification.SourceAlgorithms[0]"
A = "AdditionalInferenceSpecifications[0]"
METRICS_SOURCES = [
    "ModelMetrics.ModelQuality.Statistics",
    "ModelMetrics.ModelQuality.Constraints",
    "ModelMetrics.ModelDataQuality.Statistics",
    "ModelMetrics.ModelDataQuality.Constraints",
    "ModelMetrics.Bias.Report",
    "ModelMetrics.Bias.PreTrainingReport",
    "ModelMetrics.Bias.PostTrainingReport",
    "ModelMetrics.Explainability.Report",
    "DriftCheckBaselines.Bias.PreTrainingConstraints",
    "DriftCheckBaselines.Bias.PostTrainingConstraints",
    "DriftCheckBaselines.Explainability.Constraints",
    "DriftCheckBaselines.ModelQuality.Statistics",
    "DriftCheckBaselines.ModelQuality.Constraints",
    "DriftCheckBaselines.ModelDataQuality.Statistics",
    "DriftCheckBaselines.ModelDataQuality.Constraints",
]
FILE_SOURCES = ["DriftCheckBaselines.Bias.ConfigFile", "DriftCheckBaselines.Explainability.ConfigFile"]

CREATE_CASES = [
    case("ModelPackageGroupName", "", "has 0 characters (allowed: at least 1)"),
    case("ModelPackageGroupName", "g" * 64, "has 64 characters (allowed: at most 63)"),
    case("ModelPackageGroupName", "churn_model", f"'churn_model' has the wrong form (allowed: {NAME_RULE})"),
    case("ModelPackageGroupName", "-churn", NAME_RULE),
    case("ModelPackageGroupName", "model-package-group/churn_1", NAME_RULE),
    case(
        "ModelPackageGroupName",
        "arn:aws:sagemaker:us-east-1:42:model-package-group/churn",
        "model-package-group/<name>",
    ),
    case("ModelPackageGroupName", 7, "is 7 (allowed: a string)"),
    case("ModelPackageDescription", "d" * 1025, "has 1025 characters (allowed: at most 1024)"),
    case("ModelPackageDescription", "two\nlines", "no tabs, newlines or other control characters"),
    case("InferenceSpecification", [], "is [] (allowed: an object)"),
    case("InferenceSpecification.Containers", MISSING, "required"),
    case("InferenceSpecification.Containers", [], "has 0 items (allowed: at least 1)"),
    case("InferenceSpecification.Containers", [CONTAINER] * 16, "has 16 items (allowed: at most 15)"),
    case(f"{C}.ContainerHostname", "h" * 64, "at most 63"),
    case(f"{C}.ContainerHostname", "main-", NAME_RULE),
    case(f"{C}.Image", MISSING, "required"),
    case(f"{C}.Image", "", "has the wrong form (allowed: no spaces)"),
    case(f"{C}.Image", "i" * 256, "at most 255"),
    case(f"{C}.Image", "churn latest", "no spaces"),
    case(f"{C}.ImageDigest", "md5:0123", "sha256: and 64 hexadecimal digits"),
    case(f"{C}.ModelDataUrl", f"{S3}/model.zip", "is not a .tar.gz file (allowed: a single .tar.gz as"),
    case(f"{C}.ModelDataUrl", "s3://models", LOCATION_RULE),
    case(f"{C}.ModelDataUrl", "https://example.com/model.tar.gz", LOCATION_RULE),
    case(f"{C}.ModelDataUrl", "", LOCATION_RULE),
    case(f"{C}.ModelDataUrl", "s3://models/" + "m" * 1010 + ".tar.gz", "at most 1024"),
    case(f"{C}.ProductId", "-churn", NAME_RULE),
    case(f"{C}.ProductId", "p" * 257, "at most 256"),
    case(
        f"{C}.Environment",
        {"1BAD": "x"},
        f"key '1BAD' has the wrong form (allowed: {ENVIRONMENT_RULE})",
        at=f"{C}.Environment['1BAD']",
    ),
    case(
        f"{C}.Environment",
        {"K" * 1025: "x"},
        "key has 1025 characters (allowed: at most 1024)",
        at=f"{C}.Environment['{'K' * 37}...']",  # long keys are shortened in paths
    ),
    case(f"{C}.Environment.MODE", "v" * 1025, "at most 1024", at=f"{C}.Environment['MODE']"),
    case(f"{C}.Environment.MODE", 1, "is 1 (allowed: a string)", at=f"{C}.Environment['MODE']"),
    case(f"{C}.Environment", {f"V{i}": "x" for i in range(17)}, "has 17 entries (allowed: at most 16"),
    case(f"{C}.ModelInput", "{}", "allowed: an object"),
    case(f"{C}.ModelInput.DataInputConfig", MISSING, "required"),
    case(f"{C}.ModelInput.DataInputConfig", "", "at least 1"),
    case(f"{C}.ModelInput.DataInputConfig", "x" * 16385, "at most 16384"),
    case(f"{C}.Framework", 1, "allowed: a string"),
    case(f"{C}.FrameworkVersion", "1.", "has 2 characters (allowed: at least 3)"),
    case(f"{C}.FrameworkVersion", "1.0.0.0.0.0", "at most 10"),
    case(f"{C}.FrameworkVersion", "v1.0", "a digit, a dot, then letters, digits, dots or hyphens"),
    case(f"{C}.NearestModelName", ["xgboost"], "allowed: a string"),
    case(
        f"{C}.ModelDataSource", {}, "is not supported by modelcrate: modelcrate stores one model.tar.gz per container"
    ),
    case("InferenceSpecification.SupportedTransformInstanceTypes", [], "at least 1"),
    case("InferenceSpecification.SupportedTransformInstanceTypes", "ml.m5.xlarge", "allowed: a list"),
    case("InferenceSpecification.SupportedTransformInstanceTypes[0]", "m5.xlarge", INSTANCE_TYPE_RULE),
    case("InferenceSpecification.SupportedRealtimeInferenceInstanceTypes[0]", "ml.m5", INSTANCE_TYPE_RULE),
    case("InferenceSpecification.SupportedContentTypes[0]", "text/" + "c" * 252, "at most 256"),
    case("InferenceSpecification.SupportedResponseMIMETypes[0]", "json", "a MIME type such as text/csv"),
    case("InferenceSpecification.SupportedResponseMIMETypes[0]", "text/" + "c" * 1020, "at most 1024"),
    case("ValidationSpecification.ValidationRole", MISSING, "required"),
    case("ValidationSpecification.ValidationRole", "arn:aws:iam::1:r/x", "has 18 characters (allowed: at least 20)"),
    case("ValidationSpecification.ValidationRole", "arn:aws:iam::123:role/Validation", "an IAM role ARN"),
    case("ValidationSpecification.ValidationRole", "arn:aws:iam::123456789012:role/" + "r" * 2020, "at most 2048"),
    case("ValidationSpecification.ValidationProfiles", MISSING, "required"),
    case("ValidationSpecification.ValidationProfiles", [PROFILE, PROFILE], "has 2 items (allowed: at most 1)"),
    case("ValidationSpecification.ValidationProfiles[0].ProfileName", MISSING, "required"),
    case("ValidationSpecification.ValidationProfiles[0].ProfileName", "batch job", NAME_RULE),
    case("ValidationSpecification.ValidationProfiles[0].TransformJobDefinition", MISSING, "required"),
    case(f"{TJ}.MaxConcurrentTransforms", -1, "is -1 (allowed: at least 0)"),
    case(f"{TJ}.MaxConcurrentTransforms", "2", "is '2' (allowed: an integer)"),
    case(f"{TJ}.MaxPayloadInMB", 101, "is 101 (allowed: at most 100)"),
    case(f"{TJ}.MaxPayloadInMB", -1, "at least 0"),
    case(f"{TJ}.MaxPayloadInMB", 6.5, "allowed: an integer"),
    case(f"{TJ}.BatchStrategy", "Multi", "'Multi' is not a choice here (allowed: 'MultiRecord' or 'SingleRecord')"),
    case(f"{TJ}.Environment", {f"V{i}": "x" for i in range(17)}, "has 17 entries (allowed: at most 16)"),
    case(f"{TJ}.Environment", {"1X": "x"}, ENVIRONMENT_RULE, at=f"{TJ}.Environment['1X']"),
    case(f"{TJ}.Environment.MODE", "v" * 10241, "at most 10240", at=f"{TJ}.Environment['MODE']"),
    case(f"{TJ}.TransformInput", MISSING, "required"),
    case(f"{TJ}.TransformInput.DataSource", MISSING, "required"),
    case(f"{TJ}.TransformInput.DataSource.S3DataSource", MISSING, "required"),
    case(f"{S3_SOURCE}.S3DataType", MISSING, "required"),
    case(f"{S3_SOURCE}.S3DataType", "Prefix", "'ManifestFile', 'S3Prefix', 'AugmentedManifestFile' or 'Converse'"),
    case(f"{S3_SOURCE}.S3Uri", MISSING, "required"),
    case(f"{S3_SOURCE}.S3Uri", "ftp://data/input", f"is not a location modelcrate reads (allowed: {LOCATION_RULE})"),
    case(f"{TJ}.TransformInput.ContentType", "t" * 257, "at most 256"),
    case(f"{TJ}.TransformInput.CompressionType", "Zip", "'None' or 'Gzip'"),
    case(f"{TJ}.TransformInput.SplitType", "Tab", "'None', 'Line', 'RecordIO' or 'TFRecord'"),
    case(f"{TJ}.TransformOutput", MISSING, "required"),
    case(f"{TJ}.TransformOutput.S3OutputPath", MISSING, "required"),
    case(f"{TJ}.TransformOutput.S3OutputPath", "s3://", LOCATION_RULE),
    case(f"{TJ}.TransformOutput.S3OutputPath", "s3://m/" + "o" * 1018, "at most 1024"),
    case(f"{TJ}.TransformOutput.Accept", "a" * 257, "at most 256"),
    case(f"{TJ}.TransformOutput.AssembleWith", "Record", "'None' or 'Line'"),
    case(f"{TJ}.TransformOutput.KmsKeyId", "key id!", "a KMS key id, alias or ARN"),
    case(f"{TJ}.TransformOutput.KmsKeyId", "k" * 2049, "at most 2048"),
    case(f"{TJ}.TransformResources", MISSING, "required"),
    case(f"{TJ}.TransformResources.InstanceType", MISSING, "required"),
    case(f"{TJ}.TransformResources.InstanceType", "m5.xlarge", INSTANCE_TYPE_RULE),
    case(f"{TJ}.TransformResources.InstanceCount", MISSING, "required"),
    case(f"{TJ}.TransformResources.InstanceCount", 0, "is 0 (allowed: at least 1)"),
    case(f"{TJ}.TransformResources.VolumeKmsKeyId", "k" * 2049, "at most 2048"),
    case(f"{TJ}.TransformResources.TransformAmiVersion", "al2-", "letters and digits in hyphen-separated parts"),
    case(f"{TJ}.TransformResources.TransformAmiVersion", "a" * 64, "at most 63"),
    case("SourceAlgorithmSpecification.SourceAlgorithms", MISSING, "required"),
    case("SourceAlgorithmSpecification.SourceAlgorithms", [], "has 0 items (allowed: at least 1)"),
    case("SourceAlgorithmSpecification.SourceAlgorithms", [ALGORITHM] * 2, "has 2 items (allowed: at most 1)"),
    case(f"{ALGORITHM_PATH}.AlgorithmName", MISSING, "required"),
    case(f"{ALGORITHM_PATH}.AlgorithmName", "xgboost-", "not ending with a hyphen"),
    case(f"{ALGORITHM_PATH}.AlgorithmName", "a" * 171, "at most 170"),
    case(f"{ALGORITHM_PATH}.ModelDataUrl", f"{S3}/algorithm.zip", ".tar.gz"),
    case("Tags", [TAG] * 51, "has 51 items (allowed: at most 50)"),
    case("Tags", {"team": "growth"}, "allowed: a list"),
    case("Tags[0].Key", MISSING, "required"),
    case("Tags[0].Key", "", "at least 1"),
    case("Tags[0].Key", "k" * 129, "at most 128"),
    case("Tags[0].Key", "team!", f"'team!' has the wrong form (allowed: {TAG_RULE})"),
    case("Tags[0].Value", MISSING, "required"),
    case("Tags[0].Value", "v" * 257, "at most 256"),
    case("Tags[0].Value", "a|b", TAG_RULE),
    case("ModelApprovalStatus", "Approve", "'Approved', 'Rejected' or 'PendingManualApproval'"),
    *(case(f"MetadataProperties.{name}", "x" * 1025, "at most 1024") for name in FULL["MetadataProperties"]),
    *(case(f"{source}.ContentType", MISSING, "required") for source in METRICS_SOURCES),
    *(case(f"{source}.ContentType", "c" * 257, "at most 256") for source in METRICS_SOURCES + FILE_SOURCES),
    *(
        case(f"{source}.ContentDigest", "sha1:0a", "sha256: and 64 hexadecimal digits")
        for source in METRICS_SOURCES + FILE_SOURCES
    ),
    *(case(f"{source}.S3Uri", MISSING, "required") for source in METRICS_SOURCES + FILE_SOURCES),
    *(case(f"{source}.S3Uri", "s3://", LOCATION_RULE) for source in METRICS_SOURCES + FILE_SOURCES),
    case("ModelMetrics.ModelQuality.Statistics.S3Uri", "s3://m/" + "x" * 1018, "at most 1024"),
    case("ModelMetrics.Bias.Report", "s3://models/bias.json", "allowed: an object"),
    case("ClientToken", "", "at least 1"),
    case("ClientToken", "t" * 37, "at most 36"),
    case("ClientToken", "token 1", "letters, digits and hyphens"),
    case("CustomerMetadataProperties", {}, "has 0 entries (allowed: at least 1)"),
    case("CustomerMetadataProperties", {f"k{i}": "v" for i in range(51)}, "has 51 entries (allowed: at most 50)"),
    case("CustomerMetadataProperties", {"": "v"}, "key '' has 0 characters", at="CustomerMetadataProperties['']"),
    case(
        "CustomerMetadataProperties", {"k" * 129: "v"}, "at most 128", at=f"CustomerMetadataProperties['{'k' * 37}...']"
    ),
    case("CustomerMetadataProperties", {"owner!": "v"}, TAG_RULE, at="CustomerMetadataProperties['owner!']"),
    case("CustomerMetadataProperties.owner", "", "at least 1", at="CustomerMetadataProperties['owner']"),
    case("CustomerMetadataProperties.owner", "v" * 257, "at most 256", at="CustomerMetadataProperties['owner']"),
    case("CustomerMetadataProperties.owner", "a|b", TAG_RULE, at="CustomerMetadataProperties['owner']"),
    case("DriftCheckBaselines.Bias.ConfigFile", "bias.json", "allowed: an object"),
    case("Domain", 1, "allowed: a string"),
    case("Task", 1, "allowed: a string"),
    case("SamplePayloadUrl", f"{S3}/payload.json", ".tar.gz"),
    case("AdditionalInferenceSpecifications", [], "has 0 items (allowed: at least 1)"),
    case("AdditionalInferenceSpecifications", [ADDITIONAL | {"Name": f"s{i}"} for i in range(16)], "at most 15"),
    case(f"{A}.Name", MISSING, "required"),
    case(f"{A}.Name", "gpu_1", NAME_RULE),
    case(f"{A}.Description", "d" * 1025, "at most 1024"),
    case(f"{A}.Containers", MISSING, "required"),
    case(f"{A}.Containers", [], "at least 1"),
    case(f"{A}.Containers[0].ImageDigest", "sha256:x", "sha256: and 64 hexadecimal digits"),
    case(f"{A}.SupportedTransformInstanceTypes", [], "at least 1"),
    case(f"{A}.SupportedRealtimeInferenceInstanceTypes[0]", "large", INSTANCE_TYPE_RULE),
    case(f"{A}.SupportedResponseMIMETypes[0]", "csv", "a MIME type"),
    case("SkipModelValidation", "Some", "'All' or 'None'"),
    case("SourceUri", "s" * 1025, "at most 1024"),
    case("SourceUri", "s3://models/source?version=1", "no symbols such as ="),
    case("ModelLifeCycle.Stage", MISSING, "required"),
    case("ModelLifeCycle.Stage", "", "at least 1"),
    case("ModelLifeCycle.Stage", "s" * 64, "at most 63"),
    case("ModelLifeCycle.Stage", "Pre Prod", NAME_RULE),
    case("ModelLifeCycle.StageStatus", MISSING, "required"),
    case("ModelLifeCycle.StageStatus", "In_Progress", NAME_RULE),
    case("ModelLifeCycle.StageDescription", "d" * 1025, "at most 1024"),
    case("CertifyForMarketplace", True, "is for unversioned packages (allowed: only with ModelPackageName)"),
    case("ModelPackageName", "churn-marketplace", "given with ModelPackageGroupName (allowed: exactly one"),
    case("ModelPackageGroupName", MISSING, "required (allowed: exactly one of ModelPackageGroupName, for a versioned"),
    case("SecurityConfig", {"KmsKeyId": "alias/x"}, "is not supported by modelcrate: it encrypts with an AWS KMS key"),
    case(
        "ModelPackageDescriptoin",
        "typo",
        "is not a field modelcrate accepts here (did you mean ModelPackageDescription?)",
    ),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), CREATE_CASES)
def test_create_model_package_rejects(path, value, rule, at):
    assert_one_problem("CreateModelPackage", _with(FULL, path, value), at, rule)


UNVERSIONED_CASES = [
    case("ModelPackageName", "", "at least 1"),
    case("ModelPackageName", "n" * 64, "at most 63"),
    case("ModelPackageName", "churn_marketplace", NAME_RULE),
    case("CertifyForMarketplace", "yes", "is 'yes' (allowed: true or false)"),
    case("CertifyForMarketplace", 1, "allowed: true or false"),
    case("ModelApprovalStatus", "Approved", "is for versioned packages (allowed: only with ModelPackageGroupName)"),
    case(
        "InferenceSpecification.SupportedTransformInstanceTypes",
        MISSING,
        "required for an unversioned package (ModelPackageName)",
    ),
    case(
        "InferenceSpecification.SupportedRealtimeInferenceInstanceTypes",
        MISSING,
        "required for an unversioned package (ModelPackageName)",
    ),
    case("InferenceSpecification.SupportedRealtimeInferenceInstanceTypes", [], "required for an unversioned package"),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), UNVERSIONED_CASES)
def test_unversioned_model_package_rejects(path, value, rule, at):
    assert_one_problem("CreateModelPackage", _with(UNVERSIONED, path, value), at, rule)


GROUP_CASES = [
    case("ModelPackageGroupName", MISSING, "required"),
    case("ModelPackageGroupName", "", "at least 1"),
    case("ModelPackageGroupName", "g" * 64, "at most 63"),
    case("ModelPackageGroupName", "churn_models", NAME_RULE),
    case("ModelPackageGroupName", "model-package-group/churn", NAME_RULE),
    case("ModelPackageGroupDescription", "d" * 1025, "at most 1024"),
    case("ModelPackageGroupDescription", "tab\there", "no tabs, newlines or other control characters"),
    case("Tags", [TAG] * 51, "at most 50"),
    case("Tags[0].Key", "", "at least 1"),
    case("Tags[0].Key", "k" * 129, "at most 128"),
    case("Tags[0].Value", "v" * 257, "at most 256"),
    case("Tags[0].Value", MISSING, "required"),
    case("ManagedConfiguration", {}, "is not supported by modelcrate: it chooses AWS-managed storage"),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), GROUP_CASES)
def test_create_model_package_group_rejects(path, value, rule, at):
    assert_one_problem("CreateModelPackageGroup", _with(GROUP, path, value), at, rule)


UPDATE_CASES = [
    case("ModelPackageArn", MISSING, "required"),
    case("ModelPackageArn", "", "at least 1"),
    case("ModelPackageArn", "a" * 2049, "at most 2048"),
    case("ModelPackageArn", "churn 3", "a model package ARN, a package name, or <group>/<version>"),
    case("ModelPackageArn", "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/churn", "<group>/<version>"),
    case("ModelApprovalStatus", "approved", "'Approved', 'Rejected' or 'PendingManualApproval'"),
    case("ApprovalDescription", "d" * 1025, "at most 1024"),
    case("CustomerMetadataProperties", {}, "at least 1"),
    case("CustomerMetadataProperties.reviewer", "v" * 257, "at most 256", at="CustomerMetadataProperties['reviewer']"),
    case("CustomerMetadataPropertiesToRemove[0]", "", "at least 1"),
    case("CustomerMetadataPropertiesToRemove[0]", "owner!", TAG_RULE),
    case("AdditionalInferenceSpecificationsToAdd", [], "at least 1"),
    case("AdditionalInferenceSpecificationsToAdd[0].Name", "arm 64", NAME_RULE),
    case("InferenceSpecification.Containers", [], "at least 1"),
    case("InferenceSpecification.Containers[0].ModelDataUrl", "model.zip", ".tar.gz"),
    case("SourceUri", "s" * 1025, "at most 1024"),
    case("ModelLifeCycle.Stage", "Pre Prod", NAME_RULE),
    case("ModelLifeCycle.StageStatus", MISSING, "required"),
    case("ClientToken", "token 1", "letters, digits and hyphens"),
    case("ModelCard", {}, "is not supported by modelcrate: modelcrate keeps model cards apart from packages"),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), UPDATE_CASES)
def test_update_model_package_rejects(path, value, rule, at):
    assert_one_problem("UpdateModelPackage", _with(UPDATE, path, value), at, rule)


# The spec: everything CreateModelPackage takes except the updatable fields is immutable.
IMMUTABLE = [
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageDescription",
    "ValidationSpecification",
    "SourceAlgorithmSpecification",
    "CertifyForMarketplace",
    "Tags",
    "MetadataProperties",
    "ModelMetrics",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "DriftCheckBaselines",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
]


@pytest.mark.parametrize("field", IMMUTABLE)
def test_update_names_an_immutable_field(field):
    value = FULL.get(field, UNVERSIONED.get(field))
    problems = problems_of("UpdateModelPackage", UPDATE | {field: value})
    assert problems == [
        f"{field}: is immutable after creation (allowed here: ModelPackageArn, ModelApprovalStatus, "
        "ApprovalDescription, CustomerMetadataProperties, CustomerMetadataPropertiesToRemove, "
        "AdditionalInferenceSpecificationsToAdd, InferenceSpecification, SourceUri, ModelLifeCycle, ClientToken)"
    ]


def test_immutable_fields_are_exactly_those_update_does_not_take():
    update = input_shape("UpdateModelPackage").members
    assert {name for name in HONOURED["CreateModelPackageInput"] if name not in update} == set(IMMUTABLE)


def test_update_reports_every_immutable_field_at_once():
    problems = problems_of("UpdateModelPackage", UPDATE | {"Tags": [TAG], "Domain": "NLP"})
    assert [problem.split(":")[0] for problem in problems] == ["Tags", "Domain"]


@pytest.mark.parametrize(
    "reference",
    [
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
        "churn/3",
        "churn-marketplace",
        "arn:aws-cn:sagemaker:cn-north-1:123456789012:model-package/churn-marketplace",
    ],
)
def test_update_accepts_every_package_reference(reference):
    assert parse("UpdateModelPackage", {"ModelPackageArn": reference})["ModelPackageArn"] == reference


LIST_CASES = [
    case("CreationTimeAfter", "yesterday", "is 'yesterday' (allowed: a date and time such as 2024-05-01T12:00:00Z)"),
    case("CreationTimeBefore", [2024], "allowed: a date and time"),
    case("MaxResults", 0, "is 0 (allowed: at least 1)"),
    case("MaxResults", 101, "is 101 (allowed: at most 100)"),
    case("MaxResults", "10", "is '10' (allowed: an integer)"),
    case("NameContains", "", "has the wrong form (allowed: letters, digits and hyphens)"),
    case("NameContains", "churn model", "letters, digits and hyphens"),
    case("NameContains", "n" * 64, "at most 63"),
    case("ModelApprovalStatus", "Pending", "'Approved', 'Rejected' or 'PendingManualApproval'"),
    case("ModelPackageGroupName", "churn_models", NAME_RULE),
    case("ModelPackageGroupName", "churn/models", "model-package-group/<name>"),
    case("ModelPackageType", "All", "'Versioned', 'Unversioned' or 'Both'"),
    case("NextToken", "t" * 8193, "at most 8192"),
    case("SortBy", "Date", "'Name' or 'CreationTime'"),
    case("SortOrder", "Up", "'Ascending' or 'Descending'"),
    case("NameContain", "churn", "did you mean NameContains?"),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), LIST_CASES)
def test_list_model_packages_rejects(path, value, rule, at):
    assert_one_problem("ListModelPackages", _with(LIST, path, value), at, rule)


LIST_GROUPS_CASES = [
    case("CreationTimeAfter", "soon", "allowed: a date and time"),
    case("MaxResults", 0, "at least 1"),
    case("MaxResults", 101, "at most 100"),
    case("NameContains", "churn_", "letters, digits and hyphens"),
    case("NextToken", "t" * 8193, "at most 8192"),
    case("SortBy", "Version", "'Name' or 'CreationTime'"),
    case("SortOrder", "Down", "'Ascending' or 'Descending'"),
    case("ModelApprovalStatus", "Approved", "is not a field modelcrate accepts here"),
]


@pytest.mark.parametrize(("path", "value", "rule", "at"), LIST_GROUPS_CASES)
def test_list_model_package_groups_rejects(path, value, rule, at):
    assert_one_problem("ListModelPackageGroups", _with(LIST_GROUPS, path, value), at, rule)


def test_list_reads_timestamps_from_json_text_and_normalises_the_group():
    request = parse(
        "ListModelPackages",
        {"CreationTimeAfter": "2024-05-01T12:00:00Z", "ModelPackageGroupName": "model-package-group/churn"},
    )
    assert request["CreationTimeAfter"] == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert request["ModelPackageGroupName"] == "churn"
    assert parse("ListModelPackages", {}) == {}


# --- positive cases ---


@pytest.mark.parametrize(("model_class", "request_"), FULL_REQUESTS)
def test_a_full_request_parses_and_comes_back_unchanged(model_class, request_):
    assert parse(model_class, request_) == request_


def test_a_versioned_package_defaults_to_pending_manual_approval():
    assert parse("CreateModelPackage", {"ModelPackageGroupName": "churn"}) == {"ModelPackageGroupName": "churn"}


def test_an_unversioned_package_without_inference_specification_needs_no_instance_types():
    assert parse("CreateModelPackage", {"ModelPackageName": "churn-marketplace"})["ModelPackageName"]


@pytest.mark.parametrize(
    "group",
    [
        "churn",
        "model-package-group/churn",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/churn",
        "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:model-package-group/churn",
    ],
)
def test_a_group_given_by_name_or_arn_is_kept_by_name(group):
    assert parse("CreateModelPackage", {"ModelPackageGroupName": group})["ModelPackageGroupName"] == "churn"


@pytest.mark.parametrize(
    "location",
    ["s3://models/churn/model.tar.gz", "file:///srv/models/model.tar.gz", "models/model.tar.gz", "/m.tar.gz"],
)
def test_model_data_may_be_on_s3_or_on_this_machine(location):
    request = _with(FULL, f"{C}.ModelDataUrl", location)
    assert parse("CreateModelPackage", request)["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == location


def test_tags_and_customer_metadata_take_any_letters_and_digits():
    request = FULL | {
        "Tags": [{"Key": "équipe", "Value": "données 2024"}, {"Key": "東京", "Value": ""}],
        "CustomerMetadataProperties": {"所有者": "成長チーム", "path": "a/b:c=d+e-f@g_h.i"},
    }
    assert parse("CreateModelPackage", request) == request


# --- the Environment limit option ---


def _environment(count: int) -> dict:
    return _with(FULL, f"{C}.Environment", {f"VARIABLE_{i}": "x" for i in range(count)})


def test_a_container_takes_16_environment_variables_by_default(monkeypatch):
    monkeypatch.delenv(MAX_ENVIRONMENT_VARIABLE, raising=False)
    parse("CreateModelPackage", _environment(16))
    assert problems_of("CreateModelPackage", _environment(17)) == [
        f"{C}.Environment: has 17 entries (allowed: at most 16; MODELCRATE_REGISTRY_MAX_ENVIRONMENT=100 allows 100)"
    ]


def test_the_option_allows_100_environment_variables(monkeypatch):
    monkeypatch.setenv(MAX_ENVIRONMENT_VARIABLE, "100")
    parse("CreateModelPackage", _environment(100))
    assert problems_of("CreateModelPackage", _environment(101)) == [
        f"{C}.Environment: has 101 entries (allowed: at most 100)"
    ]


def test_the_option_is_read_at_validation_time(monkeypatch):
    monkeypatch.setenv(MAX_ENVIRONMENT_VARIABLE, "100")
    parse("CreateModelPackage", _environment(20))
    monkeypatch.setenv(MAX_ENVIRONMENT_VARIABLE, "16")
    with pytest.raises(ShapeError, match="has 20 entries"):
        parse("CreateModelPackage", _environment(20))


@pytest.mark.parametrize("setting", ["50", "yes", "1e2"])
def test_any_other_option_value_is_a_clear_error(monkeypatch, setting):
    monkeypatch.setenv(MAX_ENVIRONMENT_VARIABLE, setting)
    request = {"ModelPackageGroupName": "churn", "InferenceSpecification": {"Containers": [CONTAINER]}}
    assert problems_of("CreateModelPackage", request) == [
        f"{C}.Environment: MODELCRATE_REGISTRY_MAX_ENVIRONMENT is {setting!r} (allowed: 16, the default, or 100)"
    ]


def test_the_option_leaves_the_transform_environment_at_16(monkeypatch):
    monkeypatch.setenv(MAX_ENVIRONMENT_VARIABLE, "100")
    request = _with(FULL, f"{TJ}.Environment", {f"VARIABLE_{i}": "x" for i in range(17)})
    assert_one_problem("CreateModelPackage", request, f"{TJ}.Environment", "has 17 entries (allowed: at most 16)")


# --- messages ---


def test_every_problem_is_reported_at_once_under_the_source_name():
    request = _with(_with(FULL, f"{C}.ImageDigest", "sha256:x"), "Tags[0].Value", MISSING) | {"Colour": "blue"}
    with pytest.raises(ShapeError) as caught:
        parse("CreateModelPackage", request, source="churn.json")
    assert str(caught.value).splitlines() == [
        "churn.json is not valid:",
        f"  {C}.ImageDigest: 'sha256:x' has the wrong form (allowed: sha256: and 64 hexadecimal digits)",
        "  Tags[0].Value: required",
        "  Colour: is not a field modelcrate accepts here (allowed: "
        + ", ".join(HONOURED["CreateModelPackageInput"])
        + ")",
    ]
    assert isinstance(caught.value, ValueError)


def test_the_default_source_is_the_operation():
    with pytest.raises(
        ShapeError, match=r"^CreateModelPackage is not valid:\n  \(top level\): is \[\] \(allowed: an object\)$"
    ):
        parse("CreateModelPackage", [])


def test_long_values_are_not_repeated_in_messages():
    problems = problems_of("CreateModelPackage", _with(FULL, "ModelPackageDescription", "d" * 1025))
    assert problems == ["ModelPackageDescription: has 1025 characters (allowed: at most 1024)"]


def test_rules_across_fields_report_every_violation():
    request = UNVERSIONED | {"ModelApprovalStatus": "Approved"}
    request = _with(request, "InferenceSpecification.SupportedTransformInstanceTypes", MISSING)
    assert problems_of("CreateModelPackage", request) == [
        "ModelApprovalStatus: is for versioned packages (allowed: only with ModelPackageGroupName)",
        "InferenceSpecification.SupportedTransformInstanceTypes: required for an unversioned package "
        "(ModelPackageName)",
    ]


def test_additional_inference_specification_names_are_unique():
    request = FULL | {"AdditionalInferenceSpecifications": [ADDITIONAL, ADDITIONAL | {"Name": "arm"}, ADDITIONAL]}
    assert problems_of("CreateModelPackage", request) == [
        "AdditionalInferenceSpecifications[2].Name: 'gpu' is used twice (allowed: a unique Name each)"
    ]
    update = UPDATE | {"AdditionalInferenceSpecificationsToAdd": [ADDITIONAL, ADDITIONAL]}
    assert problems_of("UpdateModelPackage", update) == [
        "AdditionalInferenceSpecificationsToAdd[1].Name: 'gpu' is used twice (allowed: a unique Name each)"
    ]


# --- the spec's fields ---

# The fields the spec lists for CreateModelPackage.
SPEC_FIELDS = [
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageDescription",
    "InferenceSpecification",
    "ValidationSpecification",
    "SourceAlgorithmSpecification",
    "CertifyForMarketplace",
    "Tags",
    "ModelApprovalStatus",
    "MetadataProperties",
    "ModelMetrics",
    "ClientToken",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "CustomerMetadataProperties",
    "DriftCheckBaselines",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
    "SourceUri",
    "ModelLifeCycle",
]


def test_modelcrate_honours_every_field_the_spec_lists_and_botocore_knows_them():
    assert list(HONOURED["CreateModelPackageInput"]) == SPEC_FIELDS
    assert set(SPEC_FIELDS) <= set(input_shape("CreateModelPackage").members)


# --- botocore parity ---


@pytest.mark.parametrize(("operation", "request_"), FULL_REQUESTS)
def test_botocore_accepts_the_request(operation, request_):
    report = ParamValidator().validate(parse(operation, request_), input_shape(operation))
    assert not report.has_errors(), report.generate_report()


def test_every_honoured_or_refused_member_is_a_botocore_member():
    for structure, members in HONOURED.items():
        assert set(members) <= set(SERVICE.shape_for(structure).members), structure
    for structure, refused in REFUSED.items():
        assert set(refused) <= set(SERVICE.shape_for(structure).members) - set(HONOURED[structure]), structure


def _structures(shape, found: dict) -> dict:
    """Every structure a request may hold through honoured members, by name."""
    if shape.type_name == "structure" and shape.name not in found:
        found[shape.name] = shape
        for name in HONOURED.get(shape.name, ()):
            _structures(shape.members[name], found)
    elif shape.type_name == "list":
        _structures(shape.member, found)
    elif shape.type_name == "map":
        _structures(shape.value, found)
    return found


@pytest.mark.parametrize("operation", INPUTS)
def test_the_installed_botocore_has_no_member_modelcrate_has_not_decided_on(operation):
    # A newer botocore may add members: this names them, so each is honoured or refused with its reason.
    undecided = [
        f"{name}.{member}"
        for name, shape in _structures(input_shape(operation), {}).items()
        for member in shape.members
        if member not in HONOURED.get(name, ()) and member not in REFUSED.get(name, {})
    ]
    assert undecided == []


# --- a newer botocore ---


@pytest.fixture
def newer_botocore(monkeypatch):
    """The installed sagemaker model as a later botocore might ship it: new members, a new instance type."""
    loader = botocore.session.get_session().get_component("data_loader")
    definition = copy.deepcopy(loader.load_service_model("sagemaker", "service-2"))
    shapes = definition["shapes"]
    shapes["CreateModelPackageInput"]["members"]["ModelPackageSignature"] = {"shape": "String"}
    shapes["ModelPackageContainerDefinition"]["members"]["WarmPoolSize"] = {"shape": "Integer"}
    shapes["TransformInstanceType"]["enum"].append("ml.future9.xlarge")
    monkeypatch.setattr(contract, "service_model", lambda: ServiceModel(definition, service_name="sagemaker"))


def test_a_member_newer_than_modelcrate_is_refused_by_name(newer_botocore):
    request = _with(FULL, f"{C}.WarmPoolSize", 2) | {"ModelPackageSignature": "signed"}
    version = botocore.__version__
    assert problems_of("CreateModelPackage", request) == [
        f"{C}.WarmPoolSize: is new in botocore {version} and modelcrate does not handle it yet "
        f"(allowed here: {', '.join(HONOURED['ModelPackageContainerDefinition'])})",
        f"ModelPackageSignature: is new in botocore {version} and modelcrate does not handle it yet "
        f"(allowed here: {', '.join(HONOURED['CreateModelPackageInput'])})",
    ]


def test_a_value_newer_than_modelcrate_is_taken_from_botocore(newer_botocore):
    request = _with(FULL, "InferenceSpecification.SupportedTransformInstanceTypes", ["ml.future9.xlarge"])
    assert parse("CreateModelPackage", request) == request


def test_the_registry_refuses_a_member_newer_than_modelcrate_and_registers_nothing(newer_botocore, registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    with pytest.raises(RegistryError, match=r"ModelPackageSignature: is new in botocore \S+ and modelcrate does not"):
        registry.create_model_package(package_request(model_tar) | {"ModelPackageSignature": "signed"})
    assert registry.list_model_packages()["ModelPackageSummaryList"] == []
