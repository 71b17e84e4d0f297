"""User text reaches a card's Markdown export and the command line's messages as written: no raw HTML in the
export, no Rich markup read out of a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cards.conftest import card_content, cards  # noqa: F401
from tests.registry.conftest import backend, database, model_dir, model_tar, registry  # noqa: F401

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
SCRIPT = '<script>alert("card")</script>'


def test_the_markdown_export_escapes_html(cards):  # noqa: F811
    content = card_content(intended_uses={"purpose_of_model": SCRIPT, "risk_rating": "Low"})
    cards.create_model_card({"ModelCardName": "hostile", "Content": content})
    markdown = cards.export("hostile", None, "md").decode()
    assert "<script>" not in markdown
    assert "&lt;script&gt;alert(" in markdown


@pytest.fixture
def modelcrate(tmp_path):
    env = {**os.environ, "MODELCRATE_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    env.pop("MODELCRATE_DATABASE_URL", None)
    env.pop("MODELCRATE_ARTIFACT_STORE", None)

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([MODELCRATE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    return run


def test_registry_errors_keep_bracketed_user_text(modelcrate, tmp_path):
    tags = json.dumps([{"Key": "team[ml]", "Value": "[bold]x"}])
    refused = modelcrate("registry", "create-model-package-group", "--model-package-group-name", "g", "--tags", tags)
    assert refused.returncode == 2
    assert "'team[ml]'" in refused.stderr and "'[bold]x'" in refused.stderr
    missing = modelcrate("registry", "register", tmp_path / "[red]model", "--group", "g")
    assert missing.returncode == 2
    assert f"{tmp_path / '[red]model'} is neither a model directory" in missing.stderr


def test_card_errors_keep_the_pattern_they_name(modelcrate):
    content = json.dumps({"additional_information": {"custom_details": {"no!": "x"}}})
    refused = modelcrate("card", "create", "hostile", "--content", content)
    assert refused.returncode == 2
    assert r"'^[a-zA-Z0-9_ .:/=+\\-@]{1,128}$'" in refused.stderr


def test_card_diff_shows_bracketed_values_as_written(modelcrate):
    first = json.dumps({"intended_uses": {"purpose_of_model": "plain"}})
    second = json.dumps({"intended_uses": {"purpose_of_model": "[red]alert[/red] [link=http://x]y[/link]"}})
    assert modelcrate("card", "create", "hostile", "--content", first).returncode == 0
    assert modelcrate("card", "update", "hostile", "--content", second).returncode == 0
    diff = modelcrate("card", "diff", "hostile", "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert "[red]alert[/red] [link=http://x]y[/link]" in diff.stdout
