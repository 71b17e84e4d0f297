"""The server as a process: workers, crashes, timeouts, draining, payload limits, hooks and start-up errors."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

SAMPLE_ROW = "0.0,1.0,0.0,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"


@pytest.fixture
def model_dir(sample_model, tmp_path):
    """A private copy of the XGBoost regressor, so a test may add code/ to it."""
    target = tmp_path / "model"
    shutil.copytree(sample_model("xgboost", "json", "regression"), target)
    return target


def with_hooks(model_dir, source: str):
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent(source))
    return model_dir


def test_two_workers_share_one_port_and_a_crashed_worker_is_replaced(model_dir, start_server):
    server = start_server(model_dir, workers=2)
    workers = server.worker_pids()
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = server.worker_pids()
        if len(current) == 2 and workers[0] not in current:
            break
        time.sleep(0.05)
    assert len(current) == 2 and workers[0] not in current and workers[1] in current
    for _ in range(20):
        assert server.invoke(SAMPLE_ROW).status == 200
    assert "worker exited; replacing it" in server.log()


def test_a_request_past_the_timeout_gets_a_5xx_and_the_worker_recovers(model_dir, start_server):
    with_hooks(
        model_dir,
        """
        import time
        from modelcrate.serving.hooks import RequestContext

        def input_fn(body, content_type, context):
            if body == b"slow":
                time.sleep(30)
            return [[float(v) for v in body.decode().split(",")]]
    """,
    )
    server = start_server(model_dir, env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"})
    pid_before = server.worker_pids()
    started = time.monotonic()
    slow = server.invoke("slow")
    assert slow.status == 504
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT (1 s)" in slow.text
    assert time.monotonic() - started < 10
    assert server.invoke(SAMPLE_ROW).status == 200
    assert server.worker_pids() == pid_before  # the same worker answered: it recovered in place


def test_sigterm_drains_in_flight_requests_and_exits(model_dir, start_server):
    with_hooks(
        model_dir,
        """
        import time

        def predict_fn(data, model):
            time.sleep(2)
            return model.predict(data)
    """,
    )
    server = start_server(model_dir)
    result = {}
    thread = threading.Thread(target=lambda: result.update(resp=server.invoke(SAMPLE_ROW)))
    thread.start()
    time.sleep(0.5)  # the request is being predicted
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 30
    assert result["resp"].status == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


SLOW_PREDICT = """
    import time
    from pathlib import Path

    def predict_fn(data, model):
        Path("SIGNALS", "predicting").touch()
        time.sleep(float(data[0][0]) or 1.5)
        return model.predict(data)
"""


@pytest.fixture
def slow_predict(model_dir):
    """Hooks whose predictions sleep 1.5 s (or as many seconds as the row's first value, if not 0); yields the
    file each prediction touches as it starts, in a directory the workers can write to once they dropped root."""
    with tempfile.TemporaryDirectory() as signals:
        os.chmod(signals, 0o777)
        with_hooks(model_dir, SLOW_PREDICT.replace("SIGNALS", signals))
        yield Path(signals, "predicting")


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def send_invocation(port: int, row: str = SAMPLE_ROW) -> socket.socket:
    """A connection that has sent one complete /invocations request and not read its answer yet."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = row.encode()
    client.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    return client


def answer_status(client: socket.socket) -> int:
    """The status of the whole answer on ``client``; raises OSError if the connection was cut."""
    with client:
        answer = http.client.HTTPResponse(client)
        answer.begin()
        answer.read()
        return answer.status


def test_sigterm_answers_every_request_already_received_and_refuses_new_ones(model_dir, slow_predict, start_server):
    server = start_server(model_dir)
    clients = [send_invocation(server.port) for _ in range(4)]
    wait_for(slow_predict.exists)  # the first request is being predicted, the others wait in the worker or the kernel
    server.process.send_signal(signal.SIGTERM)
    assert [answer_status(client) for client in clients] == [200] * 4
    wait_for(lambda: "draining: answering" in server.log())
    try:
        late = server.invoke(SAMPLE_ROW)
    except ConnectionRefusedError:
        pass
    else:
        assert late.status == 503
    assert server.process.wait(30) == 0


def test_sigterm_answers_every_request_pipelined_on_a_connection(model_dir, slow_predict, start_server):
    server = start_server(model_dir)
    first = send_invocation(server.port)
    wait_for(slow_predict.exists)
    body = SAMPLE_ROW.encode()
    request = b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    pipelined = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    pipelined.sendall(request * 2)  # read by the worker only once it drains
    server.process.send_signal(signal.SIGTERM)
    assert answer_status(first) == 200
    with pipelined, pipelined.makefile("rb") as stream:
        answers = stream.read()  # the worker closes the connection after the last request it received
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2
    first_answer, last_answer = answers.split(b"HTTP/1.1 ")[1:]
    assert b"Connection: close" not in first_answer and b"Connection: close" in last_answer
    assert server.process.wait(30) == 0


def test_a_request_longer_than_the_drain_deadline_makes_the_exit_code_non_zero(model_dir, slow_predict, start_server):
    server = start_server(model_dir, env={"MODELCRATE_DRAIN_TIMEOUT": "2"})
    client = send_invocation(server.port, "20" + SAMPLE_ROW[3:])  # a 20 s prediction
    wait_for(slow_predict.exists)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) != 0
    client.close()
    cut_off = [line for line in server.log().splitlines() if "cut off" in line]
    assert len(cut_off) == 1
    assert "cut off 1 request(s)" in cut_off[0]


def test_bodies_over_the_payload_limit_get_413(model_dir, start_server):
    server = start_server(model_dir, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    big = (SAMPLE_ROW + "\n") * (1024 * 1024 // len(SAMPLE_ROW) + 10)
    resp = server.invoke(big)
    assert resp.status == 413
    assert "1 MiB limit" in resp.text
    assert server.invoke(SAMPLE_ROW).status == 200
    params = json.loads(server.request("GET", "/execution-parameters").body)
    assert params == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_realtime_limit_is_6_mib_by_default(model_dir, start_server):
    server = start_server(model_dir)
    row = (SAMPLE_ROW + "\n").encode()
    just_under = row * (6 * 1024 * 1024 // len(row))
    assert server.invoke(just_under).status == 200
    assert server.invoke(just_under + row * 2).status == 413


def test_user_hooks_replace_each_default(model_dir, start_server):
    with_hooks(
        model_dir,
        """
        import json
        from modelcrate.predictors import load_predictor

        def model_fn(model_dir):
            return load_predictor(model_dir)

        def input_fn(body, content_type):
            return [json.loads(body)["row"]]

        def predict_fn(data, model, context):
            return {"value": float(model.predict(data).values[0]), "accept": context.accept}

        def output_fn(prediction, accept):
            return json.dumps(prediction), "application/vnd.custom+json"
    """,
    )
    server = start_server(model_dir)
    row = [float(v) for v in SAMPLE_ROW.split(",")]
    resp = server.invoke(json.dumps({"row": row}), "application/json", "text/csv")
    assert resp.status == 200, resp.text
    assert resp.headers["content-type"] == "application/vnd.custom+json"
    answer = json.loads(resp.body)
    assert answer["accept"] == "text/csv" and answer["value"] > 0


def test_transform_fn_alone(model_dir, start_server):
    with_hooks(
        model_dir,
        """
        from modelcrate.serving.errors import BadRequest

        def transform_fn(model, body, content_type, accept):
            if body == b"refuse":
                raise BadRequest("refused by my transform_fn")
            return b"%d bytes" % len(body)
    """,
    )
    server = start_server(model_dir)
    assert server.invoke("hello").body == b"5 bytes"
    refused = server.invoke("refuse")
    assert refused.status == 400 and refused.text == "refused by my transform_fn\n"


def test_a_failing_hook_is_a_500_without_internals(model_dir, start_server):
    with_hooks(
        model_dir,
        """
        def predict_fn(data, model):
            raise RuntimeError("secret database password is hunter2")
    """,
    )
    server = start_server(model_dir)
    resp = server.invoke(SAMPLE_ROW, **{"X-Amzn-SageMaker-Inference-Id": "req-42"})
    assert resp.status == 500
    assert "req-42" in resp.text
    assert "hunter2" not in resp.text and "Traceback" not in resp.text
    assert "hunter2" in server.log()  # the details are in the container log


def test_env_inference_output_and_submit_directory(sample_model, tmp_path, start_server):
    code = tmp_path / "elsewhere"
    code.mkdir()
    (code / "handler.py").write_text(
        "def output_fn(prediction, accept, context):\n    return repr(context.inference_keys)\n"
    )
    server = start_server(
        sample_model("xgboost", "json", "classification"),
        env={
            "SAGEMAKER_INFERENCE_OUTPUT": " Predicted_Label , PROBABILITY",
            "SAGEMAKER_SUBMIT_DIRECTORY": str(code),
            "SAGEMAKER_PROGRAM": "handler.py",
        },
    )
    resp = server.invoke("0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15")
    assert resp.text == "('predicted_label', 'probability')"


@pytest.mark.parametrize(
    "env,hooks,message",
    [
        (
            {"SAGEMAKER_INFERENCE_OUTPUT": "probabilities"},
            None,
            "SAGEMAKER_INFERENCE_OUTPUT asks for probabilities",
        ),
        ({"SAGEMAKER_INFERENCE_OUTPUT": "score"}, None, "unknown inference key(s) score"),
        (
            {"SAGEMAKER_MULTI_MODEL": "true", "MODELCRATE_MAX_LOADED_MODELS": "0"},
            None,
            "MODELCRATE_MAX_LOADED_MODELS=0 must be at least 1",
        ),
        (
            {"SAGEMAKER_MODEL_SERVER_WORKERS": "two"},
            None,
            "SAGEMAKER_MODEL_SERVER_WORKERS='two' is not a whole number",
        ),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "200"}, None, "exceeds the limit of 100"),
        (
            {"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "20", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6"},
            None,
            "exceeds 100",
        ),
        ({"SAGEMAKER_PROGRAM": "missing.py"}, None, "missing.py does not exist"),
        (
            {},
            "def transform_fn(m, b, c, a): pass\ndef input_fn(b, c): pass\n",
            "transform_fn together with input_fn",
        ),
        ({}, "def predict_fn(a, b, c, d): pass\n", "predict_fn takes 4 arguments"),
        ({}, "import not_installed_anywhere\n", "ModuleNotFoundError"),
        ({"MODELCRATE_MODEL_FORMAT": "keras"}, None, "no keras model found"),
    ],
)
def test_bad_configuration_refuses_to_start_with_the_reason(model_dir, start_server, env, hooks, message):
    if hooks:
        with_hooks(model_dir, hooks)
    server = start_server(model_dir, env=env, wait=False)
    assert server.process.wait(60) != 0
    assert message in server.log()
    assert "Traceback" not in server.log()


def test_logs_are_json_lines(model_dir, start_server):
    server = start_server(model_dir, env={"SAGEMAKER_CONTAINER_LOG_LEVEL": "10"})
    server.invoke("bad")
    server.stop()
    entries = [json.loads(line) for line in server.log().splitlines()]
    assert {"time", "level", "logger", "message", "pid"} <= set(entries[0])
    refused = [e for e in entries if e["message"] == "request refused"]
    assert refused and refused[0]["status"] == 400
