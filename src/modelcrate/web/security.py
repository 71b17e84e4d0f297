"""The console's guards, as one ASGI middleware: the access token (off loopback), the Host check (on loopback),
cross-site request forgery checks on every POST, and the security headers of every response.

CSRF: each browser gets a random session id in an HttpOnly SameSite=Strict cookie; its forms carry
HMAC(secret, session id), and a POST must carry that token and come from our own origin (Origin, else Referer).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlencode, urlsplit

TOKEN_VARIABLE = "MODELCRATE_UI_TOKEN"
TOKEN_COOKIE = "modelcrate_ui_token"
SESSION_COOKIE = "modelcrate_session"
CSRF_FIELD = "csrf_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class ConsoleSetupError(ValueError):
    """The console cannot start as asked (e.g. a public address without a token)."""


@dataclass(frozen=True)
class ConsoleSettings:
    """``token``: required on every request when set. ``loopback``: only loopback Host headers are served (so a
    DNS-rebound foreign name cannot reach a token-less console)."""

    token: str | None = None
    loopback: bool = True
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def settings_for_bind(host: str, token: str | None) -> ConsoleSettings:
    """The settings ``modelcrate ui --host HOST`` runs with; off loopback a token is required."""
    if is_loopback(host):
        return ConsoleSettings(token=token or None, loopback=True)
    if not token:
        raise ConsoleSetupError(
            f"--host {host} would let other machines reach the console: set {TOKEN_VARIABLE} to a long random "
            f"secret (e.g. `export {TOKEN_VARIABLE}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`)"
            " and open the console once with ?token=..., or keep the default --host 127.0.0.1"
        )
    if len(token) < 16:
        raise ConsoleSetupError(f"{TOKEN_VARIABLE} is too short to guess-proof the console: use 16 characters or more")
    return ConsoleSettings(token=token, loopback=False)


def csrf_token(settings: ConsoleSettings, session_id: str) -> str:
    return hmac.new(settings.secret, session_id.encode(), hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _token_cookie(token: str) -> str:
    """What the cookie holds: a digest, so any token is cookie-safe and the secret itself never sits in it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.split(":", 1)[0].lower()


class ConsoleGuard:
    def __init__(self, app, settings: ConsoleSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = {k: m.value for k, m in SimpleCookie(headers.get("cookie", "")).items()}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        extra_cookies: list[str] = []

        if self.settings.loopback and _hostname(headers.get("host", "")) not in LOOPBACK_NAMES:
            return await _refuse(send, 400, "This console answers only to 127.0.0.1 / localhost.")
        if self.settings.token:
            offered = query.get("token", [None])[0]
            if offered is not None:
                if not _same(offered, self.settings.token):
                    return await _refuse(send, 401, "Wrong console token.")
                # Keep the token out of the address bar and history: trade it for a cookie, then come back.
                rest = urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
                cookie = f"{TOKEN_COOKIE}={_token_cookie(offered)}; Path=/; HttpOnly; SameSite=Strict"
                # One leading slash: "//host" would send the browser to another site.
                here = "/" + quote(scope["path"]).lstrip("/")
                return await _redirect(send, here + (f"?{rest}" if rest else ""), [cookie])
            bearer = headers.get("authorization", "")
            bearer = bearer[7:] if bearer.lower().startswith("bearer ") else None
            if not (
                _same(bearer, self.settings.token)
                or _same(cookies.get(TOKEN_COOKIE), _token_cookie(self.settings.token))
            ):
                return await _refuse(
                    send,
                    401,
                    f"This console needs its token ({TOKEN_VARIABLE}): open it once as /?token=..., "
                    "or send Authorization: Bearer ...",
                )

        session_id = cookies.get(SESSION_COOKIE)
        if scope["method"] == "POST":
            problem, body = await self._forgery_check(scope, receive, headers, session_id)
            if problem:
                return await _refuse(send, 403, problem)
            receive = _replay(body, receive)
        if not session_id:
            session_id = secrets.token_urlsafe(32)
            extra_cookies.append(f"{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict")
        scope = {**scope, "state": {**scope.get("state", {}), "csrf_token": csrf_token(self.settings, session_id)}}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_security_headers(message.get("headers", []), extra_cookies)}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _forgery_check(self, scope, receive, headers: dict, session_id: str | None) -> tuple[str | None, bytes]:
        """(why the POST is refused or None, its body)."""
        source = headers.get("origin") or headers.get("referer")
        # The scheme may differ behind a TLS proxy; the host and port must not.
        if not source or urlsplit(source).netloc.lower() != headers.get("host", "").lower():
            return "Refused: this form was not sent from the console's own pages (Origin/Referer check).", b""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                return "Refused: the form is too large.", b""
            if not message.get("more_body"):
                break
        if headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return "Refused: the console accepts only its own HTML forms.", b""
        given = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD, [None])[0]
        if not session_id or not _same(given, csrf_token(self.settings, session_id)):
            return "Refused: the form's security token is missing or stale; reload the page and try again.", b""
        return None, body


def _with_security_headers(headers, cookies: list[str]) -> list:
    names = {name.lower() for name, _ in headers}
    merged = list(headers) + [(name, value) for name, value in SECURITY_HEADERS if name not in names]
    return merged + [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]


def _replay(body: bytes, receive):
    """The body read for the check, handed to the app again; then the connection's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send, status: int, message: str) -> None:
    body = f"{status}: {message}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _with_security_headers(
                [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())], []
            ),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send, location: str, cookies: list[str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": _with_security_headers(
                [(b"location", location.encode("latin-1")), (b"content-length", b"0")], cookies
            ),
        }
    )
    await send({"type": "http.response.body", "body": b""})
