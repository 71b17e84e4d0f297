"""``modelcrate ui``: the web console, on 127.0.0.1 unless told otherwise (then only with a token)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from modelcrate.cli import app, error, say


@app.command()
def ui(
    host: Annotated[
        str, typer.Option(help="Address to bind. Anything but loopback requires MODELCRATE_UI_TOKEN.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Serve the web console: model groups, versions, approval with a reason, history, model cards.

    Off loopback (and on it too, when MODELCRATE_UI_TOKEN is set) every request needs that token: open the
    console once as http://HOST:PORT/?token=... (it is then kept in a cookie) or send Authorization: Bearer ... .
    """
    import uvicorn

    from modelcrate.registry.service import Registry, RegistryError
    from modelcrate.web.app import create_app
    from modelcrate.web.security import TOKEN_VARIABLE, ConsoleSetupError, settings_for_bind

    try:
        settings = settings_for_bind(host, os.environ.get(TOKEN_VARIABLE))
    except ConsoleSetupError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    try:
        registry = Registry()
    except RegistryError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    shown_host = f"[{host}]" if ":" in host else host
    login = f"/?token=${TOKEN_VARIABLE}" if settings.token else "/"
    say(f"on http://{shown_host}:{port}{login} (Ctrl-C stops it)", "console", "green")
    # No proxy headers: nothing in front of the console may claim another client address or scheme.
    uvicorn.run(create_app(registry, settings), host=host, port=port, proxy_headers=False, server_header=False)
