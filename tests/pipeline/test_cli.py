"""``modelcrate pipeline serve``, run as a user runs it."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcrate.containers.endpoint import http_request
from modelcrate.serving.supervisor import EXIT_DRAIN_CUT_OFF
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


@dataclass
class ServedPipeline:
    process: subprocess.Popen
    serving_line: str
    lines: queue.Queue[str]

    def rest_of_stderr(self) -> list[str]:
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return rest


@contextmanager
def serving(definition_path: Path, port: int, env: dict[str, str] | None = None) -> Iterator[ServedPipeline]:
    """``modelcrate pipeline serve`` with one worker per container, once it says it is serving; killed if the
    test leaves it running."""
    process = subprocess.Popen(
        [MODELCRATE, "pipeline", "serve", str(definition_path), "--port", str(port), "--workers", "1"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # a process group of its own, as in a terminal, for Ctrl-C
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        while "serving" not in (line := lines.get(timeout=120)):
            assert process.poll() is None, line
        yield ServedPipeline(process, line, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
    with serving(write_definition(tmp_path, definition), port) as served:
        line = served.serving_line
        assert "serving cli-test (Serial: prepare (:" in line and f"on http://127.0.0.1:{port}; Ctrl-C stops it" in line
        container_ports = [int(p) for p in re.findall(r"\(:(\d+)\)", line)]
        row = b"7,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n"
        status, _, body = http_request(
            port, "POST", "/invocations", row, {"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        assert (status, body) in ((200, b"F\n"), (200, b"I\n"), (200, b"M\n"))
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(60) == 0
    assert "stopped the pipeline and its containers\n" in served.rest_of_stderr()
    for stopped in [port, *container_ports]:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", stopped)) != 0, f"port {stopped} still answers"


def slow_pipeline(tmp_path: Path, recorder_dir: Path) -> Path:
    """Two containers passing the body on; the first takes 1.5 s per request."""
    definition = {
        "Containers": [
            recorder(recorder_dir, "slow", tmp_path / "slow.jsonl", SLEEP_SECONDS="1.5"),
            recorder(recorder_dir, "echo", tmp_path / "echo.jsonl"),
        ],
    }
    return write_definition(tmp_path, definition)


def invoke(port: int, body: bytes) -> tuple[int, bytes]:
    status, _, answer = http_request(port, "POST", "/invocations", body, {"Content-Type": "text/csv"}, timeout=60)
    return status, answer


def sigterm(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)


def ctrl_c(process: subprocess.Popen) -> None:
    """What a terminal does: SIGINT to the CLI's whole process group (to any model server left in it too)."""
    os.killpg(process.pid, signal.SIGINT)


@pytest.mark.parametrize("stop", [sigterm, ctrl_c])
def test_stopping_answers_the_requests_in_flight_and_refuses_new_connections(tmp_path, recorder_dir, stop):
    port = free_port()
    with serving(slow_pipeline(tmp_path, recorder_dir), port) as served, ThreadPoolExecutor(4) as pool:
        # One worker takes the four in turn: the last is answered about 6 s after the stop.
        answers = [pool.submit(invoke, port, b"%d\n" % i) for i in range(4)]
        time.sleep(0.5)
        stop(served.process)
        time.sleep(0.5)
        try:
            late = http_request(port, "GET", "/ping", timeout=10)[0]
        except ConnectionRefusedError:
            late = "refused"
        assert late in ("refused", 503)
        assert [answer.result(timeout=60) for answer in answers] == [(200, b"%d\n" % i) for i in range(4)]
        assert served.process.wait(60) == 0
    assert "stopped the pipeline and its containers\n" in served.rest_of_stderr()


def read_until_closed(client: socket.socket) -> bytes:
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def test_sigterm_answers_both_requests_pipelined_on_one_connection(tmp_path, recorder_dir):
    port = free_port()
    request = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 2\r\n\r\n%d\n"
    with serving(slow_pipeline(tmp_path, recorder_dir), port) as served:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(request % 1 + request % 2)
            time.sleep(0.5)
            served.process.send_signal(signal.SIGTERM)
            received = read_until_closed(client)
        assert served.process.wait(60) == 0
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"\r\n\r\n1\n") and b"Connection: close" not in first
    assert second.startswith(b"200 ") and second.endswith(b"\r\n\r\n2\n") and b"Connection: close" in second


def test_sigterm_answers_a_request_received_in_part_once_the_rest_arrives(tmp_path, recorder_dir):
    port = free_port()
    with serving(slow_pipeline(tmp_path, recorder_dir), port) as served:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 4\r\n\r\n12"
            )
            time.sleep(0.5)
            served.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            client.sendall(b"3\n")
            received = read_until_closed(client)
        assert served.process.wait(60) == 0
    assert received.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in received
    assert received.endswith(b"\r\n\r\n123\n")


def test_a_drain_cut_short_by_its_deadline_says_how_many_requests_and_exits_non_zero(tmp_path, recorder_dir):
    port = free_port()
    with (
        serving(slow_pipeline(tmp_path, recorder_dir), port, {"MODELCRATE_DRAIN_TIMEOUT": "0.5"}) as served,
        ThreadPoolExecutor(2) as pool,
    ):
        answers = [pool.submit(invoke, port, b"%d\n" % i) for i in range(2)]
        time.sleep(0.5)
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(60) == EXIT_DRAIN_CUT_OFF
        for answer in answers:
            with pytest.raises(ConnectionError):
                answer.result(timeout=60)
    cut_off = [line for line in served.rest_of_stderr() if "cut off" in line]
    assert cut_off == [
        "error: the drain deadline (MODELCRATE_DRAIN_TIMEOUT=0.5 s) cut off 2 request(s) already received\n"
    ]


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
