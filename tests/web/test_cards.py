"""The model card pages over HTTP: content, versions, diff, status, exports, and the link from the package."""

from __future__ import annotations

import html

from tests.web.conftest import CARD, PURPOSES, card_with_three_versions, register


def test_card_page_shows_the_content_and_links_to_its_package(console, model_tar):
    card_with_three_versions(console.registry, model_tar)
    client = console.client()

    listed = client.get("/cards")
    assert listed.status == 200 and f'href="/cards/{CARD}"' in listed.text

    latest = client.get(f"/cards/{CARD}")
    assert latest.status == 200
    assert f"{CARD} · version 3" in latest.text
    assert html.escape(PURPOSES[1]) in latest.text and "Intended uses" in latest.text
    assert 'href="/packages/abalone/1"' in latest.text  # model_package_details.model_package_arn
    assert "accuracy" in latest.text and "0.912" in latest.text
    for fmt in ("pdf", "html", "md"):
        assert f"/cards/{CARD}/export?version=3&amp;format={fmt}" in latest.text

    first = client.get(f"/cards/{CARD}?version=1")
    assert f"{CARD} · version 1" in first.text and "Intended uses" not in first.text

    package = client.get("/packages/abalone/1")
    assert f'href="/cards/{CARD}"' in package.text

    missing = client.get(f"/cards/{CARD}?version=9")
    assert missing.status == 404 and "has no version 9" in missing.text


def test_diff_between_versions(console, model_tar):
    card_with_three_versions(console.registry, model_tar)
    diff = console.client().get(f"/cards/{CARD}/diff?a=2&b=3")
    assert diff.status == 200
    assert "intended_uses.purpose_of_model" in diff.text
    assert html.escape(PURPOSES[0]) in diff.text and html.escape(PURPOSES[1]) in diff.text


def test_status_change_through_the_service(console, model_tar):
    card_with_three_versions(console.registry, model_tar)
    client = console.client()
    token = client.get(f"/cards/{CARD}").csrf_token()
    changed = client.post(f"/cards/{CARD}/status", {"csrf_token": token, "status": "Archived"})
    assert changed.status == 303
    assert "Archived" in client.get(f"/cards/{CARD}").text

    refused = client.post(f"/cards/{CARD}/status", {"csrf_token": token, "status": "Draft"})
    assert refused.status == 409 and "Archived: its status cannot change any more" in refused.text

    forged = client.post(f"/cards/{CARD}/status", {"status": "Draft"}, {"Origin": "https://evil.example"})
    assert forged.status == 403


def test_exports_download(console, model_tar):
    card_with_three_versions(console.registry, model_tar)
    client = console.client()
    pdf = client.get(f"/cards/{CARD}/export?version=2&format=pdf")
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    assert pdf.headers["content-disposition"] == f'attachment; filename="{CARD}-v2.pdf"'
    markdown = client.get(f"/cards/{CARD}/export?version=3&format=md")
    assert markdown.status == 200 and PURPOSES[1] in markdown.text
    assert client.get(f"/cards/{CARD}/export?format=docx").status == 400


def test_a_carried_over_card_is_shown_on_its_package_and_says_where_it_came_from(console, model_tar):
    from modelcrate.cards.service import Cards

    card_with_three_versions(console.registry, model_tar)
    arn = register(console.registry, model_tar)
    Cards(console.registry).carry_forward(arn)
    client = console.client()

    package = client.get("/packages/abalone/2")
    assert 'href="/cards/abalone-v2"' in package.text
    assert "carried over from version 1" in package.text

    card = client.get("/cards/abalone-v2")
    assert card.status == 200
    assert f'Carried over from <a href="/cards/{CARD}?version=3">{CARD} version 3</a>' in card.text
    assert 'href="/packages/abalone/1"' in card.text
