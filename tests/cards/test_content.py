"""Content is checked against the model card schema; each violation is reported at its JSON path."""

from __future__ import annotations

import json

import pytest

from modelcrate.cards.content import MAX_CONTENT_CHARS, ContentError
from modelcrate.registry.service import RegistryError
from tests.cards.conftest import card_content


def violations_of(cards, content) -> dict[str, str]:
    with pytest.raises(ContentError) as caught:
        cards.create_model_card({"ModelCardName": "checked", "Content": content})
    return {v["Path"]: v["Message"] for v in caught.value.violations}


def test_every_violation_is_reported_with_its_path(cards):
    content = card_content(
        intended_uses={"risk_rating": "Extreme"},
        model_overview={"model_version": "one", "model_name": "abalone", "colour": "red"},
    )
    content["evaluation_details"][0]["metric_groups"][0]["metric_data"][0]["value"] = "high"
    found = violations_of(cards, content)
    assert set(found) == {
        "$.evaluation_details[0].metric_groups[0].metric_data[0].value",
        "$.intended_uses.risk_rating",
        "$.model_overview.colour",
        "$.model_overview.model_version",
    }
    assert "'Extreme' is not one of ['High', 'Medium', 'Low', 'Unknown']" in found["$.intended_uses.risk_rating"]
    assert "'colour' is not a field here" in found["$.model_overview.colour"]
    assert "not of type 'number'" in found["$.evaluation_details[0].metric_groups[0].metric_data[0].value"]
    with pytest.raises(RegistryError, match=r"4 violation\(s\)\): \$\.evaluation_details\[0\]"):
        cards.create_model_card({"ModelCardName": "checked", "Content": content})


def test_unknown_sections_are_refused(cards):
    assert "'model_notes' is not a field here" in violations_of(cards, {"model_notes": "x"})["$.model_notes"]


def test_each_metric_type_has_its_own_shape(cards):
    metrics = [
        {"name": "ok", "type": "boolean", "value": "yes"},
        {"name": "curve", "type": "linear_graph", "value": [[0, 1, 2]]},
        {"name": "bars", "type": "bar_chart", "value": ["tall"]},
        {"name": "big", "type": "matrix", "value": [[0] * 21]},
        {"name": "pie", "type": "pie_chart", "value": 1},
        {"name": "no-value", "type": "number"},
    ]
    content = {"evaluation_details": [{"name": "e", "metric_groups": [{"name": "g", "metric_data": metrics}]}]}
    found = violations_of(cards, content)
    prefix = "$.evaluation_details[0].metric_groups[0].metric_data"
    assert set(found) == {
        f"{prefix}[0].value",
        f"{prefix}[1].value[0]",
        f"{prefix}[2].value[0]",
        f"{prefix}[3].value[0]",
        f"{prefix}[4].type",
        f"{prefix}[5]",
    }
    assert "is too long" in found[f"{prefix}[3].value[0]"]  # 21 columns: a matrix is at most 20 x 20
    assert "'value' is a required property" in found[f"{prefix}[5]"]


def test_a_matrix_of_twenty_by_twenty_is_accepted_and_one_more_row_is_not(cards):
    def with_matrix(rows: int) -> dict:
        matrix = {"name": "confusion", "type": "matrix", "value": [[1] * 20] * rows}
        return {"evaluation_details": [{"name": "e", "metric_groups": [{"name": "g", "metric_data": [matrix]}]}]}

    cards.create_model_card({"ModelCardName": "square", "Content": with_matrix(20)})
    path = "$.evaluation_details[0].metric_groups[0].metric_data[0].value"
    assert "is too long" in violations_of(cards, with_matrix(21))[path]


def test_content_over_100000_characters_is_refused(cards):
    notes = "x" * 2000
    custom = {f"note-{i}": notes for i in range(50)}
    content = {"additional_information": {"custom_details": custom}}
    assert len(json.dumps(content, separators=(",", ":"))) > MAX_CONTENT_CHARS
    with pytest.raises(RegistryError, match=r"Content: has 100\d{3} characters \(allowed: at most 100000\)"):
        cards.create_model_card({"ModelCardName": "huge", "Content": content})


def test_content_that_is_not_a_json_object_is_refused(cards):
    with pytest.raises(RegistryError, match="Content is not valid JSON"):
        cards.create_model_card({"ModelCardName": "broken", "Content": "{not json"})
    with pytest.raises(RegistryError, match="Content must be a JSON object"):
        cards.create_model_card({"ModelCardName": "broken", "Content": "[1, 2]"})


def test_updates_are_checked_too_and_a_refused_update_makes_no_version(cards):
    cards.create_model_card({"ModelCardName": "checked", "Content": card_content()})
    with pytest.raises(ContentError) as caught:
        cards.update_model_card({"ModelCardName": "checked", "Content": card_content(intended_uses={"risk_rating": 3})})
    assert [v["Path"] for v in caught.value.violations] == ["$.intended_uses.risk_rating"]
    assert cards.describe_model_card("checked")["ModelCardVersion"] == 1
