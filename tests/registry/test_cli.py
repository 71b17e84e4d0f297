"""``modelcrate registry``: the AWS CLI's commands, flags and JSON, as a user types them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from modelcrate.predictors.trust import file_sha256


@pytest.fixture
def registry_cli(run_modelcrate, tmp_path):
    env = {
        "MODELCRATE_HOME": str(tmp_path / "home"),
        "MODELCRATE_USER": "carol",
        "COLUMNS": "400",
        "MODELCRATE_DATABASE_URL": None,
    }

    def run(*args, **options) -> subprocess.CompletedProcess:
        return run_modelcrate("registry", *args, env=env, **options)

    return run


def test_the_aws_shaped_workflow(registry_cli, model_tar, tmp_path):
    created = registry_cli(
        "create-model-package-group",
        "--model-package-group-name",
        "abalone",
        "--model-package-group-description",
        "Abalone sex",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ModelPackageGroupArn"].endswith(":model-package-group/abalone")

    specification = {
        "Containers": [{"Image": "abalone:latest", "ModelDataUrl": str(model_tar)}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"ModelPackageGroupName": "abalone", "InferenceSpecification": specification}))
    package = registry_cli(
        "create-model-package", "--cli-input-json", f"file://{request}", "--model-package-description", "first"
    )
    assert package.returncode == 0, package.stderr
    arn = json.loads(package.stdout)["ModelPackageArn"]
    assert arn.endswith(":model-package/abalone/1")

    approved = registry_cli(
        "update-model-package",
        "--model-package-arn",
        arn,
        "--model-approval-status",
        "Approved",
        "--approval-description",
        "looks good",
    )
    assert approved.returncode == 0, approved.stderr
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ModelPackageDescription"] == "first"
    history = json.loads(registry_cli("history", "--model-package-name", arn).stdout)["History"]
    assert history[-1] == {
        **history[-1],
        "Field": "ModelApprovalStatus",
        "To": "Approved",
        "Reason": "looks good",
        "Who": "carol",
    }
    listed = json.loads(registry_cli("list-model-packages", "--model-approval-status", "Approved").stdout)
    assert [p["ModelPackageArn"] for p in listed["ModelPackageSummaryList"]] == [arn]


def test_generate_cli_skeleton_prints_the_request_shape(registry_cli):
    skeleton = registry_cli("create-model-package", "--generate-cli-skeleton")
    assert skeleton.returncode == 0, skeleton.stderr
    shape = json.loads(skeleton.stdout)
    assert {"ModelPackageGroupName", "InferenceSpecification", "ModelApprovalStatus", "ClientToken"} <= set(shape)


def test_errors_name_the_field_and_follow_the_aws_cli(registry_cli):
    bad = registry_cli("create-model-package-group", "--model-package-group-name", "no spaces allowed")
    assert bad.returncode == 2
    assert "An error occurred (ValidationException) when calling the CreateModelPackageGroup operation" in bad.stderr
    assert "ModelPackageGroupName" in bad.stderr
    unknown = registry_cli("create-model-package-group", "--model-package-group", "abalone")
    assert unknown.returncode == 2
    assert "CreateModelPackageGroup has no option --model-package-group" in unknown.stderr
    missing = registry_cli("describe-model-package-group", "--model-package-group-name", "nothing")
    assert missing.returncode == 1
    assert "(ResourceNotFound)" in missing.stderr and "nothing does not exist" in missing.stderr


def test_register_a_model_directory_with_its_recorded_metrics(registry_cli, model_dir):
    registered = registry_cli("register", model_dir, "--group", "abalone", "--description", "from the CLI")
    assert registered.returncode == 0, registered.stderr
    assert "registered abalone version 1 (PendingManualApproval, Completed)" in registered.stderr
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert described["CustomerMetadataProperties"]["training.accuracy"] == "0.558612"
    (container,) = described["InferenceSpecification"]["Containers"]
    assert container["Framework"] == "XGBOOST" and container["FrameworkVersion"] == "2.1.3"
    # A classifier with probabilities can emit every inference key.
    supported = container["Environment"]["SAGEMAKER_INFERENCE_SUPPORTED"]
    assert supported == "predicted_label,probability,probabilities,labels"


def test_a_registered_regressor_publishes_the_one_key_it_emits(registry_cli, sample_model):
    registered = registry_cli("register", sample_model("sklearn", "joblib", "regression"), "--group", "rings")
    assert registered.returncode == 0, registered.stderr
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "rings/1").stdout)
    (container,) = described["InferenceSpecification"]["Containers"]
    assert container["Environment"] == {"SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label"}


def test_the_installed_script_registers_then_transforms_with_the_package(
    registry_cli, run_modelcrate, model_dir, tmp_path
):
    """Real processes of the console script, end to end: the other tests run its entry point in-process."""
    from modelcrate.scaffold.sample_models import read_abalone

    registered = registry_cli(
        "register", model_dir, "--group", "abalone", "--approval-status", "Approved", separate_process=True
    )
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["ModelPackageArn"].endswith(":model-package/abalone/1")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("".join(",".join(r[1:]) + "\n" for r in read_abalone()[:30]))
    run = run_modelcrate(
        "transform",
        "registry:abalone",
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        "text/csv",
        env={"MODELCRATE_HOME": str(tmp_path / "home"), "MODELCRATE_DATABASE_URL": None},
        separate_process=True,
    )
    assert run.returncode == 0, run.stderr
    assert "model-package/abalone/1: the local runtime" in run.stderr
    assert len((tmp_path / "out" / "rows.csv.out").read_text().splitlines()) == 30


def _archived_metadata(registry_cli, name: str) -> dict:
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", name).stdout)
    (container,) = described["InferenceSpecification"]["Containers"]
    with tarfile.open(container["ModelDataUrl"].removeprefix("file://")) as archive:
        return json.loads(archive.extractfile("modelcrate.json").read())


def test_register_records_the_model_files_sha256_in_the_archive_only(registry_cli, sample_model, tmp_path):
    model_dir = Path(shutil.copytree(sample_model("sklearn", "joblib", "regression"), tmp_path / "bare"))
    (model_dir / "modelcrate.json").unlink()  # a user's bare model
    assert registry_cli("register", model_dir, "--group", "rings").returncode == 0
    archived = _archived_metadata(registry_cli, "rings/1")
    assert archived["sha256_of_files"] == {"model.joblib": file_sha256(model_dir / "model.joblib")}
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.joblib"]  # the user's directory is left as it is


def test_register_refuses_a_model_file_changed_after_it_was_recorded(registry_cli, sample_model, tmp_path):
    model_dir = Path(shutil.copytree(sample_model("sklearn", "joblib", "regression"), tmp_path / "changed"))
    with (model_dir / "model.joblib").open("ab") as model_file:
        model_file.write(b"\0")
    refused = registry_cli("register", model_dir, "--group", "rings")
    assert refused.returncode == 2  # an invalid request, as the registry's other refusals
    assert "model.joblib has sha256" in refused.stderr and "changed after it was recorded" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_shorthand_flags_and_yaml_input_reach_the_registry(registry_cli, model_tar, tmp_path):
    created = registry_cli(
        "create-model-package-group",
        "--model-package-group-name",
        "abalone",
        "--tags",
        "Key=team,Value=ml",
        "Key=a,Value=b",
    )
    assert created.returncode == 0, created.stderr
    refused = registry_cli("create-model-package-group", "--model-package-group-name", "g", "--tags", "Key=no[,Value=x")
    assert refused.returncode == 2 and "'no['" in refused.stderr  # the shorthand tag reached the registry's check

    request = tmp_path / "request.yaml"
    request.write_text(
        "ModelPackageGroupName: abalone\n"
        "InferenceSpecification:\n"
        f"  Containers:\n  - Image: abalone:latest\n    ModelDataUrl: {model_tar}\n"
        "  SupportedContentTypes: [text/csv]\n  SupportedResponseMIMETypes: [text/csv]\n"
    )
    package = registry_cli(
        "create-model-package",
        "--cli-input-yaml",
        f"file://{request}",
        "--metadata-properties",
        "CommitId=0123abcd,Repository=git@example.com:shells.git",
        "--customer-metadata-properties",
        "training.accuracy=0.93,owner=fisheries",
    )
    assert package.returncode == 0, package.stderr
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert described["MetadataProperties"] == {"CommitId": "0123abcd", "Repository": "git@example.com:shells.git"}
    assert described["CustomerMetadataProperties"] == {"training.accuracy": "0.93", "owner": "fisheries"}
    assert described["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    specification = yaml.safe_load(request.read_text())["InferenceSpecification"]
    instances = {"SupportedTransformInstanceTypes": ["ml.m5.large"]}
    unversioned = registry_cli(
        "create-model-package",
        "--model-package-name",
        "loose",
        "--inference-specification",
        json.dumps({**specification, **instances, "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"]}),
        "--no-certify-for-marketplace",
    )
    assert unversioned.returncode == 0, unversioned.stderr
    loose = json.loads(registry_cli("describe-model-package", "--model-package-name", "loose").stdout)
    assert loose["CertifyForMarketplace"] is False

    removed = registry_cli(
        "update-model-package", "--model-package-arn", "abalone/1", "--customer-metadata-properties-to-remove", "owner"
    )
    assert removed.returncode == 0, removed.stderr
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert described["CustomerMetadataProperties"] == {"training.accuracy": "0.93"}


def test_max_results_next_token_query_and_table_output(registry_cli):
    for name in ("alpha", "beta", "gamma"):
        assert registry_cli("create-model-package-group", "--model-package-group-name", name).returncode == 0
    first = registry_cli(
        "list-model-package-groups", "--max-results", "2", "--sort-by", "Name", "--sort-order", "Ascending"
    )
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    assert [g["ModelPackageGroupName"] for g in page["ModelPackageGroupSummaryList"]] == ["alpha", "beta"]
    rest = registry_cli(
        "list-model-package-groups",
        "--max-results",
        "2",
        "--sort-by",
        "Name",
        "--sort-order",
        "Ascending",
        "--next-token",
        page["NextToken"],
        "--query",
        "ModelPackageGroupSummaryList[].ModelPackageGroupName",
    )
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout) == ["gamma"]
    assert registry_cli("list-model-package-groups", "--max-results", "two").returncode == 2

    table = registry_cli("describe-model-package-group", "--model-package-group-name", "beta", "--output", "table")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "DescribeModelPackageGroup"
    assert lines[1].startswith("+-") and lines[1].endswith("-+")
    row = next(line for line in lines if "ModelPackageGroupName" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["ModelPackageGroupName", "beta"]
    assert "UserProfileName" in table.stdout and "carol" in table.stdout
    as_yaml = registry_cli(
        "describe-model-package-group", "--model-package-group-name", "beta", "--output", "yaml", "--query", "CreatedBy"
    )
    assert as_yaml.stdout == "UserProfileName: carol\n"
    bad_query = registry_cli("list-model-package-groups", "--query", "ModelPackageGroupSummaryList[")
    assert bad_query.returncode == 2 and len(bad_query.stderr.strip().splitlines()) == 1
    assert "Bad value for --query" in bad_query.stderr


def test_skeletons_as_json_yaml_and_output(registry_cli, tmp_path):
    as_yaml = registry_cli("create-model-package-group", "--generate-cli-skeleton", "yaml-input")
    assert as_yaml.returncode == 0, as_yaml.stderr
    skeleton = yaml.safe_load(as_yaml.stdout)
    assert skeleton["Tags"] == [{"Key": "", "Value": ""}]
    skeleton.update(ModelPackageGroupName="from-yaml", Tags=[{"Key": "team", "Value": "ml"}])
    del skeleton["ManagedConfiguration"]
    (tmp_path / "group.yaml").write_text(yaml.safe_dump(skeleton))
    created = registry_cli("create-model-package-group", "--cli-input-yaml", f"file://{tmp_path / 'group.yaml'}")
    assert created.returncode == 0, created.stderr

    output = registry_cli("describe-model-package-group", "--generate-cli-skeleton", "output")
    assert output.returncode == 0, output.stderr
    assert json.loads(output.stdout)["ModelPackageGroupName"] == "ModelPackageGroupName"


def test_approval_needs_a_reason_as_in_the_console(registry_cli, model_dir):
    assert registry_cli("register", model_dir, "--group", "abalone").returncode == 0
    for decision in ("Approved", "Rejected"):
        refused = registry_cli(
            "update-model-package", "--model-package-arn", "abalone/1", "--model-approval-status", decision
        )
        assert refused.returncode == 2
        assert (
            f"a reason is required to mark a package {decision}: give ApprovalDescription (--approval-description)"
            in refused.stderr
        )
    described = json.loads(registry_cli("describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"

    approved = registry_cli(
        "update-model-package",
        "--model-package-arn",
        "abalone/1",
        "--model-approval-status",
        "Approved",
        "--approval-description",
        "held-out accuracy 0.93",
    )
    assert approved.returncode == 0, approved.stderr
    history = registry_cli("history", "abalone/1", "--query", "History[-1].[To, Reason]")
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout) == ["Approved", "held-out accuracy 0.93"]
