"""Adaptive batching: concurrent requests share predict calls, and each caller gets exactly its own answer."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelcrate.predictors import load_predictor
from modelcrate.scaffold.sample_models import abalone_dataset
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.errors import ConfigError
from modelcrate.serving.service import InferenceService

CLIENTS = 64
REQUESTS_PER_CLIENT = 3
ACCEPTS = ("application/json", "text/csv")


def csv_body(records: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in records).encode()


def distinct_records(model_dir, task: str, count: int) -> np.ndarray:
    """``count`` Abalone rows whose predictions all differ, so that an answer shows whose rows it holds."""
    rows = abalone_dataset(task).x_test
    prediction = load_predictor(model_dir).predict(rows)
    scores = prediction.values if prediction.probabilities is None else prediction.probabilities[:, 0]
    _, first = np.unique(np.round(scores, 9), return_index=True)
    chosen = rows[np.sort(first)]
    assert len(chosen) >= count, f"only {len(chosen)} rows with distinct predictions"
    return chosen[:count]


def assert_close(answer, expected):
    if isinstance(expected, dict):
        assert answer.keys() == expected.keys()
        for key in expected:
            assert_close(answer[key], expected[key])
    elif isinstance(expected, list):
        assert len(answer) == len(expected)
        for got, want in zip(answer, expected, strict=True):
            assert_close(got, want)
    elif isinstance(expected, float):
        assert answer == pytest.approx(expected, rel=1e-9, abs=1e-12)
    else:
        assert answer == expected


def assert_same_answer(body: bytes, accept: str, expected: bytes):
    if accept == "application/json":
        assert_close(json.loads(body), json.loads(expected))
    else:  # CSV: compare the numbers; a batch must not change a single record's value beyond float noise
        got = [float(v) for v in re.findall(rb"-?\d+\.?\d*(?:e-?\d+)?", body)]
        want = [float(v) for v in re.findall(rb"-?\d+\.?\d*(?:e-?\d+)?", expected)]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def batch_histogram(server) -> dict[str, float]:
    """``modelcrate_batch_requests`` buckets, sum and count from /metrics ({} when nothing was batched)."""
    text = server.request("GET", "/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith("modelcrate_batch_requests"):
            name, value = line.rsplit(" ", 1)
            found[name.removeprefix("modelcrate_batch_requests")] = float(value)
    return found


def concurrent_clients(server, requests_of_client):
    """Each client on its own keep-alive connection; all start together. -> [[(request, status, body)]]"""
    start = threading.Barrier(len(requests_of_client))

    def client(requests):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        answers = []
        start.wait()
        try:
            for body, accept, *_ in requests:
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv", "Accept": accept})
                response = conn.getresponse()
                answers.append((response.status, response.read()))
        finally:
            conn.close()
        return answers

    with ThreadPoolExecutor(len(requests_of_client)) as pool:
        return list(pool.map(client, requests_of_client))


@pytest.mark.parametrize(
    "framework,model_format,task",
    [
        ("xgboost", "json", "regression"),
        ("xgboost", "json", "classification"),
        ("sklearn", "joblib", "regression"),
    ],
)
@pytest.mark.parametrize("mode", ["on", "auto", "off"])
def test_concurrent_clients_each_get_their_own_rows(sample_model, start_server, framework, model_format, task, mode):
    model_dir = sample_model(framework, model_format, task)
    # Every request has rows of its own: 1 row, except every 8th client's first request (3 rows).
    sizes = [[3 if c % 8 == 0 and r == 0 else 1 for r in range(REQUESTS_PER_CLIENT)] for c in range(CLIENTS)]
    records = distinct_records(model_dir, task, sum(map(sum, sizes)))
    local = InferenceService(ServingConfig.from_env({}), load_predictor(model_dir))
    requests_of_client, taken = [], 0
    for c, client_sizes in enumerate(sizes):
        requests = []
        for r, size in enumerate(client_sizes):
            body = csv_body(records[taken : taken + size])
            taken += size
            accept = ACCEPTS[(c + r) % 2]
            requests.append((body, accept, local.invoke(body, "text/csv", accept)[0]))
        requests_of_client.append(requests)
    server = start_server(model_dir, env={"MODELCRATE_BATCHING": mode, "MODELCRATE_MAX_BATCH_WAIT_MS": "5"})

    answers = concurrent_clients(server, requests_of_client)

    for requests, client_answers in zip(requests_of_client, answers, strict=True):
        for (_, accept, expected), (status, body) in zip(requests, client_answers, strict=True):
            assert status == 200, body
            assert_same_answer(body, accept, expected)
    histogram = batch_histogram(server)
    if mode == "off":
        assert histogram == {}
    else:
        assert histogram["_sum"] == CLIENTS * REQUESTS_PER_CLIENT
        assert histogram["_count"] < histogram["_sum"], "no predict call answered more than one request"


def test_batches_stay_within_the_row_limit(sample_model, start_server):
    server = start_server(
        sample_model("xgboost", "json", "regression"),
        env={"MODELCRATE_BATCHING": "on", "MODELCRATE_MAX_BATCH_ROWS": "4", "MODELCRATE_MAX_BATCH_WAIT_MS": "20"},
    )
    body = csv_body(abalone_dataset("regression").x_test[:1])
    answers = concurrent_clients(server, [[(body, "application/json")] * 2] * 32)
    assert all(status == 200 for client in answers for status, _ in client)
    histogram = batch_histogram(server)
    assert histogram['_bucket{le="4"}'] == histogram["_count"] < histogram["_sum"] == 64


@pytest.fixture
def picky_model(sample_model, tmp_path):
    """The XGBoost regressor behind a model_fn whose predictor refuses records with -1 as first feature and
    sleeps 3 s on -2: errors and timeouts that only the predict call (not decoding) can find."""
    model_dir = tmp_path / "picky"
    shutil.copytree(sample_model("xgboost", "json", "regression"), model_dir)
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path

            from modelcrate.predictors import InvalidInput, load_predictor


            def model_fn(model_dir):
                predictor = load_predictor(Path(model_dir))
                original = predictor.predict

                def predict(records):
                    if (records[:, 0] == -1).any():
                        raise InvalidInput("a first feature of -1 is refused by this test model")
                    if (records[:, 0] == -2).any():
                        time.sleep(3)
                    return original(records)

                predictor.predict = predict
                return predictor
            """
        )
    )
    return model_dir


def test_a_bad_request_among_good_ones_gets_its_own_400(picky_model, start_server):
    server = start_server(picky_model, env={"MODELCRATE_BATCHING": "on", "MODELCRATE_MAX_BATCH_WAIT_MS": "200"})
    rows = abalone_dataset("regression").x_test[:CLIENTS].copy()
    refused, undecodable = 5, 9
    rows[refused, 0] = -1
    bodies = [csv_body(rows[i : i + 1]) for i in range(CLIENTS)]
    bodies[undecodable] = b"1,2,3\n"  # wrong number of features: refused while decoding
    local = load_predictor(picky_model).predict(rows).values

    answers = concurrent_clients(server, [[(body, "application/json")] for body in bodies])

    for i, [(status, body)] in enumerate(answers):
        if i == refused:
            assert status == 400 and b"first feature of -1 is refused" in body
        elif i == undecodable:
            assert status == 400 and b"features per record" in body
        else:
            assert status == 200, body
            assert json.loads(body)["predictions"] == pytest.approx([local[i]], rel=1e-9)
    assert batch_histogram(server)["_count"] < CLIENTS - 1


def test_a_batch_past_the_timeout_answers_504_to_each_of_its_requests(picky_model, start_server):
    server = start_server(
        picky_model,
        env={
            "MODELCRATE_BATCHING": "on",
            "MODELCRATE_MAX_BATCH_WAIT_MS": "300",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1",
        },
    )
    rows = abalone_dataset("regression").x_test[:8].copy()
    rows[3, 0] = -2  # this request's rows make the whole batch's predict sleep 3 s

    answers = concurrent_clients(server, [[(csv_body(rows[i : i + 1]), "application/json")] for i in range(8)])

    assert [status for [(status, _)] in answers] == [504] * 8
    assert b"SAGEMAKER_MODEL_SERVER_TIMEOUT (1 s)" in answers[0][0][1]
    assert server.invoke(csv_body(rows[:1]), timeout=10).status == 200  # the worker goes on


def test_pipelined_requests_are_answered_in_order(sample_model, start_server):
    model_dir = sample_model("xgboost", "json", "regression")
    server = start_server(model_dir, env={"MODELCRATE_BATCHING": "on", "MODELCRATE_MAX_BATCH_WAIT_MS": "50"})
    rows = abalone_dataset("regression").x_test[:2]
    invocation = b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s"
    first, second = csv_body(rows[:1]), csv_body(rows[1:2])
    raw = invocation % (len(first), first) + b"GET /ping HTTP/1.1\r\n\r\n" + invocation % (len(second), second)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while received.count(b"HTTP/1.1 200") < 3:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    expected = load_predictor(model_dir).predict(rows).values
    predictions = [float(p) for p in re.findall(rb'"predictions": \[([-\d.e]+)\]', received)]
    assert predictions == pytest.approx(expected.tolist(), rel=1e-9)
    # the /ping answer (empty body) sits between the two predictions
    assert received.index(b"predictions") < received.index(b"Content-Length: 0") < received.rindex(b"predictions")


def test_batching_settings_are_read():
    config = ServingConfig.from_env({})
    assert (config.batching, config.max_batch_rows, config.max_batch_wait_ms) == ("auto", 256, 2.0)
    config = ServingConfig.from_env(
        {"MODELCRATE_BATCHING": " ON", "MODELCRATE_MAX_BATCH_ROWS": "64", "MODELCRATE_MAX_BATCH_WAIT_MS": "0.5"}
    )
    assert (config.batching, config.max_batch_rows, config.max_batch_wait_ms) == ("on", 64, 0.5)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"MODELCRATE_BATCHING": "sometimes"}, "MODELCRATE_BATCHING='sometimes'; use off, on, auto"),
        ({"MODELCRATE_MAX_BATCH_ROWS": "0"}, "MODELCRATE_MAX_BATCH_ROWS=0 must be at least 1"),
        ({"MODELCRATE_MAX_BATCH_ROWS": "many"}, "MODELCRATE_MAX_BATCH_ROWS='many' is not a whole number"),
        ({"MODELCRATE_MAX_BATCH_WAIT_MS": "soon"}, "MODELCRATE_MAX_BATCH_WAIT_MS='soon' is not a number"),
        ({"MODELCRATE_MAX_BATCH_WAIT_MS": "-1"}, "must be between 0 and 1000 milliseconds"),
    ],
)
def test_bad_batching_settings_are_named(env, message):
    with pytest.raises(ConfigError) as err:
        ServingConfig.from_env(env)
    assert message in str(err.value)
