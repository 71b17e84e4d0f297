"""The one error a training job reports as its failure reason."""

from __future__ import annotations

# Exit codes of `train`: SageMaker marks the job failed on any non-zero code and shows the failure file.
EXIT_OK = 0
EXIT_JOB_ERROR = 1  # the job's input or configuration (spec, hyperparameters, channels, data, hosts) or its size
EXIT_INTERNAL_ERROR = 2  # anything unexpected: a bug, the framework failing, the disk filling up


class JobError(Exception):
    """Something the job was given cannot be trained on; the message says what, where and what to do."""


def clipped(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for a failure message, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
