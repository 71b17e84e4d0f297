"""The ``modelcrate`` console script: the command line needs the ``cli`` extra, which images leave out."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from modelcrate.cli import app
    except ImportError as exc:
        sys.exit(
            f"modelcrate: the command line needs its extra packages ({exc.name} is missing): "
            "pip install 'modelcrate[cli]'"
        )
    app()
