"""A small HTTP client for /invocations (standard library only)."""

from __future__ import annotations

import urllib.error
import urllib.request


class InvokeError(Exception):
    """/invocations refused a request (the message holds the HTTP status and the server's answer) or could not
    be reached."""


def invoke_endpoint(
    url: str,
    body: bytes,
    content_type: str,
    accept: str | None = None,
    custom_attributes: str | None = None,
    timeout: float = 60.0,
) -> tuple[bytes, str]:
    """POST ``body`` to ``url``/invocations; returns (body, content type) or raises InvokeError."""
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    request = urllib.request.Request(url.rstrip("/") + "/invocations", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        message = exc.read().decode("utf-8", "replace").strip()
        raise InvokeError(f"HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvokeError(f"cannot reach {url}: {reason}") from None
