"""Cards linked to package versions: filled from the package, one card per model, cloned for a new version."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelcrate.registry.models import ModelCardExport, ModelCardVersion
from modelcrate.registry.service import Conflict, NotFound, RegistryError
from tests.cards.conftest import card_content


def test_a_card_from_a_package_is_filled_from_what_the_registry_knows(cards, packages, registry):
    cards.create_from_package("abalone-v1", "abalone/1")
    content = cards.describe_model_card("abalone-v1")["Content"]
    package = registry.describe_model_package("abalone/1")
    url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert content["model_overview"] == {
        "model_name": "abalone",
        "model_version": 1,
        "model_description": "first model",
        "problem_type": "classification",
        "model_artifact": [url],
        "inference_environment": {"container_image": ["abalone:latest"]},
    }
    details = content["model_package_details"]
    assert details["model_package_arn"] == packages[0]
    assert (details["model_package_group_name"], details["model_package_version"]) == ("abalone", 1)
    assert details["model_approval_status"] == "Approved"
    assert details["inference_specification"] == {
        "containers": [{"container_image": "abalone:latest", "model_data_url": url, "framework": "XGBOOST"}]
    }
    metrics = content["training_details"]["training_job_details"]["training_metrics"]
    assert metrics == [
        {"name": "accuracy", "value": 0.9312},
        {"name": "log_loss", "value": 0.41},
        {"name": "rounds", "value": 120},
    ]


def test_a_card_for_a_missing_package_is_refused(cards, packages):
    with pytest.raises(NotFound, match="abalone/9 does not exist"):
        cards.create_from_package("ghost", "abalone/9")
    content = card_content(model_package_details={"model_package_arn": packages[0].replace("/1", "/9")})
    with pytest.raises(
        NotFound, match=r"\$\.model_package_details\.model_package_arn: model package .* does not exist"
    ):
        cards.create_model_card({"ModelCardName": "ghost", "Content": content})


def test_one_card_per_model_id(cards):
    cards.create_model_card({"ModelCardName": "first", "Content": card_content()})
    with pytest.raises(Conflict, match=r"model abalone-sex already has a model card \(first\)"):
        cards.create_model_card({"ModelCardName": "second", "Content": card_content()})
    cards.create_model_card({"ModelCardName": "second", "Content": card_content(model_overview=None)})
    with pytest.raises(Conflict, match="already has a model card"):
        cards.update_model_card({"ModelCardName": "second", "Content": card_content()})


def test_one_card_per_package_version_when_there_is_no_model_id(cards, packages):
    cards.create_from_package("abalone-v1", "abalone/1")
    with pytest.raises(Conflict, match=f"model {packages[0]} already has a model card"):
        cards.create_from_package("abalone-v1-again", "abalone/1")
    cards.create_from_package("abalone-v2", "abalone/2")


def test_a_cards_model_id_is_set_once(cards, packages):
    cards.create_model_card({"ModelCardName": "unlinked", "Content": card_content(model_overview=None)})
    cards.update_model_card({"ModelCardName": "unlinked", "Content": card_content()})  # set: allowed once
    moved = card_content(model_overview={"model_id": "another-model"})
    with pytest.raises(RegistryError, match="documents model abalone-sex, set once: the new content names another"):
        cards.update_model_card({"ModelCardName": "unlinked", "Content": moved})
    with pytest.raises(RegistryError, match="set once: the new content names no model"):
        cards.update_model_card({"ModelCardName": "unlinked", "Content": card_content(model_overview=None)})
    assert cards.describe_model_card("unlinked")["ModelCardVersion"] == 2

    cards.create_from_package("abalone-v1", "abalone/1")
    content = cards.describe_model_card("abalone-v1")["Content"]
    content["model_package_details"]["model_package_arn"] = packages[1]
    with pytest.raises(RegistryError, match=f"documents model {packages[0]}, set once"):
        cards.update_model_card({"ModelCardName": "abalone-v1", "Content": content})


def test_clone_carries_the_business_sections_over_and_points_at_the_new_version(cards, packages):
    cards.create_from_package("abalone-v1", "abalone/1")
    content = cards.describe_model_card("abalone-v1")["Content"]
    carried = {key: card_content()[key] for key in ("business_details", "intended_uses", "additional_information")}
    cards.update_model_card({"ModelCardName": "abalone-v1", "Content": {**content, **carried}})

    cards.clone("abalone-v1", "abalone-v2", "abalone/2")
    clone = cards.describe_model_card("abalone-v2")
    assert (clone["ModelCardVersion"], clone["ModelCardStatus"]) == (1, "Draft")
    for section, value in carried.items():
        assert clone["Content"][section] == value
    assert clone["Content"]["model_package_details"]["model_package_arn"] == packages[1]
    assert clone["Content"]["model_overview"]["model_version"] == 2
    assert clone["Content"]["model_overview"]["model_description"] == "second model"
    assert "evaluation_details" not in clone["Content"]  # evaluated on the old version: not carried over
    with pytest.raises(Conflict, match="already has a model card"):
        cards.clone("abalone-v1", "abalone-v2-again", "abalone/2")


def test_delete_removes_every_version_and_export(cards, registry, tmp_path):
    cards.create_model_card({"ModelCardName": "doomed", "Content": card_content()})
    cards.update_model_card({"ModelCardName": "doomed", "Content": card_content(business_details=None)})
    cards.export_job("doomed", 1, "md", tmp_path / "doomed.md")

    def rows(table) -> int:
        with Session(registry.engine) as session:
            return session.scalar(select(func.count()).select_from(table))

    assert (rows(ModelCardVersion), rows(ModelCardExport)) == (2, 1)
    assert cards.delete_model_card("doomed") == {}
    assert (rows(ModelCardVersion), rows(ModelCardExport)) == (0, 0)
    with pytest.raises(NotFound):
        cards.describe_model_card("doomed")
    # The model is free again: a new card may document it.
    cards.create_model_card({"ModelCardName": "reborn", "Content": card_content()})
