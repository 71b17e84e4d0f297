"""Attacks on a real ``serve`` over 127.0.0.1: oversized heads, transfer-coding tricks, caches keyed on client
strings and numeric tricks in bodies. Each gets a 4xx/5xx that names the problem, and the worker stays small."""

from __future__ import annotations

import json
import resource
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import launch

SAMPLE_ROW = "0.0,1.0,0.0,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def forest(sample_model, tmp_path_factory):
    """A scikit-learn RandomForestRegressor (it computes in float32) served with the default limits."""
    server = launch(sample_model("sklearn", "joblib", "regression"), tmp_path_factory.mktemp("attacks"))
    yield server
    server.stop()


def exchange(port: int, *parts: bytes, timeout: float = 30.0) -> bytes:
    """Send ``parts`` on one connection (the server may close it before all are sent) and read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: its answer is already queued on this socket
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def worker_rss(server) -> int:
    (pid,) = server.worker_pids()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ping(port: int, *headers: bytes, target: bytes = b"/ping") -> bytes:
    return exchange(
        port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(headers) + b"\r\n"
    )


def test_a_header_bigger_than_the_limit_gets_431_and_leaves_the_worker_small(forest):
    before = worker_rss(forest)
    filler = b"a" * MIB
    answer = exchange(
        forest.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ", *[filler] * 64, b"\r\n\r\n"
    )
    assert status_of(answer) == 431
    assert b"MODELCRATE_MAX_HEADER_BYTES" in answer
    assert worker_rss(forest) - before < 32 * MIB
    assert forest.request("GET", "/ping").status == 200


def test_many_headers_or_too_many_header_bytes_get_431(forest):
    many = ping(forest.port, *(b"X-H%d: v\r\n" % i for i in range(200)))
    assert status_of(many) == 431 and b"MODELCRATE_MAX_HEADERS" in many
    heavy = ping(forest.port, *(b"X-H%d: %s\r\n" % (i, b"v" * 1024) for i in range(40)))
    assert status_of(heavy) == 431 and b"MODELCRATE_MAX_HEADER_BYTES" in heavy
    under = ping(forest.port, *(b"X-H%d: %s\r\n" % (i, b"v" * 1024) for i in range(12)))
    assert status_of(under) == 200


def test_a_url_longer_than_the_limit_gets_414(forest):
    answer = ping(forest.port, target=b"/ping?" + b"q" * 100_000)
    assert status_of(answer) == 414 and b"MODELCRATE_MAX_URL_BYTES" in answer
    assert status_of(ping(forest.port, target=b"/ping?" + b"q" * 4000)) == 200


@pytest.mark.parametrize(
    "coding",
    [b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"],
)
def test_unsupported_transfer_codings_get_501(forest, coding):
    body = SAMPLE_ROW.encode()
    answer = exchange(
        forest.port,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nConnection: close\r\n" + coding + b"\r\n",
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert status_of(answer) == 501 and b"Transfer-Encoding" in answer


def test_chunked_alone_is_still_read(forest):
    body = SAMPLE_ROW.encode()
    answer = exchange(
        forest.port,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert status_of(answer) == 200


def test_unique_long_headers_do_not_grow_a_worker(sample_model, tmp_path):
    """Long Content-Type, Accept and custom attributes, each unique: the runtime parses them without keeping them."""
    server = launch(
        sample_model("sklearn", "joblib", "regression"), tmp_path, env={"MODELCRATE_MAX_HEADER_BYTES": str(4 * MIB)}
    )
    try:
        filler = "z" * MIB
        assert server.invoke(SAMPLE_ROW).status == 200
        before = worker_rss(server)
        for i in range(100):
            resp = server.invoke(
                SAMPLE_ROW,
                f"text/csv; note={i}{filler}",
                f"application/json, application/x-{i}{filler}",
                X_Amzn_SageMaker_Custom_Attributes=f"note={i}{filler}",
            )
            assert resp.status == 200, resp.text
        assert worker_rss(server) - before < 100 * MIB
    finally:
        server.stop()


def npy_declaring(shape: tuple) -> bytes:
    header = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + np.zeros(10).tobytes()


@pytest.mark.parametrize(
    "body, content_type, phrase",
    [
        ("[[" + "7" * 5000 + ",0,0,0,0,0,0,0,0,0]]", "application/json", "digits"),
        ("[[1" + "0" * 400 + ",0,0,0,0,0,0,0,0,0]]", "application/json", "float64"),
        ('{"instances": [[1' + "0" * 400 + ",0,0,0,0,0,0,0,0,0]]}\n", "application/jsonlines", "float64"),
        (npy_declaring((10**12, 10)), "application/x-npy", "shape (1000000000000, 10)"),
        (npy_declaring((2**62, 2**62)), "application/x-npy", "shape"),
        ("1e39," + SAMPLE_ROW.partition(",")[2], "text/csv", "float32"),
        (json.dumps([[-1e39] + [0.0] * 9]), "application/json", "float32"),
    ],
)
def test_numeric_overflows_and_size_tricks_are_4xx_naming_the_problem(forest, body, content_type, phrase):
    resp = forest.invoke(body, content_type)
    assert resp.status == 400, (resp.status, resp.text)
    assert phrase in resp.text


@pytest.fixture(scope="module")
def impatient(sample_model, tmp_path_factory):
    """A model whose predictions take 3 s, served with 1 s read timeouts: reading is timed, predicting is not."""
    model_dir = tmp_path_factory.mktemp("slow") / "model"
    shutil.copytree(sample_model("sklearn", "joblib", "regression"), model_dir)
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(
        "import time\n\n\ndef predict_fn(data, model):\n    time.sleep(3)\n    return model.predict(data)\n"
    )
    timeouts = {"MODELCRATE_KEEP_ALIVE_TIMEOUT": "1", "MODELCRATE_HEADER_TIMEOUT": "1", "MODELCRATE_BODY_TIMEOUT": "1"}
    server = launch(model_dir, tmp_path_factory.mktemp("slow-logs"), env=timeouts)
    yield server
    server.stop()


def test_idle_connections_are_closed_after_the_keep_alive_timeout(impatient):
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=15) as sock:
        assert sock.recv(1024) == b""  # closed by the server, well before our 15 s timeout


def test_a_head_sent_too_slowly_gets_408(impatient):
    answer = exchange(impatient.port, b"GET /ping HTTP/1.1\r\nHost: x\r\n", timeout=15)
    assert status_of(answer) == 408 and b"MODELCRATE_HEADER_TIMEOUT" in answer


def test_a_body_sent_too_slowly_gets_408(impatient):
    answer = exchange(
        impatient.port,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n0.0,1.0",
        timeout=15,
    )
    assert status_of(answer) == 408 and b"MODELCRATE_BODY_TIMEOUT" in answer


def test_a_prediction_longer_than_the_read_timeouts_is_answered(impatient):
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        for _ in range(2):  # and the connection stays open for the next request
            body = SAMPLE_ROW.encode()
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            answer = sock.recv(65536)
            assert status_of(answer) == 200


def test_idle_connections_beyond_the_cap_do_not_stop_ping(sample_model, tmp_path):
    """The server may open 256 files (it inherits this process's limit); 400 idle connections must not use them all."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, limits[1]))
    try:
        server = launch(
            sample_model("sklearn", "joblib", "regression"), tmp_path, env={"MODELCRATE_MAX_CONNECTIONS": "100"}
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    idle = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        for _ in range(5):
            assert server.request("GET", "/ping", timeout=10).status == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_garbage_pipelined_behind_a_batched_request_is_refused_after_that_request_is_answered(sample_model, tmp_path):
    """The batched request's answer is owed first: the 400 for what follows it must not replace it."""
    model_dir = sample_model("sklearn", "joblib", "regression")
    server = launch(model_dir, tmp_path, env={"MODELCRATE_BATCHING": "on", "MODELCRATE_MAX_BATCH_WAIT_MS": "50"})
    try:
        valid = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s" % (
            len(SAMPLE_ROW),
            SAMPLE_ROW.encode(),
        )
        answer = exchange(server.port, valid + b"\x16\x03\x01garbage\r\n\r\n")
        first, _, rest = answer.partition(b"\r\n\r\n")
        assert status_of(first) == 200, answer[:300]
        assert status_of(rest[rest.index(b"HTTP/1.1 ") :]) == 400, answer[:300]
    finally:
        server.stop()
