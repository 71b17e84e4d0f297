"""The console over HTTP, served by uvicorn on 127.0.0.1: pages, approvals, the token and the CSRF guards."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from modelcrate.web.app import create_app
from modelcrate.web.security import settings_for_bind
from tests.conftest import free_port
from tests.web.conftest import CONSOLE_USER, Client, console_registry, register, serving

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))
TOKEN = "a-long-console-token-for-tests-0123456789"


def test_pages_show_groups_versions_metrics_and_validation(console, model_tar):
    register(console.registry, model_tar, CustomerMetadataProperties={"training.accuracy": "0.912", "owner": "x"})
    failed = register(console.registry, model_tar, CustomerMetadataProperties={"training.accuracy": "0.5"})
    console.registry.set_validation(
        failed, "Failed", [{"Name": "smoke", "Status": "Failed", "FailureReason": "prediction mismatch on row 3"}]
    )
    client = console.client()

    groups = client.get("/")
    assert groups.status == 200
    assert 'href="/groups/abalone"' in groups.text

    versions = client.get("/groups/abalone")
    assert versions.status == 200
    assert "<th>accuracy</th>" in versions.text and "0.912" in versions.text
    assert "PendingManualApproval" in versions.text
    assert (
        "Failed" in versions.text
        and "smoke: Failed" in versions.text
        and "prediction mismatch on row 3" in versions.text
    )
    assert 'href="/packages/abalone/1"' in versions.text and 'href="/packages/abalone/2"' in versions.text

    package = client.get("/packages/abalone/1")
    assert package.status == 200
    assert ":model-package/abalone/1" in package.text
    assert "Created" in package.text and CONSOLE_USER in package.text  # the registration's history entry

    missing = client.get("/packages/abalone/9")
    assert missing.status == 404 and "model package abalone/9 does not exist" in missing.text


def test_security_headers_on_every_response(console):
    client = console.client()
    for path in ("/", "/static/console.css", "/groups/none"):
        reply = client.get(path)
        assert reply.headers["x-frame-options"] == "DENY", path
        assert reply.headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'self'" in reply.headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path


def test_a_decision_needs_a_reason(console, model_tar):
    register(console.registry, model_tar)
    client = console.client()
    token = client.get("/packages/abalone/1").csrf_token()
    for reason in ("", "   "):
        refused = client.post(
            "/packages/abalone/1/decision", {"csrf_token": token, "decision": "Approved", "reason": reason}
        )
        assert refused.status == 400
        assert "A reason is required to mark this package Approved." in refused.text
    assert console.registry.describe_model_package("abalone/1")["ModelApprovalStatus"] == "PendingManualApproval"


def test_the_services_refusal_is_shown(console, model_tar):
    failed = register(console.registry, model_tar)
    console.registry.set_validation(failed, "Failed", [{"Name": "smoke", "Status": "Failed", "FailureReason": "boom"}])
    client = console.client()
    token = client.get("/packages/abalone/1").csrf_token()
    refused = client.post("/packages/abalone/1/decision", {"csrf_token": token, "decision": "Approved", "reason": "ok"})
    assert refused.status == 409
    assert "cannot be approved while its status is Failed (boom)" in refused.text
    assert 'value="ok"' not in refused.text and ">ok</textarea>" in refused.text  # the reason typed is kept


def test_console_approval_writes_the_same_history_as_the_cli(console, database, model_tar):
    register(console.registry, model_tar)
    register(console.registry, model_tar)
    reason = "holdout accuracy 0.91 >= 0.9"

    client = console.client()
    token = client.get("/packages/abalone/1").csrf_token()
    approved = client.post(
        "/packages/abalone/1/decision", {"csrf_token": token, "decision": "Approved", "reason": reason}
    )
    assert approved.status == 303 and approved.headers["location"].endswith("/packages/abalone/1")

    env = {
        **os.environ,
        "MODELCRATE_DATABASE_URL": database,
        "MODELCRATE_ARTIFACT_STORE": console.registry.store.location,
        "MODELCRATE_USER": CONSOLE_USER,
    }
    approve = [
        "--model-package-arn",
        "abalone/2",
        "--model-approval-status",
        "Approved",
        "--approval-description",
        reason,
    ]
    cli = subprocess.run(
        [MODELCRATE, "registry", "update-model-package", *approve],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr

    def last_entry(package: str) -> dict:
        entry = console.registry.history(package)["History"][-1]
        return {key: entry.get(key) for key in ("Field", "From", "To", "Reason", "Who")}

    by_console, by_cli = last_entry("abalone/1"), last_entry("abalone/2")
    assert (
        by_console
        == by_cli
        == {
            "Field": "ModelApprovalStatus",
            "From": "PendingManualApproval",
            "To": "Approved",
            "Reason": reason,
            "Who": CONSOLE_USER,
        }
    )
    page = client.get("/packages/abalone/1").text
    assert html.escape(reason) in page and "Approved" in page


def test_forged_cross_site_posts_are_refused(console, model_tar):
    register(console.registry, model_tar)
    client = console.client()
    token = client.get("/packages/abalone/1").csrf_token()
    decision = {"decision": "Rejected", "reason": "forged"}
    attacker = Client(console.url)  # another browser session: its own cookie, no token of ours

    cases = {
        "no CSRF token": client.post("/packages/abalone/1/decision", decision),
        "a wrong CSRF token": client.post("/packages/abalone/1/decision", {**decision, "csrf_token": "0" * 64}),
        "another session's token": attacker.post("/packages/abalone/1/decision", {**decision, "csrf_token": token}),
        "a foreign Origin": client.post(
            "/packages/abalone/1/decision", {**decision, "csrf_token": token}, {"Origin": "https://evil.example"}
        ),
        "a foreign Referer, no Origin": client.request(
            "POST",
            "/packages/abalone/1/decision",
            {**decision, "csrf_token": token},
            {"Referer": "https://evil.example/page"},
        ),
        "neither Origin nor Referer": client.request(
            "POST", "/packages/abalone/1/decision", {**decision, "csrf_token": token}
        ),
    }
    for case, reply in cases.items():
        assert reply.status == 403, case
        assert "Refused" in reply.text, case
    assert console.registry.describe_model_package("abalone/1")["ModelApprovalStatus"] == "PendingManualApproval"
    assert [e["Field"] for e in console.registry.history("abalone/1")["History"]] == ["Created", "ModelApprovalStatus"]

    same_site = client.post("/packages/abalone/1/decision", {**decision, "csrf_token": token, "reason": "real"})
    assert same_site.status == 303


def test_a_foreign_host_name_is_refused_on_loopback(console):
    """A DNS-rebound name pointing at 127.0.0.1 must not reach a token-less console."""
    reply = console.client().get("/", headers={"Host": "rebound.example:8765"})
    assert reply.status == 400


def test_off_loopback_every_request_needs_the_token(registry, monkeypatch, model_tar):
    served = console_registry(registry, monkeypatch)
    register(served, model_tar)
    # The settings `modelcrate ui --host 0.0.0.0` makes, served on 127.0.0.1 only.
    with serving(create_app(served, settings_for_bind("0.0.0.0", TOKEN))) as url:
        anonymous = Client(url)
        for path in ("/", "/groups/abalone", "/packages/abalone/1", "/static/console.css", "/no-such-page"):
            reply = anonymous.get(path)
            assert reply.status == 401, path
            assert "MODELCRATE_UI_TOKEN" in reply.text
        posted = anonymous.post("/packages/abalone/1/decision", {"decision": "Approved", "reason": "x"})
        assert posted.status == 401
        assert Client(url).get("/?token=wrong-token-of-the-same-size-0123456").status == 401
        assert Client(url).get("/", {"Authorization": "Bearer not-it"}).status == 401

        assert Client(url).get("/groups/abalone", {"Authorization": f"Bearer {TOKEN}"}).status == 200

        browser = Client(url)
        login = browser.get(f"/groups/abalone?token={TOKEN}")
        assert login.status == 303 and login.headers["location"] == "/groups/abalone"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        page = browser.get("/packages/abalone/1")
        assert page.status == 200
        decided = browser.post(
            "/packages/abalone/1/decision", {"csrf_token": page.csrf_token(), "decision": "Approved", "reason": "ok"}
        )
        assert decided.status == 303


def test_settings_for_bind():
    from modelcrate.web.security import ConsoleSetupError

    assert settings_for_bind("127.0.0.1", None).token is None
    assert settings_for_bind("::1", None).loopback
    with pytest.raises(ConsoleSetupError, match="MODELCRATE_UI_TOKEN"):
        settings_for_bind("0.0.0.0", None)
    with pytest.raises(ConsoleSetupError, match="too short"):
        settings_for_bind("192.168.1.20", "short")
    assert not settings_for_bind("console.internal", TOKEN).loopback


def _ui_env(tmp_path) -> dict:
    env = {**os.environ, "MODELCRATE_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    for name in ("MODELCRATE_UI_TOKEN", "MODELCRATE_DATABASE_URL", "MODELCRATE_ARTIFACT_STORE"):
        env.pop(name, None)
    return env


def test_ui_refuses_a_public_address_without_a_token(tmp_path):
    started = subprocess.run(
        [MODELCRATE, "ui", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=_ui_env(tmp_path),
        timeout=60,  # a console that started anyway would hang here and fail the test
    )
    assert started.returncode != 0
    assert "--host 0.0.0.0" in started.stderr and "MODELCRATE_UI_TOKEN" in started.stderr


def test_ui_serves_on_loopback(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [MODELCRATE, "ui", "--port", str(port)], env=_ui_env(tmp_path), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    assert reply.status == 200
                    assert "Model package groups" in reply.read().decode()
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "modelcrate ui did not answer within 60 s"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
