"""modelcrate.client("sagemaker") is drop-in for boto3's sagemaker client: the same method names, called with the
same keyword arguments (valid for botocore's input shapes), answering in botocore's output shapes."""

from __future__ import annotations

import inspect
import json

import pytest
from botocore import xform_name
from botocore.validate import ParamValidator

import modelcrate
from modelcrate.archives import pack_directory
from modelcrate.registry.contract import service_model
from tests.registry.test_tags import assert_output_shape

SERVICE = service_model()
# The boto3 operations the client offers (the rest of its methods are modelcrate's own, in snake_case).
OPERATIONS = [
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
    "CreateModelCard",
    "UpdateModelCard",
    "DescribeModelCard",
    "ListModelCards",
    "ListModelCardVersions",
    "DeleteModelCard",
]
OWN_METHODS = {"register_model", "create_model_card_from_package", "history"}
# Where an answer says more than SageMaker's (besides what tests.registry.test_tags knows): which version an
# update made and whether it made one; who created each card version.
EXTENSIONS = {"UpdateModelCard": ("ModelCardVersion", "ContentChanged"), "ListModelCardVersions": ("CreatedBy",)}


def _without(value, keys: tuple[str, ...]):
    if isinstance(value, dict):
        return {key: _without(item, keys) for key, item in value.items() if key not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


@pytest.fixture
def sm(tmp_path) -> modelcrate.SageMakerClient:
    return modelcrate.client(
        "sagemaker", database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifacts=tmp_path / "artifacts", user="bo"
    )


@pytest.fixture(scope="module")
def model_tar(sample_model, tmp_path_factory):
    return pack_directory(sample_model("sklearn", "joblib"), tmp_path_factory.mktemp("model-tar"))


def test_every_public_method_is_a_boto3_operation_or_modelcrate_s_own():
    methods = {name for name, _ in inspect.getmembers(modelcrate.SageMakerClient, inspect.isfunction)}
    public = {name for name in methods if not name.startswith("_")}
    assert public == {xform_name(operation) for operation in OPERATIONS} | OWN_METHODS
    assert set(OPERATIONS) <= set(SERVICE.operation_names)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_named_parameters_are_botocore_s_members(operation):
    parameters = inspect.signature(getattr(modelcrate.SageMakerClient, xform_name(operation))).parameters
    named = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    members = SERVICE.operation_model(operation).input_shape.members
    assert named <= set(members)
    required = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    assert required == required & set(SERVICE.operation_model(operation).input_shape.required_members)


def call(sm, operation: str, **request) -> dict:
    """``sm``'s boto3-named method, with a request botocore accepts for ``operation``; its answer checked against
    the operation's output shape."""
    report = ParamValidator().validate(request, SERVICE.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()
    answer = getattr(sm, xform_name(operation))(**request)
    shown = _without(answer, EXTENSIONS.get(operation, ()))
    if operation == "DescribeModelCard":
        shown["Content"] = json.dumps(shown["Content"])  # modelcrate gives the object, SageMaker its text
    if SERVICE.operation_model(operation).output_shape is None:
        assert shown == {}  # boto3 answers only its ResponseMetadata
    else:
        assert_output_shape(operation, shown)
    return answer


def test_the_boto3_workflow_on_modelcrate(sm, model_tar):
    call(sm, "CreateModelPackageGroup", ModelPackageGroupName="abalone", ModelPackageGroupDescription="Abalone")
    call(sm, "DescribeModelPackageGroup", ModelPackageGroupName="abalone")
    call(sm, "ListModelPackageGroups", MaxResults=10)
    arn = call(
        sm,
        "CreateModelPackage",
        ModelPackageGroupName="abalone",
        ModelPackageDescription="first",
        InferenceSpecification={
            "Containers": [{"Image": "abalone:latest", "ModelDataUrl": str(model_tar), "Framework": "SKLEARN"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        CustomerMetadataProperties={"owner": "fisheries"},
    )["ModelPackageArn"]
    assert arn.endswith(":model-package/abalone/1")
    assert call(sm, "DescribeModelPackage", ModelPackageName=arn)["ModelApprovalStatus"] == "PendingManualApproval"
    call(sm, "UpdateModelPackage", ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="ok")
    listed = call(sm, "ListModelPackages", ModelPackageGroupName="abalone", ModelApprovalStatus="Approved")
    assert [summary["ModelPackageArn"] for summary in listed["ModelPackageSummaryList"]] == [arn]
    call(sm, "AddTags", ResourceArn=arn, Tags=[{"Key": "team", "Value": "fisheries"}])
    assert call(sm, "ListTags", ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "fisheries"}]
    call(sm, "DeleteTags", ResourceArn=arn, TagKeys=["team"])

    content = {"model_overview": {"model_description": "Rings"}, "model_package_details": {"model_package_arn": arn}}
    call(sm, "CreateModelCard", ModelCardName="abalone-card", Content=json.dumps(content), ModelCardStatus="Draft")
    content["model_overview"]["model_description"] = "Rings, from shell measurements"
    call(sm, "UpdateModelCard", ModelCardName="abalone-card", Content=json.dumps(content))
    assert call(sm, "DescribeModelCard", ModelCardName="abalone-card", ModelCardVersion=1)["ModelCardVersion"] == 1
    assert (
        call(sm, "ListModelCards", NameContains="abalone")["ModelCardSummaries"][0]["ModelCardName"] == "abalone-card"
    )
    versions = call(sm, "ListModelCardVersions", ModelCardName="abalone-card")["ModelCardVersionSummaryList"]
    assert [version["ModelCardVersion"] for version in versions] == [1, 2]
    call(sm, "DeleteModelCard", ModelCardName="abalone-card")
    call(sm, "DeleteModelPackage", ModelPackageName=arn)
    call(sm, "DeleteModelPackageGroup", ModelPackageGroupName="abalone")
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


def test_a_refusal_carries_the_aws_error_code(sm):
    with pytest.raises(modelcrate.RegistryError) as refused:
        sm.describe_model_package(ModelPackageName="abalone/7")
    assert refused.value.code == "ResourceNotFound"
    with pytest.raises(modelcrate.RegistryError, match="ModelPackageGroupName"):
        sm.create_model_package_group(ModelPackageGroupName="not_valid")


def test_approving_needs_a_reason_as_on_the_command_line(sm, model_tar):
    sm.create_model_package_group(ModelPackageGroupName="abalone")
    arn = sm.create_model_package(
        ModelPackageGroupName="abalone",
        InferenceSpecification={
            "Containers": [{"Image": "abalone:latest", "ModelDataUrl": str(model_tar)}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
    with pytest.raises(modelcrate.RegistryError, match="a reason is required to mark a package Approved"):
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "PendingManualApproval"
    assert sm.history(arn)["ModelPackageArn"] == arn
