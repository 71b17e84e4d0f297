"""Hostile transform inputs, as an attacker with only 127.0.0.1 access would send them: names that lead outside
the input prefix or the output path, a gzip bomb, and a job killed with SIGKILL while its model server runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.conftest import moto_client
from tests.transform.conftest import MODELCRATE, transform, write_lines

SECRET = "TOP-SECRET-LINE-4711"
ECHO_LINE = ["--content-type", "text/csv", "--split-type", "Line"]


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file beside the job's folders, that no job reading tmp_path/data or writing tmp_path/out may touch."""
    return write_lines(tmp_path / "secret.csv", [SECRET])


def files_outside(root: Path, allowed: list[Path]) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not any(p == a or a in p.parents for a in allowed)
    )


def statuses(run) -> dict[str, tuple[str, str]]:
    return {f["File"]: (f["Status"], f.get("FailureReason", "")) for f in run.summary["Files"]}


def assert_one_line_failure(run) -> None:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.strip()]) == 1, run.stderr


def test_s3_keys_with_dot_dot_are_refused_and_nothing_is_written_outside_the_output(moto_env, echo_model, tmp_path):
    s3 = moto_client(moto_env, "s3")
    s3.create_bucket(Bucket="attack")
    s3.put_object(Bucket="attack", Key="in/ok.csv", Body=b"1,2\n")
    s3.put_object(Bucket="attack", Key="in/../escaped/evil.csv", Body=b"3,4\n")
    run = transform(echo_model, "--input", "s3://attack/in/", "--output", tmp_path / "out", *ECHO_LINE, env=moto_env)
    assert_one_line_failure(run)
    status = statuses(run)
    assert status["ok.csv"][0] == "Completed"
    assert status["../escaped/evil.csv"][0] == "Failed"
    assert "outside the input prefix" in status["../escaped/evil.csv"][1]
    assert files_outside(tmp_path, [tmp_path / "out"]) == []


def test_manifest_entries_outside_the_prefix_are_refused_without_reading_them(echo_model, tmp_path, secret):
    write_lines(tmp_path / "data" / "ok.csv", ["1,2"])
    (tmp_path / "data" / "link.csv").symlink_to(secret)
    manifest = tmp_path / "manifest.json"
    entries = ["ok.csv", "../secret.csv", "link.csv", str(secret)]
    manifest.write_text(json.dumps([{"prefix": f"{tmp_path / 'data'}/"}, *entries]))
    run = transform(
        echo_model, "--input", manifest, "--data-type", "ManifestFile", "--output", tmp_path / "out", *ECHO_LINE
    )
    assert_one_line_failure(run)
    status = statuses(run)
    assert status.pop("ok.csv")[0] == "Completed"
    assert {name: state for name, (state, _) in status.items()} == dict.fromkeys(entries[1:], "Failed")
    assert all("outside the input prefix" in reason for _, reason in status.values()), status
    assert SECRET not in run.stderr + json.dumps(run.summary)
    assert all(SECRET not in p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files_outside(tmp_path, [tmp_path / "out", tmp_path / "data", manifest, secret]) == []


def test_a_symlink_in_the_input_folder_leading_out_is_refused(echo_model, tmp_path, secret):
    write_lines(tmp_path / "data" / "ok.csv", ["1,2"])
    (tmp_path / "data" / "leak.csv").symlink_to(secret)
    run = transform(echo_model, "--input", tmp_path / "data", "--output", tmp_path / "out", *ECHO_LINE)
    assert_one_line_failure(run)
    state, reason = statuses(run)["leak.csv"]
    assert state == "Failed" and "outside the input prefix" in reason
    assert all(SECRET not in p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_a_symlink_in_the_output_path_leading_out_is_not_written_through(echo_model, tmp_path):
    write_lines(tmp_path / "data" / "sub" / "a.csv", ["1,2"])
    write_lines(tmp_path / "data" / "b.csv", ["3,4"])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "elsewhere")
    run = transform(echo_model, "--input", tmp_path / "data", "--output", tmp_path / "out", *ECHO_LINE)
    assert_one_line_failure(run)
    state, reason = statuses(run)["sub/a.csv"]
    assert state == "Failed" and "outside the output path" in reason
    assert statuses(run)["b.csv"][0] == "Completed"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def gzip_of_zeros(path: Path, megabytes: int) -> Path:
    """A gzip member of ``megabytes`` MiB of zeros, about 1 KiB per MiB on disk, written without holding it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    with path.open("wb") as f:
        for _ in range(megabytes):
            f.write(compressor.compress(chunk))
        f.write(compressor.flush())
    return path


# Runs a command and reports on stderr's last line the peak resident memory of its largest process.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def test_a_gzip_bomb_fails_its_object_within_bounded_memory(echo_model, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.csv").write_bytes(zlib.compress(b"1,2\n", wbits=31))
    gzip_of_zeros(tmp_path / "data" / "bomb.csv", 1024)
    assert (tmp_path / "data" / "bomb.csv").stat().st_size < 2 * 1024 * 1024
    command = [MODELCRATE, "transform", echo_model, "--input", tmp_path / "data", "--output", tmp_path / "out"]
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *map(str, command), *ECHO_LINE, "--compression", "Gzip", "--max-payload", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    *messages, peak_mib = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    files = {f["File"]: f for f in json.loads(result.stdout)["Files"]}
    assert files["ok.csv"]["Status"] == "Completed"
    assert files["bomb.csv"]["Status"] == "Failed"
    assert "decompresses to more than 64 MiB" in files["bomb.csv"]["FailureReason"]
    assert "Traceback" not in result.stderr and len([m for m in messages if m.strip()]) == 1, result.stderr
    assert int(peak_mib) < 400, f"the job's peak RSS was {peak_mib} MiB for a {1024} MiB bomb"


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has already died)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def poll(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_kill_9_of_the_job_takes_its_model_server_down(echo_model, tmp_path):
    write_lines(tmp_path / "data" / "slow.csv", [f"{i},{i}" for i in range(400)])
    slow = ["--strategy", "SingleRecord", "--env", "ECHO_DELAY=0.25", "--workers", "1"]
    job = subprocess.Popen(
        [
            MODELCRATE,
            "transform",
            echo_model,
            "--input",
            tmp_path / "data",
            "--output",
            tmp_path / "out",
            *ECHO_LINE,
            *slow,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server_pids: list[int] = []
    try:
        # The server: the job's child running modelcrate.serving, on the port in its environment.
        def server_started() -> bool:
            server_pids[:] = [
                pid for pid in child_pids(job.pid) if b"modelcrate.serving" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            return bool(server_pids)

        assert poll(server_started, 60), "the job started no model server"
        server = server_pids[0]
        environ = dict(
            item.split(b"=", 1) for item in Path(f"/proc/{server}/environ").read_bytes().split(b"\0") if b"=" in item
        )
        port = int(environ[b"SAGEMAKER_BIND_TO_PORT"])
        assert poll(lambda: accepts(port), 60), "the model server never listened"
        server_pids += child_pids(server)  # its workers
        job.send_signal(signal.SIGKILL)
        job.wait(10)
        assert poll(lambda: not any(alive(pid) for pid in server_pids), 45), "the model server outlived its job"
        assert not accepts(port), f"port {port} still accepts connections after the job was killed"
    finally:
        job.kill()
        job.wait()
        for pid in server_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
