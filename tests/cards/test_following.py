"""Cards follow the versions: a new version gets a Draft card carried over from the card of the version before it;
clones stay in their group; a documented package cannot be deleted; an update that changes nothing makes no
version."""

from __future__ import annotations

import pytest

from modelcrate.registration import register
from modelcrate.registry.service import Conflict
from tests.cards.conftest import card_content
from tests.registry.conftest import package_request

CARRIED = ("business_details", "intended_uses", "additional_information")


def _documented_first_version(cards, registry, model_tar) -> str:
    """abalone/1 registered, with a card (abalone-card) that has every section; the package's ARN."""
    first = register(registry, package_request(model_tar, ModelPackageDescription="first model")).package
    cards.create_from_package("abalone-card", "abalone/1")
    content = cards.describe_model_card("abalone-card")["Content"]
    added = {key: card_content()[key] for key in (*CARRIED, "evaluation_details")}
    cards.update_model_card({"ModelCardName": "abalone-card", "Content": {**content, **added}})
    return first["ModelPackageArn"]


def test_registering_version_n_plus_1_yields_a_draft_card_linked_to_it(cards, registry, model_tar):
    first = _documented_first_version(cards, registry, model_tar)

    registered = register(registry, package_request(model_tar, ModelPackageDescription="second model"))

    card = registered.card
    assert card["ModelCardName"] == "abalone-v2"
    assert (card["ModelCardVersion"], card["ModelCardStatus"]) == (1, "Draft")
    content = card["Content"]
    assert content["model_package_details"]["model_package_arn"] == registered.package["ModelPackageArn"]
    assert content["model_overview"]["model_description"] == "second model"
    for section in CARRIED:
        assert content[section] == card_content()[section]
    assert "evaluation_details" not in content  # evaluated on version 1: says nothing about version 2
    assert card["CarriedOverFrom"] == {
        "ModelCardName": "abalone-card",
        "ModelCardVersion": 2,
        "ModelPackageArn": first,
        "ModelPackageVersion": 1,
    }
    assert cards.describe_model_card("abalone-v2") == card


def test_no_card_is_carried_over_when_asked_not_to_or_when_there_is_none(cards, registry, model_tar):
    assert register(registry, package_request(model_tar)).card is None  # version 1: nothing before it
    assert register(registry, package_request(model_tar)).card is None  # version 1 has no card
    cards.create_from_package("abalone-card", "abalone/2")

    assert register(registry, package_request(model_tar), carry_card=False).card is None
    assert [c["ModelCardName"] for c in cards.list_model_cards()["ModelCardSummaries"]] == ["abalone-card"]


def test_the_card_follows_the_latest_version_still_registered(cards, registry, model_tar):
    _documented_first_version(cards, registry, model_tar)
    register(registry, package_request(model_tar), carry_card=False)
    registry.delete_model_package("abalone/2")

    card = register(registry, package_request(model_tar)).card
    assert card["ModelCardName"] == "abalone-v3"
    assert card["CarriedOverFrom"]["ModelCardName"] == "abalone-card"


def test_clone_onto_another_groups_package_is_refused_unless_allowed(cards, packages, registry, model_tar):
    cards.create_from_package("abalone-v1", "abalone/1")
    registry.create_model_package_group({"ModelPackageGroupName": "rings"})
    registry.create_model_package(package_request(model_tar, group="rings"))

    with pytest.raises(Conflict) as refused:
        cards.clone("abalone-v1", "rings-v1", "rings/1")
    message = str(refused.value)
    assert "\n" not in message
    assert "abalone" in message and "rings" in message and "--allow-other-group" in message
    assert cards.list_model_cards()["ModelCardSummaries"][0]["ModelCardName"] == "abalone-v1"

    cards.clone("abalone-v1", "rings-v1", "rings/1", allow_other_group=True)
    clone = cards.describe_model_card("rings-v1")
    assert clone["Content"]["model_package_details"]["model_package_group_name"] == "rings"
    assert clone["CarriedOverFrom"]["ModelCardName"] == "abalone-v1"


def test_deleting_a_package_a_card_documents_is_refused(cards, packages, registry):
    cards.create_from_package("abalone-v1", "abalone/1")

    with pytest.raises(Conflict) as refused:
        registry.delete_model_package("abalone/1")
    message = str(refused.value)
    assert "\n" not in message
    assert "abalone-v1" in message and "delete the card" in message
    assert registry.describe_model_package("abalone/1")["ModelPackageVersion"] == 1

    registry.delete_model_package("abalone/2")  # no card documents it
    cards.delete_model_card("abalone-v1")
    registry.delete_model_package("abalone/1")


def test_an_update_with_the_content_it_has_makes_no_new_version(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})

    same = cards.update_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    assert same["ContentChanged"] is False and same["ModelCardVersion"] == 1
    assert cards.describe_model_card("abalone-card")["ModelCardVersion"] == 1
    assert len(cards.list_model_card_versions("abalone-card")["ModelCardVersionSummaryList"]) == 1

    changed = cards.update_model_card(
        {"ModelCardName": "abalone-card", "Content": card_content(intended_uses={"risk_rating": "High"})}
    )
    assert changed["ContentChanged"] is True and changed["ModelCardVersion"] == 2
