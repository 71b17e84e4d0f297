"""``modelcrate pipeline serve``, run as a user runs it."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from modelcrate.containers.endpoint import http_request
from tests.conftest import free_port
from tests.pipeline.conftest import recorder, write_definition

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MODELCRATE, *args], capture_output=True, text=True, timeout=120)


def test_help_teaches_the_definition():
    assert "pipeline" in run("--help").stdout
    shown = run("pipeline", "serve", "--help").stdout
    for taught in (
        '"Containers"',
        '"ContainerHostname"',
        '"ModelDataUrl"',
        "Direct",
        "python -m modelcrate.pipeline.example",
    ):
        assert taught in shown, taught


def test_a_bad_definition_lists_its_problems_and_exits_2(tmp_path):
    path = write_definition(tmp_path, {"Containers": [{"Image": "a"}], "Mode": "Direct"})
    result = run("pipeline", "serve", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path} has 2 problems:",
        "  $.Containers: has 1 container(s); a pipeline has 2 to 15 (serve a single model with modelcrate serve)",
        "  $.Mode: unknown key; a pipeline takes Containers, InferenceExecutionConfig and ModelName",
    ]


def test_serve_until_sigterm_then_stop_every_container(tmp_path, recorder_dir, sample_model):
    definition = {
        "ModelName": "cli-test",
        "Containers": [
            recorder(recorder_dir, "prepare", tmp_path / "prepare.jsonl", DROP_FIRST_COLUMN="1"),
            {
                "ContainerHostname": "classifier",
                "ModelDirectory": str(sample_model("xgboost", "json", "classification")),
            },
        ],
    }
    port = free_port()
    process = subprocess.Popen(
        [
            MODELCRATE,
            "pipeline",
            "serve",
            str(write_definition(tmp_path, definition)),
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        while "serving" not in (line := lines.get(timeout=120)):
            assert process.poll() is None, line
        assert "serving cli-test (Serial: prepare (:" in line and f"on http://127.0.0.1:{port}; Ctrl-C stops it" in line
        container_ports = [int(p) for p in re.findall(r"\(:(\d+)\)", line)]
        row = b"7,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n"
        status, _, body = http_request(
            port, "POST", "/invocations", row, {"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        assert (status, body) in ((200, b"F\n"), (200, b"I\n"), (200, b"M\n"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert "stopped the pipeline and its containers\n" in rest
    for stopped in [port, *container_ports]:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", stopped)) != 0, f"port {stopped} still answers"


def test_a_taken_port_is_reported_and_exits_1(tmp_path, recorder_dir):
    definition = {"Containers": [{"ModelDirectory": str(recorder_dir)}, {"ModelDirectory": str(recorder_dir)}]}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("pipeline", "serve", str(write_definition(tmp_path, definition)), "--port", str(port))
    assert result.returncode == 1
    assert (
        f"error: port {port} on 127.0.0.1 is already in use; choose another port or stop what uses it" in result.stderr
    )
