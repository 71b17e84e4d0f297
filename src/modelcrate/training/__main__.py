"""``train``: the command SageMaker runs for a training job (``docker run IMAGE train``).

The job's files are under /opt/ml; MODELCRATE_ML_PREFIX moves that root for local, in-process runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from modelcrate.training.job import run_training

PREFIX_ENV = "MODELCRATE_ML_PREFIX"
_TERMINATED = 128 + signal.SIGTERM


def _stop(signum, frame) -> None:
    # SageMaker stops a job with SIGTERM; exiting through Python removes the unfinished model's staging files.
    sys.exit(_TERMINATED)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(run_training(Path(os.environ.get(PREFIX_ENV) or "/opt/ml")))


if __name__ == "__main__":
    main()
