"""``serve``: the command SageMaker runs (``docker run IMAGE serve``); configured by environment only."""

from __future__ import annotations

import sys

from modelcrate.serving.supervisor import serve_from_env


def main() -> None:
    sys.exit(serve_from_env())


if __name__ == "__main__":
    main()
