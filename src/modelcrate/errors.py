"""Errors shared across packages; this module imports nothing, so the serving supervisor stays light.

Every error modelcrate raises for a user to read derives from ``ModelcrateError``: the command line prints its
message as one line and exits with ``exit_code``; the console and the HTTP servers answer with ``http_status``.
"""


class ModelcrateError(Exception):
    """A failure the user can act on; the message says what is wrong, where, and what to do."""

    exit_code = 1
    http_status = 400


class StartupError(ModelcrateError):
    """The model or its configuration cannot be served; the message says what is wrong and what to do."""

    exit_code = 2
    http_status = 500


class ModelLoadError(StartupError):
    """The model directory or file cannot be turned into a predictor."""
