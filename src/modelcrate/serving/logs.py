"""Logs on stderr: one JSON object per line, as CloudWatch and log shippers expect; on a terminal, plain lines.

MODELCRATE_LOG_FORMAT chooses: ``json``, ``text``, or unset (text on a terminal, JSON elsewhere)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping

LOG_FORMAT_VARIABLE = "MODELCRATE_LOG_FORMAT"
LOG_FORMATS = ("json", "text")

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``error: message`` for a person at a terminal; the structured fields stay in the JSON format."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        # A worker's traceback comes as text in its report (the supervisor logs for it).
        trace = self.formatException(record.exc_info) if record.exc_info else getattr(record, "exception", None)
        return f"{line}\n{trace}" if trace else line


def text_logs(env: Mapping[str, str]) -> bool:
    """Whether to log text; an unknown value is taken as unset here (ServingConfig.from_env refuses it)."""
    chosen = env.get(LOG_FORMAT_VARIABLE, "").strip().lower()
    return chosen == "text" if chosen in LOG_FORMATS else sys.stderr.isatty()


def configure_logging(level: int, text: bool) -> None:
    """Text shows warnings and errors only: the start line (printed by the supervisor) says the rest."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING) if text else level)
