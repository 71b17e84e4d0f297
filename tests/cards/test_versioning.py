"""Versions: content changes make immutable versions N+1, status changes make none, Archived is final."""

from __future__ import annotations

import json

import pytest

from modelcrate.registry.service import Conflict, NotFound, RegistryError
from tests.cards.conftest import card_content


def test_create_makes_version_one_as_draft(cards):
    answer = cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    assert answer == {"ModelCardArn": "arn:aws:sagemaker:local:000000000000:model-card/abalone-card"}
    described = cards.describe_model_card("abalone-card")
    assert described["ModelCardVersion"] == 1
    assert described["ModelCardStatus"] == "Draft"
    assert described["Content"] == card_content()
    assert described["CreatedBy"] == described["LastModifiedBy"] == {"UserProfileName": "alice"}
    assert described["CreationTime"].endswith("+00:00")


def test_content_given_as_a_json_string_is_stored_as_a_document(cards):
    cards.create_model_card(
        {"ModelCardName": "from-text", "Content": json.dumps(card_content()), "ModelCardStatus": "PendingReview"}
    )
    described = cards.describe_model_card("from-text")
    assert described["Content"] == card_content()
    assert described["ModelCardStatus"] == "PendingReview"


def test_a_content_change_makes_a_new_version_and_keeps_the_old_one_as_it_was(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    changed = card_content(intended_uses={"risk_rating": "High"})
    cards.update_model_card({"ModelCardName": "abalone-card", "Content": changed})
    cards.update_model_card({"ModelCardName": "abalone-card", "Content": card_content(business_details=None)})

    assert cards.describe_model_card("abalone-card")["ModelCardVersion"] == 3
    assert cards.describe_model_card("abalone-card", 1)["Content"] == card_content()
    assert cards.describe_model_card("abalone-card", 2)["Content"] == changed
    assert "business_details" not in cards.describe_model_card("abalone-card", 3)["Content"]
    versions = cards.list_model_card_versions("abalone-card")["ModelCardVersionSummaryList"]
    assert [v["ModelCardVersion"] for v in versions] == [1, 2, 3]


def test_a_status_change_makes_no_version(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    cards.update_model_card({"ModelCardName": "abalone-card", "ModelCardStatus": "PendingReview"})
    cards.update_model_card({"ModelCardName": "abalone-card", "ModelCardStatus": "Approved"})
    described = cards.describe_model_card("abalone-card")
    assert (described["ModelCardVersion"], described["ModelCardStatus"]) == (1, "Approved")
    assert len(cards.list_model_card_versions("abalone-card")["ModelCardVersionSummaryList"]) == 1


def test_content_and_status_in_one_update_is_refused_and_changes_nothing(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    with pytest.raises(RegistryError, match="not both at once"):
        cards.update_model_card(
            {"ModelCardName": "abalone-card", "Content": card_content(), "ModelCardStatus": "Approved"}
        )
    described = cards.describe_model_card("abalone-card")
    assert (described["ModelCardVersion"], described["ModelCardStatus"]) == (1, "Draft")


def test_an_update_with_nothing_to_change_is_refused(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    with pytest.raises(RegistryError, match=r"needs Content .* or ModelCardStatus"):
        cards.update_model_card({"ModelCardName": "abalone-card"})


def test_an_archived_card_refuses_every_change_but_can_be_read_and_exported(cards):
    cards.create_model_card({"ModelCardName": "old-card", "Content": card_content()})
    cards.update_model_card({"ModelCardName": "old-card", "ModelCardStatus": "Archived"})
    with pytest.raises(Conflict, match="Archived"):
        cards.update_model_card({"ModelCardName": "old-card", "Content": card_content(business_details=None)})
    with pytest.raises(Conflict, match="Archived"):
        cards.update_model_card({"ModelCardName": "old-card", "ModelCardStatus": "Draft"})
    described = cards.describe_model_card("old-card")
    assert (described["ModelCardVersion"], described["ModelCardStatus"]) == (1, "Archived")
    assert "Model card: old-card" in cards.export("old-card", None, "md").decode()


def test_unknown_cards_and_versions_are_not_found(cards):
    with pytest.raises(NotFound, match="model card ghost does not exist"):
        cards.describe_model_card("ghost")
    with pytest.raises(NotFound):
        cards.update_model_card({"ModelCardName": "ghost", "Content": card_content()})
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    with pytest.raises(NotFound, match=r"has no version 4 .*1 to 1"):
        cards.describe_model_card("abalone-card", 4)


def test_a_second_card_with_the_same_name_is_a_conflict(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": {}})
    with pytest.raises(Conflict, match="abalone-card already exists"):
        cards.create_model_card({"ModelCardName": "abalone-card", "Content": {}})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"ModelCardName": "bad name", "Content": {}}, "ModelCardName: 'bad name' has the wrong form"),
        ({"ModelCardName": "-card", "Content": {}}, "ModelCardName: '-card' has the wrong form"),
        (
            {"ModelCardName": "card", "Content": {}, "ModelCardStatus": "Done"},
            "ModelCardStatus: 'Done' is not a choice",
        ),
        ({"ModelCardName": "card"}, "Content: required"),
        (
            {"ModelCardName": "card", "Content": {}, "ModelCardStatus": "Draft", "SecurityConfig": {"KmsKeyId": "k"}},
            "SecurityConfig: is not supported by modelcrate: it encrypts with an AWS KMS key",
        ),
    ],
)
def test_malformed_create_requests_are_refused_with_the_field_named(cards, request_, message):
    with pytest.raises(RegistryError, match=message):
        cards.create_model_card(request_)


def test_list_filters_sorts_and_pages(cards):
    for name in ("beta-card", "alpha-card", "gamma-card"):
        cards.create_model_card({"ModelCardName": name, "Content": {}})
    cards.update_model_card({"ModelCardName": "beta-card", "ModelCardStatus": "Approved"})

    newest_first = cards.list_model_cards()["ModelCardSummaries"]
    assert [s["ModelCardName"] for s in newest_first] == ["gamma-card", "alpha-card", "beta-card"]
    by_name = cards.list_model_cards({"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 2})
    assert [s["ModelCardName"] for s in by_name["ModelCardSummaries"]] == ["alpha-card", "beta-card"]
    rest = cards.list_model_cards(
        {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 2, "NextToken": by_name["NextToken"]}
    )
    assert [s["ModelCardName"] for s in rest["ModelCardSummaries"]] == ["gamma-card"]
    assert "NextToken" not in rest
    approved = cards.list_model_cards({"ModelCardStatus": "Approved"})["ModelCardSummaries"]
    assert [(s["ModelCardName"], s["ModelCardStatus"]) for s in approved] == [("beta-card", "Approved")]
    assert [s["ModelCardName"] for s in cards.list_model_cards({"NameContains": "alp"})["ModelCardSummaries"]] == [
        "alpha-card"
    ]
    with pytest.raises(RegistryError, match="SortBy: 'Size' is not a choice here"):
        cards.list_model_cards({"SortBy": "Size"})
