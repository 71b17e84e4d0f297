"""Exports: PDF (every page renders; the text holds the card's facts), HTML, Markdown, replaceable templates,
and export jobs recorded with their status and location."""

from __future__ import annotations

import re
import subprocess

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelcrate.cards.render import TEMPLATES_VARIABLE
from modelcrate.registry.models import ModelCardExport
from modelcrate.registry.service import Conflict, RegistryError
from tests.cards.conftest import card_content

# What every export of the example card, version 2, must show: name, version, risk rating, metric names and values.
FACTS = ["Model card: abalone-card", "Risk rating", "High", "train-accuracy", "0.947", "macro-f1", "0.8123", "auc"]
FACTS += ["0.9071", "recall-by-sex", "0.66", "confusion", "48"]


@pytest.fixture
def card(cards):
    cards.create_model_card({"ModelCardName": "abalone-card", "Content": card_content()})
    content = card_content(intended_uses={"risk_rating": "High", "purpose_of_model": "Sort the catch."})
    cards.update_model_card({"ModelCardName": "abalone-card", "Content": content})
    return "abalone-card"


def test_pdf_every_page_renders_and_the_text_holds_the_cards_facts(cards, card, tmp_path):
    job = cards.export_job(card, None, "pdf", tmp_path / "card.pdf")
    pdf = tmp_path / "card.pdf"
    assert job["Status"] == "Completed"
    assert job["ExportArtifacts"]["Location"] == str(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")

    pages = int(
        re.search(
            r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        )[1]
    )
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True, capture_output=True)
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == pages >= 1
    assert all(image.read_bytes().startswith(b"\x89PNG") and image.stat().st_size > 1000 for image in images)

    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for fact in FACTS:
        assert fact in text, fact
    assert re.search(r"Version\s+2\b", text)


def test_html_has_the_facts_tables_and_inline_svg_charts(cards, card):
    html = cards.export(card, None, "html").decode()
    for fact in FACTS:
        assert fact in html, fact
    assert re.search(r"<th>Version</th><td>2</td>", html)
    assert html.count("<svg") == 3  # the group's numeric metrics, the bar chart, the graph
    assert "<polyline" in html and "<rect" in html


def test_markdown_has_the_facts(cards, card):
    markdown = cards.export(card, None, "md").decode()
    for fact in FACTS:
        assert fact in markdown, fact
    assert "- **Version:** 2" in markdown
    assert "- **Risk rating:** High" in markdown
    assert "| macro-f1 | number | 0.8123 |  |" in markdown


def test_an_older_version_exports_its_own_content(cards, card):
    markdown = cards.export(card, 1, "md").decode()
    assert "- **Version:** 1" in markdown
    assert "- **Risk rating:** Medium" in markdown


def test_a_templates_directory_replaces_a_built_in_template(cards, card, tmp_path, monkeypatch):
    (tmp_path / "card.md.j2").write_text(
        "CUSTOM {{ card.ModelCardName }} v{{ card.ModelCardVersion }} risk={{ content.intended_uses.risk_rating }}\n"
    )
    monkeypatch.setenv(TEMPLATES_VARIABLE, str(tmp_path))
    assert cards.export(card, None, "md").decode() == "CUSTOM abalone-card v2 risk=High\n"
    assert "Model card: abalone-card" in cards.export(card, None, "html").decode()  # not replaced: built in

    (tmp_path / "card.md.j2").write_text("{% if %}")
    with pytest.raises(RegistryError, match=r"template card\.md\.j2 \(looked up in .*\) failed"):
        cards.export(card, None, "md")


def test_export_jobs_are_recorded_with_unique_names(cards, card, registry, tmp_path):
    first = cards.export_job(card, 1, "md", tmp_path / "v1.md", job_name="review-1")
    assert first["ModelCardExportJobName"] == "review-1"
    assert first["ModelCardExportJobArn"].endswith(":model-card/abalone-card/export-job/review-1")
    assert (first["ModelCardVersion"], first["Format"], first["Status"]) == (1, "md", "Completed")
    assert "- **Version:** 1" in (tmp_path / "v1.md").read_text()
    with pytest.raises(Conflict, match="already has an export job named review-1"):
        cards.export_job(card, 2, "md", tmp_path / "v2.md", job_name="review-1")

    with pytest.raises(RegistryError, match=r"export job failing failed: cannot write .*missing"):
        cards.export_job(card, None, "html", tmp_path / "missing" / "card.html", job_name="failing")
    with Session(registry.engine) as session:
        jobs = {job.name: job for job in session.scalars(select(ModelCardExport))}
    assert jobs["review-1"].status == "Completed"
    assert jobs["failing"].status == "Failed"
    assert "No such file or directory" in jobs["failing"].failure_reason
    assert jobs["failing"].location is None


def test_an_unknown_format_is_refused(cards, card, tmp_path):
    with pytest.raises(RegistryError, match="export format 'docx' is not one of pdf, html, md"):
        cards.export_job(card, None, "docx", tmp_path / "card.docx")
