"""Tags of groups, packages and cards: stored on create, AddTags/ListTags/DeleteTags by ARN, gone with their
resource, carried to SageMaker; every answer in botocore's output shape."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from botocore.validate import ParamValidator
from sqlalchemy import create_engine, text

from modelcrate.cards.service import Cards
from modelcrate.registry.contract import service_model
from modelcrate.registry.db import MIGRATIONS, open_engine
from modelcrate.registry.sagemaker import create_model_package_request
from modelcrate.registry.service import NotFound, RegistryError
from tests.registry.conftest import package_request

GROUP_ARN = "arn:aws:sagemaker:local:000000000000:model-package-group/abalone"
S3_MODEL = "s3://models/abalone/model.tar.gz"


def tags_of(registry, arn: str) -> list[dict]:
    return registry.list_tags({"ResourceArn": arn})["Tags"]


def test_a_group_keeps_its_tags_and_add_tags_changes_them(registry):
    registry.create_model_package_group(
        {"ModelPackageGroupName": "abalone", "Tags": [{"Key": "team", "Value": "fisheries"}]}
    )
    assert tags_of(registry, GROUP_ARN) == [{"Key": "team", "Value": "fisheries"}]
    added = registry.add_tags(
        {"ResourceArn": GROUP_ARN, "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "a", "Value": ""}]}
    )
    assert added == {"Tags": [{"Key": "team", "Value": "ml"}, {"Key": "a", "Value": ""}]}
    assert tags_of(registry, GROUP_ARN) == [{"Key": "a", "Value": ""}, {"Key": "team", "Value": "ml"}]
    assert registry.delete_tags({"ResourceArn": GROUP_ARN, "TagKeys": ["a", "absent"]}) == {}
    assert tags_of(registry, GROUP_ARN) == [{"Key": "team", "Value": "ml"}]


def test_tags_are_listed_a_page_at_a_time(registry):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.add_tags({"ResourceArn": GROUP_ARN, "Tags": [{"Key": f"k{i:02}", "Value": "v"} for i in range(50)]})
    first = registry.list_tags({"ResourceArn": GROUP_ARN, "MaxResults": 50})
    assert len(first["Tags"]) == 50 and "NextToken" not in first
    with pytest.raises(RegistryError, match=r"would have 51 tags \(allowed: at most 50\)"):
        registry.add_tags({"ResourceArn": GROUP_ARN, "Tags": [{"Key": "one-more", "Value": "v"}]})
    assert len(tags_of(registry, GROUP_ARN)) == 50


def test_a_package_keeps_the_tags_it_was_created_with_and_takes_them_to_sagemaker(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    tags = [{"Key": "owner", "Value": "dana"}]
    arn = registry.create_model_package(package_request(model_tar, Tags=tags, ModelApprovalStatus="Approved"))[
        "ModelPackageArn"
    ]
    assert tags_of(registry, arn) == tags
    # An ARN naming the package from another region or account finds the same tags: ARNs are kept as written here.
    assert tags_of(registry, arn.replace(":local:000000000000:", ":us-east-1:123456789012:")) == tags
    request = create_model_package_request(registry.describe_model_package(arn), {0: S3_MODEL}, tags_of(registry, arn))
    assert request["Tags"] == tags


def test_a_card_keeps_its_tags(registry):
    cards = Cards(registry)
    arn = cards.create_model_card({"ModelCardName": "card", "Content": {}, "Tags": [{"Key": "k", "Value": "v"}]})[
        "ModelCardArn"
    ]
    assert tags_of(registry, arn) == [{"Key": "k", "Value": "v"}]
    cards.delete_model_card("card")
    with pytest.raises(NotFound, match="model card card does not exist"):
        tags_of(registry, arn)


def test_tags_go_with_their_resource(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone", "Tags": [{"Key": "k", "Value": "v"}]})
    arn = registry.create_model_package(package_request(model_tar, Tags=[{"Key": "k", "Value": "v"}]))[
        "ModelPackageArn"
    ]
    registry.delete_model_package(arn)
    registry.delete_model_package_group("abalone")
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    assert tags_of(registry, GROUP_ARN) == []
    registry.create_model_package(package_request(model_tar))
    assert tags_of(registry, "arn:aws:sagemaker:local:000000000000:model-package/abalone/1") == []


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (GROUP_ARN, "model package group abalone does not exist"),
        ("arn:aws:sagemaker:local:000000000000:model-package/abalone/1", "model package .* does not exist"),
        ("arn:aws:sagemaker:local:000000000000:endpoint/abalone", "is not the ARN of a model package group"),
    ],
)
def test_tags_of_a_resource_that_is_not_there_are_not_found(registry, arn, message):
    with pytest.raises(NotFound, match=message):
        registry.add_tags({"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]})


def test_tags_requests_are_checked_against_botocore(registry):
    with pytest.raises(RegistryError, match=r"ResourceArn: 'abalone' has the wrong form \(allowed: a SageMaker ARN"):
        registry.list_tags({"ResourceArn": "abalone"})
    with pytest.raises(RegistryError, match=r"Tags\[0\].Key: 'team!' has the wrong form"):
        registry.add_tags({"ResourceArn": GROUP_ARN, "Tags": [{"Key": "team!", "Value": "v"}]})


def test_group_tags_move_from_their_old_column_to_the_tags_table(database):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(database)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.execute(
            text(
                "INSERT INTO model_package_groups (name, tags, created_at, created_by, last_version) "
                "VALUES ('abalone', :tags, CURRENT_TIMESTAMP, 'alice', 0)"
            ),
            {"tags": '[{"Key": "team", "Value": "old"}, {"Key": "team", "Value": "fisheries"}]'},
        )
    engine.dispose()
    upgraded = open_engine(database)
    with upgraded.connect() as connection:
        assert connection.execute(text("SELECT resource_arn, key, value FROM tags")).all() == [
            (GROUP_ARN, "team", "fisheries")
        ]
    upgraded.dispose()


# --- answers in botocore's output shapes ---

# Where modelcrate says more than SageMaker: the sha256 of each container's model, how a validation ran, and
# a card's Content as the JSON object rather than its text.
EXTENSIONS = ("ModelDataDigests", "ValidatedWith")


def _without_extensions(value):
    if isinstance(value, dict):
        return {key: _without_extensions(item) for key, item in value.items() if key not in EXTENSIONS}
    if isinstance(value, list):
        return [_without_extensions(item) for item in value]
    return value


def assert_output_shape(operation: str, answer: dict) -> None:
    report = ParamValidator().validate(
        _without_extensions(answer), service_model().operation_model(operation).output_shape
    )
    assert not report.has_errors(), report.generate_report()


def test_every_answer_fits_botocore_s_output_shape(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone", "ModelPackageGroupDescription": "d"})
    arn = registry.create_model_package(
        package_request(
            model_tar,
            ModelPackageDescription="first",
            CustomerMetadataProperties={"k": "v"},
            ModelLifeCycle={"Stage": "Staging", "StageStatus": "InProgress"},
        )
    )["ModelPackageArn"]
    registry.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"})
    cards = Cards(registry)
    cards.create_from_package("abalone-card", arn)
    answers = {
        "CreateModelPackageGroup": registry.create_model_package_group({"ModelPackageGroupName": "other"}),
        "DescribeModelPackageGroup": registry.describe_model_package_group("abalone"),
        "ListModelPackageGroups": registry.list_model_package_groups({"MaxResults": 1}),
        "DescribeModelPackage": registry.describe_model_package(arn),
        "ListModelPackages": registry.list_model_packages(),
        "UpdateModelPackage": registry.update_model_package({"ModelPackageArn": arn, "SourceUri": "s3://a/b"}),
        "AddTags": registry.add_tags({"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]}),
        "ListTags": registry.list_tags({"ResourceArn": arn}),
        "DeleteTags": registry.delete_tags({"ResourceArn": arn, "TagKeys": ["k"]}),
        "ListModelCards": cards.list_model_cards(),
    }
    card = cards.describe_model_card("abalone-card")
    answers["DescribeModelCard"] = {**card, "Content": "{}"}
    for operation, answer in answers.items():
        assert_output_shape(operation, answer)
