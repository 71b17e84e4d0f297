"""Removes a container once the process that started it has died, however it died (SIGKILL runs no cleanup).

``python -m modelcrate.containers.watchdog DOCKER RUN-ARGS...`` runs ``DOCKER run -d RUN-ARGS...`` itself, so no
container exists unwatched (a job killed during ``docker run`` cannot leave one), reports ``{"id": ...}`` or
``{"error": ...}`` as one JSON line on stdout, then reads its stdin: a pipe whose write end only the starting
process holds. That process writes ``RELEASED`` once it has removed the container itself; end of file without it
means the process died, and the watchdog removes the container. It runs in its own session, so a signal to the
starting process's group (Ctrl-C) does not take it down first.
"""

from __future__ import annotations

import json
import subprocess
import sys

RELEASED = b"released"


def main(docker: str, run_args: list[str]) -> None:
    try:
        started = subprocess.run(
            [docker, "run", "-d", *run_args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        sys.stdout.write(json.dumps({"error": f"cannot run {docker}: {exc.strerror}"}) + "\n")
        return
    detail = (started.stderr or started.stdout).strip().splitlines()
    report = (
        {"id": started.stdout.strip()}
        if started.returncode == 0
        else {"error": detail[-1] if detail else f"exit {started.returncode}"}
    )
    try:
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    except OSError:  # the starting process died meanwhile: nobody reads the report, the container goes below
        pass
    if started.returncode != 0:
        return
    if sys.stdin.buffer.read() != RELEASED:
        subprocess.run([docker, "rm", "-f", report["id"]], capture_output=True, check=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
