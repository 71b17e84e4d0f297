"""The console served for real: uvicorn on 127.0.0.1 (a free port, in a thread) over a registry on SQLite or
PostgreSQL, and a small HTTP client that keeps cookies and shows redirects instead of following them."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from modelcrate.registry.service import Registry
from modelcrate.web.app import create_app
from modelcrate.web.security import ConsoleSettings
from tests.conftest import free_port
from tests.registry.conftest import backend, database, model_dir, model_tar, package_request, registry  # noqa: F401

CONSOLE_USER = "alice"  # the registry fixture's `who`; the console's registry gets it the CLI's way (env)


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def csrf_token(self) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert found, f"no CSRF token in the page:\n{self.text[:2000]}"
        return found.group(1)


def _lowered(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """One browser-like session: cookies kept, Origin sent on POST (as browsers do) unless told otherwise."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects)

    def request(self, method: str, path: str, data: dict | None = None, headers: dict | None = None) -> Reply:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=60) as response:
                return Reply(response.status, _lowered(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, _lowered(error.headers), error.read())

    def get(self, path: str, headers: dict | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, data: dict, headers: dict | None = None) -> Reply:
        return self.request("POST", path, data, {"Origin": self.base_url, **(headers or {})})


@dataclass
class Console:
    url: str
    registry: Registry

    def client(self) -> Client:
        return Client(self.url)


def console_registry(registry: Registry, monkeypatch) -> Registry:  # noqa: F811
    """A registry like the one ``modelcrate ui`` opens: `who` from the environment, as the CLI's."""
    monkeypatch.setenv("MODELCRATE_USER", CONSOLE_USER)
    return Registry(registry.engine, registry.store)


def register(registry: Registry, model_tar: Path, group: str = "abalone", **extra) -> str:  # noqa: F811
    """The next version of ``group`` (created when missing); its ARN."""
    groups = registry.list_model_package_groups()["ModelPackageGroupSummaryList"]
    if group not in {g["ModelPackageGroupName"] for g in groups}:
        registry.create_model_package_group({"ModelPackageGroupName": group, "ModelPackageGroupDescription": "Sex"})
    return registry.create_model_package(package_request(model_tar, group, **extra))["ModelPackageArn"]


CARD = "abalone-card"
PURPOSES = ("Sort abalone by sex at the packing line.", "Sort abalone by sex; not for age estimates.")


def card_with_three_versions(registry: Registry, model_tar: Path) -> str:  # noqa: F811
    """A card made from abalone/1 (version 1), then given one purpose (2), then another (3); its package's ARN."""
    from modelcrate.cards.service import Cards

    arn = register(registry, model_tar, CustomerMetadataProperties={"training.accuracy": "0.912"})
    cards = Cards(registry)
    cards.create_from_package(CARD, arn)
    content = cards.describe_model_card(CARD)["Content"]
    for purpose in PURPOSES:
        content = {**content, "intended_uses": {"purpose_of_model": purpose, "risk_rating": "Low"}}
        cards.update_model_card({"ModelCardName": CARD, "Content": content})
    return arn


@pytest.fixture
def console(registry, monkeypatch) -> Iterator[Console]:  # noqa: F811
    """The console as ``modelcrate ui`` serves it on loopback (no token)."""
    served = console_registry(registry, monkeypatch)
    with serving(create_app(served, ConsoleSettings())) as url:
        yield Console(url, served)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots and downloads: under MODELCRATE_TEST_ARTIFACTS when set, else a fresh temporary directory."""
    root = os.environ.get("MODELCRATE_TEST_ARTIFACTS")
    where = Path(root) / "web" if root else Path(tempfile.mkdtemp(prefix="modelcrate-web-artifacts-"))
    where.mkdir(parents=True, exist_ok=True)
    return where
