"""The registry and card commands as the AWS CLI builds them: every input member of each operation, read from
botocore's model, is a flag in ``--help`` and reaches the request; shorthand follows the AWS CLI user guide."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.validate import ParamValidator

from modelcrate.cli.aws import flag, operation_command, spread_lists
from modelcrate.cli.card import CARD_CALLS
from modelcrate.cli.registry import REGISTRY_CALLS, registry_failures
from modelcrate.cli.shorthand import ShorthandError, parse

MODEL = botocore.session.get_session().get_service_model("sagemaker")
OPERATIONS = sorted([*REGISTRY_CALLS, *CARD_CALLS])


def shape_of(name: str):
    return MODEL.shape_for(name)


def sample(shape, seen: tuple = ()):
    """A value botocore's validator accepts for ``shape``, every member filled (recursion cut short)."""
    kind, metadata = shape.type_name, shape.metadata
    if kind == "structure":
        return {
            name: sample(member, (*seen, shape.name))
            for name, member in shape.members.items()
            if member.name not in seen or name in shape.required_members
        }
    if kind == "list":
        return [sample(shape.member, seen)] * max(1, metadata.get("min", 1))
    if kind == "map":
        return {"k" * max(1, shape.key.metadata.get("min", 1)): sample(shape.value, seen)}
    if kind == "string":
        return shape.enum[0] if shape.enum else "x" * max(1, metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(max(1, metadata.get("min", 1)))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return "2024-05-01T00:00:00Z"
    return "eA=="  # blob


def as_arguments(member: str, value, shape) -> list[str]:
    if shape.type_name == "boolean":
        return [flag(member)]
    if shape.type_name in ("structure", "list", "map"):
        return [flag(member), json.dumps(value)]
    return [flag(member), str(value)]


def validated_echo(operation: str):
    """The request back as the answer, after botocore's own validator accepted it."""

    def call(request: dict) -> dict:
        report = ParamValidator().validate(request, MODEL.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
        # Plain JSON types only: a choice arrives as its text, never as the enum the parser made of it.
        assert all(type(value) in (str, int, float, bool, list, dict) for value in request.values()), request
        return request

    return call


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_input_member_is_a_flag_listed_in_help(operation, capsys):
    input_shape = MODEL.operation_model(operation).input_shape
    command = operation_command(operation, validated_echo(operation), registry_failures)

    assert command.main(["--help"], prog_name=command.name, standalone_mode=False) == 0
    shown = capsys.readouterr().out
    for member, shape in input_shape.members.items():
        assert flag(member) in shown, member
        if shape.type_name == "boolean":
            assert f"{flag(member)} / --no-{flag(member)[2:]}" in shown
        for value in shape.enum if shape.type_name == "string" else []:
            assert value in shown, (member, value)
    assert shown.count("(required)") == len(input_shape.required_members)

    request = {member: sample(shape) for member, shape in input_shape.members.items()}
    argv = [argument for m, s in input_shape.members.items() for argument in as_arguments(m, request[m], s)]
    command.main(argv, prog_name=command.name, standalone_mode=False)
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(request))


def test_a_false_boolean_and_a_list_spread_over_arguments(capsys):
    command = operation_command("CreateModelPackage", validated_echo("CreateModelPackage"), registry_failures)
    argv = ["--no-certify-for-marketplace", "--tags", "Key=a,Value=b", "Key=c,Value=d", "--model-package-name", "p"]
    command.main(argv, prog_name=command.name, standalone_mode=False)
    assert json.loads(capsys.readouterr().out) == {
        "CertifyForMarketplace": False,
        "Tags": [{"Key": "a", "Value": "b"}, {"Key": "c", "Value": "d"}],
        "ModelPackageName": "p",
    }


def test_list_arguments_are_spread_until_the_next_flag():
    lists = {"--tags", "--names"}
    spread = spread_lists(["--tags", "A", "B", "--name", "n", "--names=x", "y", "--tags", "C"], lists)
    assert spread == ["--tags", "A", "--tags", "B", "--name", "n", "--names", "x", "--names", "y", "--tags", "C"]


@pytest.mark.parametrize(
    ("text", "shape", "expected"),
    [
        # The user guide's examples: a flat structure, a map, a list element, a list of scalars.
        ("Key=team,Value=ml", "Tag", {"Key": "team", "Value": "ml"}),
        ("CommitId=abc123,Repository=git://r", "MetadataProperties", {"CommitId": "abc123", "Repository": "git://r"}),
        ("training.accuracy=0.9,owner=me", "CustomerMetadataMap", {"training.accuracy": "0.9", "owner": "me"}),
        ("Key=a,Value=b", "TagList", [{"Key": "a", "Value": "b"}]),
        ("a,b", "CustomerMetadataKeyList", ["a,b"]),  # one argument, one element: a list is --x a b
        # Values after a key up to the next key= make a list; brackets and braces nest; types follow the shape.
        (
            "SupportedContentTypes=text/csv,application/json",
            "InferenceSpecification",
            {"SupportedContentTypes": ["text/csv", "application/json"]},
        ),
        (
            "Containers=[{Image=i,ModelDataUrl=s3://b/m.tar.gz}],SupportedContentTypes=[text/csv]",
            "InferenceSpecification",
            {
                "Containers": [{"Image": "i", "ModelDataUrl": "s3://b/m.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
            },
        ),
        ("KmsKeyId=' a, b=c '", "ModelPackageSecurityConfig", {"KmsKeyId": " a, b=c "}),
        ('Stage="x\\"y",StageStatus=ok', "ModelLifeCycle", {"Stage": 'x"y', "StageStatus": "ok"}),
        (
            "TransformJobDefinition={MaxConcurrentTransforms=4,TransformOutput={S3OutputPath=s3://o}},ProfileName=p",
            "ModelPackageValidationProfile",
            {
                "TransformJobDefinition": {"MaxConcurrentTransforms": 4, "TransformOutput": {"S3OutputPath": "s3://o"}},
                "ProfileName": "p",
            },
        ),
    ],
)
def test_shorthand_as_the_aws_cli_user_guide_writes_it(text, shape, expected):
    assert parse(text, shape_of(shape)) == expected


def test_shorthand_reads_a_value_from_a_file(tmp_path):
    (tmp_path / "commit").write_text("0123abcd")
    assert parse(f"CommitId@=file://{tmp_path / 'commit'},ProjectId=p", shape_of("MetadataProperties")) == {
        "CommitId": "0123abcd",
        "ProjectId": "p",
    }


@pytest.mark.parametrize(
    ("text", "shape", "problem"),
    [
        ("Key=a,Colour=b", "Tag", "Tag has no member Colour; its members: Key, Value"),
        ("Key", "Tag", "expected key=value"),
        ("Key='a", "Tag", "expected a closing '"),
        ("TransformJobDefinition={MaxConcurrentTransforms=many}", "ModelPackageValidationProfile", "not a whole"),
        ("Containers=[{Image=i}", "InferenceSpecification", "expected ']'"),
    ],
)
def test_shorthand_that_does_not_fit_says_where(text, shape, problem):
    with pytest.raises(ShorthandError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse(text, shape_of(shape))
