"""The console in a real browser: Playwright drives Debian's Chromium against uvicorn on 127.0.0.1.

Screenshots go to MODELCRATE_TEST_ARTIFACTS (else a temporary directory); with
MODELCRATE_UPDATE_README_SCREENSHOT=1 the package page's also replaces docs/console.png, the README's picture.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.web.conftest import CARD, PURPOSES, card_with_three_versions, register

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
README_SCREENSHOT_LIMIT = 300 * 1024

# One backend is enough here: the pages' data paths run on both in the HTTP tests.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the console's browser tests need it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, console):
    """A fresh browser context on the console; fails the test on a script error or a CSP violation (an error
    status, e.g. the 400 of a refused form, is part of the tests, not a fault)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    opened = context.new_page()
    errors = []
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the browser reported errors: {errors}"


def test_approve_a_version_with_a_reason(page, console, model_tar, artifacts_dir):
    card_with_three_versions(console.registry, model_tar)  # version 1, with a card
    register(console.registry, model_tar, CustomerMetadataProperties={"training.accuracy": "0.934"})

    page.goto(console.url)
    page.get_by_role("link", name="abalone").click()
    page.get_by_role("link", name="Version 2").click()
    assert page.get_by_role("heading", level=1).inner_text() == "abalone · version 2"

    page.get_by_label("Approved").check()
    page.get_by_label("Reason").fill("   ")  # passes the browser's `required`; the server refuses it
    page.get_by_role("button", name="Record decision").click()
    assert "A reason is required to mark this package Approved." in page.get_by_role("alert").inner_text()

    page.get_by_label("Approved").check()
    page.get_by_label("Reason").fill("accuracy 0.934 on the holdout set")
    page.get_by_role("button", name="Record decision").click()
    newest = page.locator("table.history tbody tr").first
    assert newest.locator("td").all_inner_texts()[1:] == [
        "alice",
        "ModelApprovalStatus",
        "PendingManualApproval",
        "Approved",
        "accuracy 0.934 on the holdout set",
    ]
    assert console.registry.describe_model_package("abalone/2")["ModelApprovalStatus"] == "Approved"
    page.screenshot(path=artifacts_dir / "package-approved.png", full_page=True)

    page.goto(f"{console.url}/groups/abalone")
    page.screenshot(path=artifacts_dir / "group.png", full_page=True)
    page.get_by_role("link", name="Version 1").click()
    page.get_by_label("Rejected").check()
    page.get_by_label("Reason").fill("superseded by version 2 (accuracy 0.934 > 0.912)")
    page.get_by_role("button", name="Record decision").click()
    assert page.get_by_role("link", name=CARD).is_visible()
    page.screenshot(path=artifacts_dir / "package.png", full_page=True)
    assert (artifacts_dir / "package.png").stat().st_size < README_SCREENSHOT_LIMIT
    if os.environ.get("MODELCRATE_UPDATE_README_SCREENSHOT") == "1":  # refresh the README's picture on request
        shutil.copyfile(artifacts_dir / "package.png", README_SCREENSHOT)


def test_card_versions_diff_and_pdf(page, console, model_tar, artifacts_dir):
    card_with_three_versions(console.registry, model_tar)

    page.goto(console.url)
    page.get_by_role("link", name="Model cards").click()
    page.get_by_role("link", name=CARD).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"{CARD} · version 3"
    assert page.get_by_text(PURPOSES[1]).is_visible()
    page.screenshot(path=artifacts_dir / "card.png", full_page=True)

    page.get_by_label("Version").select_option("1")
    page.get_by_role("button", name="Show").click()
    assert page.get_by_role("heading", level=1).inner_text() == f"{CARD} · version 1"
    assert page.get_by_role("heading", name="Intended uses").count() == 0

    page.get_by_role("link", name="Compare versions").click()
    page.get_by_label("From").select_option("2")
    page.get_by_label("to").select_option("3")
    page.get_by_role("button", name="Compare").click()
    change = page.locator("table.diff tbody tr").filter(has_text="intended_uses.purpose_of_model")
    assert change.locator("td").all_inner_texts()[1:] == list(PURPOSES)
    page.screenshot(path=artifacts_dir / "card-diff.png", full_page=True)

    page.get_by_role("link", name=CARD).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").click()
    saved = artifacts_dir / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{CARD}-v3.pdf"
    assert saved.read_bytes().startswith(b"%PDF")
