"""A killed job leaves nothing that looks complete, and --resume finishes it with identical outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.transform.conftest import MODELCRATE, transform, write_lines


def without_server(path) -> list[str]:
    """The echo container's lines less the server's process id, which differs from run to run."""
    return [" ".join(line.split(" ")[:2] + line.split(" ")[3:]) for line in path.read_text().splitlines()]


SLOW = ["--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv", "--strategy", "SingleRecord"]


def test_sigkill_mid_job_then_resume_gives_identical_outputs(tmp_path, echo_model):
    for name in ("a", "b", "c", "d"):
        write_lines(tmp_path / "in" / f"{name}.csv", [f"{name},{i}" for i in range(30)])
    job = ["--input", tmp_path / "in", *SLOW, "--max-concurrent", "1", "--env", "ECHO_DELAY=0.05"]

    reference = transform(echo_model, *job, "--output", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "out"
    process = subprocess.Popen(
        [MODELCRATE, "transform", str(echo_model), *map(str, job), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # SIGKILL to the whole group, as a lost machine would (its model server follows)
    )
    deadline = time.monotonic() + 120
    while not (out / "a.csv.out").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    written = sorted(p.name for p in out.iterdir() if p.name.endswith(".out"))
    assert "a.csv.out" in written and len(written) < 4, written
    for name in written:  # whatever has the .out name is complete
        assert without_server(out / name) == without_server(tmp_path / "reference" / name)

    resumed = transform(echo_model, *job, "--output", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    statuses = {f["File"]: f["Status"] for f in resumed.summary["Files"]}
    assert statuses["a.csv"] == "Skipped" and statuses["d.csv"] == "Completed"
    assert sorted(p.name for p in out.iterdir()) == ["a.csv.out", "b.csv.out", "c.csv.out", "d.csv.out"]
    for name in ("a.csv.out", "b.csv.out", "c.csv.out", "d.csv.out"):
        assert len(without_server(out / name)) == 30
        assert without_server(out / name) == without_server(tmp_path / "reference" / name)
