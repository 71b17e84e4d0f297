"""``modelcrate card``: the commands as a user types them, against a registry under MODELCRATE_HOME."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from modelcrate.registry.artifacts import ArtifactStore
from modelcrate.registry.db import open_engine
from modelcrate.registry.service import Registry
from tests.cards.conftest import TRAINING_METRICS, card_content
from tests.conftest import MODELCRATE
from tests.registry.conftest import package_request


@pytest.fixture
def home(tmp_path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def card_cli(run_modelcrate, home):
    env = {
        "MODELCRATE_HOME": str(home),
        "MODELCRATE_USER": "carol",
        "COLUMNS": "200",
        "MODELCRATE_DATABASE_URL": None,
        "MODELCRATE_ARTIFACT_STORE": None,
    }

    def run(*args) -> subprocess.CompletedProcess:
        return run_modelcrate("card", *args, env=env)

    return run


def test_create_update_describe_diff_export_delete(card_cli, tmp_path):
    content = tmp_path / "card.json"
    content.write_text(json.dumps(card_content()))
    created = card_cli("create", "abalone-card", "--content", content)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ModelCardArn"].endswith(":model-card/abalone-card")

    changed = card_content(intended_uses={"risk_rating": "High"})
    assert card_cli("update", "abalone-card", "--content", json.dumps(changed)).returncode == 0
    assert card_cli("update", "abalone-card", "--status", "PendingReview").returncode == 0

    latest = json.loads(card_cli("describe", "abalone-card").stdout)
    assert (latest["ModelCardVersion"], latest["ModelCardStatus"]) == (2, "PendingReview")
    assert latest["CreatedBy"] == {"UserProfileName": "carol"}
    first = json.loads(card_cli("describe", "abalone-card", "--version", "1").stdout)
    assert first["Content"]["intended_uses"]["risk_rating"] == "Medium"
    versions = json.loads(card_cli("list-versions", "abalone-card").stdout)["ModelCardVersionSummaryList"]
    assert [v["ModelCardVersion"] for v in versions] == [1, 2]
    listed = json.loads(card_cli("list", "--status", "PendingReview").stdout)["ModelCardSummaries"]
    assert [s["ModelCardName"] for s in listed] == ["abalone-card"]

    table = card_cli("diff", "abalone-card", "1", "2")
    assert table.returncode == 0, table.stderr
    assert "abalone-card: version 1 -> 2" in table.stdout
    assert "$.intended_uses.purpose_of_model" in table.stdout
    assert "(absent)" in table.stdout
    risk_row = next(line for line in table.stdout.splitlines() if "$.intended_uses.risk_rating" in line)
    assert '"Medium"' in risk_row and '"High"' in risk_row
    changes = json.loads(card_cli("diff", "abalone-card", "1", "2", "--json").stdout)
    assert {"Path": "$.intended_uses.risk_rating", "Old": "Medium", "New": "High"} in changes

    exported = card_cli("export", "abalone-card", "--format", "md", "--output", tmp_path / "card.md")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["Status"] == "Completed"
    assert "- **Risk rating:** High" in (tmp_path / "card.md").read_text()

    assert json.loads(card_cli("delete", "abalone-card").stdout) == {}
    gone = card_cli("describe", "abalone-card")
    assert gone.returncode == 1
    assert "An error occurred (ResourceNotFound) when calling the DescribeModelCard operation: model card " in (
        gone.stderr
    )


def test_errors_name_what_was_wrong_and_where(card_cli, tmp_path):
    bad = card_cli("create", "bad-card", "--content", json.dumps({"intended_uses": {"risk_rating": "Extreme"}}))
    assert bad.returncode == 2
    assert "(ValidationException) when calling the CreateModelCard operation" in bad.stderr
    assert "$.intended_uses.risk_rating: 'Extreme' is not one of" in bad.stderr

    assert card_cli("create", "good-card", "--content", "{}").returncode == 0
    both = card_cli("update", "good-card", "--content", "{}", "--status", "Approved")
    assert both.returncode == 2
    assert "not both at once" in both.stderr

    neither = card_cli("create", "other-card")
    assert neither.returncode == 2
    assert "give either --content or --from-package" in neither.stderr

    missing = card_cli("create", "other-card", "--content", tmp_path / "nothing.json")
    assert missing.returncode == 2
    assert "is neither JSON nor a readable file" in missing.stderr


def test_create_from_a_package_and_clone(card_cli, home, model_tar):
    registry = Registry(open_engine(f"sqlite:///{home / 'registry.db'}"), ArtifactStore(str(home / "artifacts")))
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    for _ in range(2):
        registry.create_model_package(package_request(model_tar, CustomerMetadataProperties=TRAINING_METRICS))
    registry.engine.dispose()

    created = card_cli("create", "abalone-v1", "--from-package", "abalone/1", "--status", "PendingReview")
    assert created.returncode == 0, created.stderr
    card = json.loads(card_cli("describe", "abalone-v1").stdout)
    assert card["ModelCardStatus"] == "PendingReview"
    assert card["Content"]["model_package_details"]["model_package_arn"].endswith(":model-package/abalone/1")
    metrics = card["Content"]["training_details"]["training_job_details"]["training_metrics"]
    assert {"name": "accuracy", "value": 0.9312} in metrics

    cloned = card_cli("clone", "abalone-v1", "abalone-v2", "--package", "abalone/2")
    assert cloned.returncode == 0, cloned.stderr
    clone = json.loads(card_cli("describe", "abalone-v2").stdout)
    assert clone["Content"]["model_package_details"]["model_package_arn"].endswith(":model-package/abalone/2")

    again = card_cli("create", "abalone-v1-again", "--from-package", "abalone/1")
    assert again.returncode == 1
    assert "(ConflictException)" in again.stderr and "already has a model card (abalone-v1)" in again.stderr


def test_help_teaches_the_commands(card_cli):
    shown = card_cli("--help")
    assert shown.returncode == 0
    for command in ("create", "update", "describe", "list", "list-versions", "diff", "export", "delete", "clone"):
        assert command in shown.stdout
    assert "MODELCRATE_CARD_TEMPLATES" in card_cli("export", "--help").stdout


def test_the_aws_card_commands_and_flags(card_cli, tmp_path):
    content = tmp_path / "card.json"
    content.write_text(json.dumps(card_content()))
    created = card_cli(
        "create-model-card",
        "--model-card-name",
        "abalone-card",
        "--content",
        f"file://{content}",
        "--model-card-status",
        "Draft",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ModelCardArn"].endswith(":model-card/abalone-card")
    changed = json.dumps(card_content(intended_uses={"risk_rating": "High"}))
    assert card_cli("update-model-card", "--model-card-name", "abalone-card", "--content", changed).returncode == 0
    reviewed = card_cli(
        "update-model-card", "--model-card-name", "abalone-card", "--model-card-status", "PendingReview"
    )
    assert reviewed.returncode == 0, reviewed.stderr
    first = card_cli(
        "describe-model-card",
        "--model-card-name",
        "abalone-card",
        "--model-card-version",
        "1",
        "--query",
        "[ModelCardVersion, ModelCardStatus]",
    )
    assert json.loads(first.stdout) == [1, "PendingReview"]
    versions = card_cli("list-model-card-versions", "--model-card-name", "abalone-card", "--output", "yaml")
    assert [v["ModelCardVersion"] for v in yaml.safe_load(versions.stdout)["ModelCardVersionSummaryList"]] == [1, 2]

    # The short commands take the AWS spelling too.
    assert card_cli("update", "abalone-card", "--model-card-status", "Approved").returncode == 0
    listed = json.loads(card_cli("list", "--model-card-status", "Approved").stdout)["ModelCardSummaries"]
    assert [s["ModelCardName"] for s in listed] == ["abalone-card"]

    refused = card_cli("update-model-card", "--model-card-name", "abalone-card", "--model-card-status", "Done")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "'Done'" in refused.stderr
    missing = card_cli("create-model-card", "--model-card-name", "other", "--content", "{}")
    assert missing.returncode == 2
    assert "the following arguments are required: --model-card-status" in missing.stderr
    assert json.loads(card_cli("delete-model-card", "--model-card-name", "abalone-card").stdout) == {}


@pytest.fixture
def modelcrate_on(database, tmp_path):
    """``modelcrate`` against the test's database (SQLite or PostgreSQL)."""
    env = {
        **os.environ,
        "MODELCRATE_DATABASE_URL": database,
        "MODELCRATE_ARTIFACT_STORE": str(tmp_path / "artifacts"),
        "MODELCRATE_HOME": str(tmp_path / "home"),
        "MODELCRATE_USER": "carol",
        "COLUMNS": "200",
    }

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([MODELCRATE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    return run


def test_registering_version_n_plus_1_yields_a_draft_card_linked_to_it(modelcrate_on, model_dir):
    assert modelcrate_on("registry", "register", model_dir, "--group", "abalone").returncode == 0
    assert modelcrate_on("card", "create", "abalone-card", "--from-package", "abalone/1").returncode == 0
    content = json.loads(modelcrate_on("card", "describe", "abalone-card").stdout)["Content"]
    content["business_details"] = card_content()["business_details"]
    assert modelcrate_on("card", "update", "abalone-card", "--content", json.dumps(content)).returncode == 0

    registered = modelcrate_on("registry", "register", model_dir, "--group", "abalone")
    assert registered.returncode == 0, registered.stderr
    assert "abalone-v2 (Draft), carried over from abalone-card version 2 (abalone version 1)" in registered.stderr
    card = json.loads(modelcrate_on("card", "describe", "abalone-v2").stdout)
    assert card["ModelCardStatus"] == "Draft"
    assert card["Content"]["model_package_details"]["model_package_arn"].endswith(":model-package/abalone/2")
    assert card["Content"]["business_details"] == card_content()["business_details"]

    skipped = modelcrate_on("registry", "register", model_dir, "--group", "abalone", "--no-carry-card")
    assert skipped.returncode == 0, skipped.stderr
    assert "carried over" not in skipped.stderr
    assert modelcrate_on("card", "describe", "abalone-v3").returncode == 1


def test_cross_group_clone_package_delete_and_unchanged_update_say_so_in_one_line(modelcrate_on, model_dir):
    for group in ("abalone", "rings"):
        assert modelcrate_on("registry", "register", model_dir, "--group", group).returncode == 0
    assert modelcrate_on("card", "create", "abalone-card", "--from-package", "abalone/1").returncode == 0

    refused = modelcrate_on("card", "clone", "abalone-card", "rings-card", "--package", "rings/1")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "abalone" in refused.stderr and "rings" in refused.stderr and "--allow-other-group" in refused.stderr
    allowed = modelcrate_on(
        "card", "clone", "abalone-card", "rings-card", "--package", "rings/1", "--allow-other-group"
    )
    assert allowed.returncode == 0, allowed.stderr

    kept = modelcrate_on("registry", "delete-model-package", "--model-package-name", "abalone/1")
    assert kept.returncode == 1 and len(kept.stderr.strip().splitlines()) == 1
    assert "abalone-card" in kept.stderr and "delete the card" in kept.stderr

    content = json.loads(modelcrate_on("card", "describe", "abalone-card").stdout)["Content"]
    same = modelcrate_on("card", "update", "abalone-card", "--content", json.dumps(content))
    assert same.returncode == 0, same.stderr
    assert same.stdout == "" and len(same.stderr.strip().splitlines()) == 1
    assert "no new version" in same.stderr
    assert json.loads(modelcrate_on("card", "describe", "abalone-card").stdout)["ModelCardVersion"] == 1
