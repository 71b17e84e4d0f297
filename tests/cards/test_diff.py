"""Diff between two versions: each changed leaf field, with old and new values, in path order."""

from __future__ import annotations

import copy

import pytest

from modelcrate.registry.service import NotFound
from tests.cards.conftest import card_content


def test_diff_lists_changed_added_and_removed_fields_in_path_order(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    changed = copy.deepcopy(card_content(business_details=None))
    changed["intended_uses"]["risk_rating"] = "High"
    changed["model_overview"]["model_creator"] = "data-team"
    metrics = changed["evaluation_details"][0]["metric_groups"][0]["metric_data"]
    metrics[0]["value"] = 0.83
    metrics[2]["value"] = 1  # a number where a boolean was: a change, although 1 == True in Python
    metrics[2]["type"] = "number"
    cards.update_model_card({"ModelCardName": "abalone-card", "Content": changed})

    metric = "$.evaluation_details[0].metric_groups[0].metric_data"
    assert cards.diff("abalone-card", 1, 2) == [
        {"Path": "$.business_details.business_problem", "Old": "Manual sexing is slow", "New": None},
        {"Path": "$.business_details.line_of_business", "Old": "Fisheries", "New": None},
        {"Path": f"{metric}[0].value", "Old": 0.8123, "New": 0.83},
        {"Path": f"{metric}[2].type", "Old": "boolean", "New": "number"},
        {"Path": f"{metric}[2].value", "Old": True, "New": 1},
        {"Path": "$.intended_uses.risk_rating", "Old": "Medium", "New": "High"},
        {"Path": "$.model_overview.model_creator", "Old": None, "New": "data-team"},
    ]
    reverse = cards.diff("abalone-card", 2, 1)
    assert [(c["Path"], c["Old"], c["New"]) for c in reverse][-2:] == [
        ("$.intended_uses.risk_rating", "High", "Medium"),
        ("$.model_overview.model_creator", "data-team", None),
    ]
    assert cards.diff("abalone-card", 2, 2) == []


def test_list_indexes_sort_as_numbers(cards):
    points = [[i, i] for i in range(12)]
    graph = {"name": "g", "type": "linear_graph", "value": points}
    content = {"evaluation_details": [{"name": "e", "metric_groups": [{"name": "m", "metric_data": [graph]}]}]}
    cards.create_model_card({"ModelCardName": "graph-card", "Content": content})
    moved = copy.deepcopy(content)
    moved["evaluation_details"][0]["metric_groups"][0]["metric_data"][0]["value"] = [[i, i + 1] for i in range(12)]
    cards.update_model_card({"ModelCardName": "graph-card", "Content": moved})
    paths = [change["Path"] for change in cards.diff("graph-card", 1, 2)]
    assert [path.rsplit("value", 1)[1] for path in paths] == [f"[{i}][1]" for i in range(12)]


def test_diff_of_a_missing_version_is_not_found(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    with pytest.raises(NotFound, match="has no version 2"):
        cards.diff("abalone-card", 1, 2)
