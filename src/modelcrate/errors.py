"""Errors shared across packages; this module imports nothing, so the serving supervisor stays light."""


class StartupError(Exception):
    """The model or its configuration cannot be served; the message says what is wrong and what to do."""


class ModelLoadError(StartupError):
    """The model directory or file cannot be turned into a predictor."""
