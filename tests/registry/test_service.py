"""The registry's operations on SQLite and PostgreSQL: groups, packages, idempotency, approval, history,
artifacts checked on read, validation runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelcrate.registry.artifacts import ArtifactCorrupted
from modelcrate.registry.service import Conflict, NotFound, RegistryError
from modelcrate.scaffold.sample_models import read_abalone
from modelcrate.validation import create_validated_package, validate_package
from tests.registry.conftest import package_request


def test_groups_are_created_described_listed_and_deleted(registry):
    arn = registry.create_model_package_group({"ModelPackageGroupName": "abalone", "ModelPackageGroupDescription": "d"})
    assert arn == {"ModelPackageGroupArn": "arn:aws:sagemaker:local:000000000000:model-package-group/abalone"}
    described = registry.describe_model_package_group("abalone")
    assert described["ModelPackageGroupDescription"] == "d"
    assert described["CreatedBy"] == {"UserProfileName": "alice"}
    with pytest.raises(Conflict, match="abalone already exists"):
        registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package_group({"ModelPackageGroupName": "other"})
    names = [
        g["ModelPackageGroupName"]
        for g in registry.list_model_package_groups({"SortBy": "Name", "SortOrder": "Ascending"})[
            "ModelPackageGroupSummaryList"
        ]
    ]
    assert names == ["abalone", "other"]
    registry.delete_model_package_group("other")
    with pytest.raises(NotFound, match="other does not exist"):
        registry.describe_model_package_group("other")


def test_versions_count_up_and_the_model_is_stored_by_its_sha256(registry, model_tar, model_dir, tmp_path):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    first = registry.create_model_package(package_request(model_tar))["ModelPackageArn"]
    second = registry.create_model_package(package_request(model_tar))["ModelPackageArn"]
    assert first.endswith("model-package/abalone/1") and second.endswith("model-package/abalone/2")
    described = registry.describe_model_package("abalone/2")
    assert described["ModelPackageVersion"] == 2
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageStatus"] == "Completed"
    url = described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    (digest,) = described["ModelDataDigests"]
    assert url.endswith(f"/sha256/{digest}/model.tar.gz")
    assert hashlib.sha256(Path(url).read_bytes()).hexdigest() == digest
    unpacked = registry.model_directory("abalone/1", tmp_path / "unpacked")
    assert (unpacked / "model.json").read_bytes() == (model_dir / "model.json").read_bytes()
    with pytest.raises(Conflict, match=r"abalone still has 2 package\(s\)"):
        registry.delete_model_package_group("abalone")


def test_a_package_needs_its_group(registry, model_tar):
    with pytest.raises(NotFound, match="group nowhere does not exist; create it with create-model-package-group"):
        registry.create_model_package(package_request(model_tar, group="nowhere"))


def test_unversioned_packages_have_a_name_and_no_approval(registry, model_tar):
    request = package_request(model_tar, ModelPackageName="standalone")
    del request["ModelPackageGroupName"]
    request["InferenceSpecification"]["SupportedTransformInstanceTypes"] = ["ml.m5.large"]
    request["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] = ["ml.m5.large"]
    assert registry.create_model_package(request)["ModelPackageArn"].endswith("model-package/standalone")
    described = registry.describe_model_package("standalone")
    assert "ModelApprovalStatus" not in described and "ModelPackageVersion" not in described


def test_a_client_token_makes_creation_idempotent(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    request = package_request(model_tar, ClientToken="token-1")
    first = registry.create_model_package(request)
    assert registry.create_model_package(request) == first
    with pytest.raises(Conflict, match="ClientToken token-1 was used for a different request"):
        registry.create_model_package({**request, "ModelPackageDescription": "another"})
    assert len(registry.list_model_packages()["ModelPackageSummaryList"]) == 1


def test_approval_and_lifecycle_changes_are_kept_in_the_history(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package(package_request(model_tar))
    registry.update_model_package(
        {"ModelPackageArn": "abalone/1", "ModelApprovalStatus": "Rejected", "ApprovalDescription": "accuracy too low"}
    )
    registry.update_model_package(
        {"ModelPackageArn": "abalone/1", "ModelApprovalStatus": "Approved", "ApprovalDescription": "retested"}
    )
    registry.update_model_package(
        {"ModelPackageArn": "abalone/1", "ModelLifeCycle": {"Stage": "Production", "StageStatus": "Live"}}
    )
    changes = [
        (h["Field"], h.get("From"), h.get("To"), h.get("Reason"), h["Who"])
        for h in registry.history("abalone/1")["History"]
    ]
    assert changes[1:] == [
        ("ModelApprovalStatus", None, "PendingManualApproval", None, "alice"),
        ("ModelApprovalStatus", "PendingManualApproval", "Rejected", "accuracy too low", "alice"),
        ("ModelApprovalStatus", "Rejected", "Approved", "retested", "alice"),
        ("ModelLifeCycle", None, "Production/Live", None, "alice"),
    ]
    assert registry.latest_approved("abalone").endswith("abalone/1")


def test_only_updatable_fields_change(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package(package_request(model_tar, CustomerMetadataProperties={"a": "1", "b": "2"}))
    registry.update_model_package(
        {
            "ModelPackageArn": "abalone/1",
            "CustomerMetadataProperties": {"c": "3"},
            "CustomerMetadataPropertiesToRemove": ["a"],
        }
    )
    assert registry.describe_model_package("abalone/1")["CustomerMetadataProperties"] == {"b": "2", "c": "3"}
    with pytest.raises(RegistryError, match="ModelPackageDescription"):
        registry.update_model_package({"ModelPackageArn": "abalone/1", "ModelPackageDescription": "new"})


def test_listing_filters_sorts_and_pages(registry, model_tar):
    for group in ("abalone", "sea-snail"):
        registry.create_model_package_group({"ModelPackageGroupName": group})
    for _ in range(3):
        registry.create_model_package(package_request(model_tar))
    registry.create_model_package(package_request(model_tar, group="sea-snail", ModelApprovalStatus="Approved"))
    listed = registry.list_model_packages(
        {"ModelPackageGroupName": "abalone", "SortOrder": "Ascending", "MaxResults": 2}
    )
    assert [p["ModelPackageVersion"] for p in listed["ModelPackageSummaryList"]] == [1, 2]
    rest = registry.list_model_packages(
        {
            "ModelPackageGroupName": "abalone",
            "SortOrder": "Ascending",
            "MaxResults": 2,
            "NextToken": listed["NextToken"],
        }
    )
    assert [p["ModelPackageVersion"] for p in rest["ModelPackageSummaryList"]] == [3]
    assert "NextToken" not in rest
    approved = registry.list_model_packages({"ModelApprovalStatus": "Approved"})["ModelPackageSummaryList"]
    assert [p["ModelPackageGroupName"] for p in approved] == ["sea-snail"]
    snails = registry.list_model_packages({"NameContains": "snail"})["ModelPackageSummaryList"]
    assert len(snails) == 1
    with pytest.raises(RegistryError, match="NextToken is not a token this registry handed out"):
        registry.list_model_packages({"NextToken": "garbage"})


def test_a_flipped_byte_is_refused_on_read_with_the_mismatch(registry, model_tar, tmp_path):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package(package_request(model_tar))
    url = registry.describe_model_package("abalone/1")["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    data = bytearray(Path(url).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(url).write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match="sha256 mismatch"):
        registry.model_directory("abalone/1", tmp_path / "unpacked")


def test_deleting_a_package_removes_its_artifact_when_no_other_package_uses_it(registry, model_tar):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package(package_request(model_tar))
    registry.create_model_package(package_request(model_tar))
    url = registry.describe_model_package("abalone/1")["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    registry.delete_model_package("abalone/1")
    assert Path(url).is_file()  # version 2 has the same bytes
    registry.delete_model_package("abalone/2")
    assert not Path(url).exists()
    assert registry.store.stored() == set()


def validation_request(model_tar: Path, data: Path, output: Path, **extra) -> dict:
    return package_request(
        model_tar,
        ValidationSpecification={
            "ValidationRole": "arn:aws:iam::000000000000:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "abalone-rows",
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(data)}},
                            "ContentType": "text/csv",
                            "SplitType": "Line",
                        },
                        "TransformOutput": {"S3OutputPath": str(output), "Accept": "text/csv"},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    },
                }
            ],
        },
        **extra,
    )


def test_validation_runs_a_real_transform_job(registry, model_tar, tmp_path):
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    good = tmp_path / "good" / "rows.csv"
    good.parent.mkdir()
    good.write_text("".join(",".join(r[1:]) + "\n" for r in read_abalone()[:50]))
    bad = tmp_path / "bad" / "rows.csv"
    bad.parent.mkdir()
    bad.write_text("length,diameter\n1,2\n")

    arn = registry.create_model_package(validation_request(model_tar, good.parent, tmp_path / "out-good"))
    pending = registry.describe_model_package(arn["ModelPackageArn"])
    assert pending["ModelPackageStatus"] == "Pending"  # the store runs nothing: validation is the caller's step
    assert pending["ModelPackageStatusDetails"]["ValidationStatuses"] == [
        {"Name": "abalone-rows", "Status": "NotStarted"}
    ]
    validate_package(registry, arn["ModelPackageArn"])
    passed = registry.describe_model_package("abalone/1")
    assert passed["ModelPackageStatus"] == "Completed"
    (status,) = passed["ModelPackageStatusDetails"]["ValidationStatuses"]
    assert status["Status"] == "Completed" and "local runtime" in status["ValidatedWith"]
    assert len((tmp_path / "out-good" / "rows.csv.out").read_text().splitlines()) == 50

    create_validated_package(registry, validation_request(model_tar, bad.parent, tmp_path / "out-bad"))
    failed = registry.describe_model_package("abalone/2")
    assert failed["ModelPackageStatus"] == "Failed"
    (status,) = failed["ModelPackageStatusDetails"]["ValidationStatuses"]
    assert "rows.csv" in status["FailureReason"] and "is not a number" in status["FailureReason"]
    with pytest.raises(Conflict, match="cannot be approved while its status is Failed"):
        registry.update_model_package({"ModelPackageArn": "abalone/2", "ModelApprovalStatus": "Approved"})

    create_validated_package(
        registry, validation_request(model_tar, bad.parent, tmp_path / "o3", SkipModelValidation="All")
    )
    assert registry.describe_model_package("abalone/3")["ModelPackageStatus"] == "Completed"
