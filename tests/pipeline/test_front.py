"""The pipeline's front server over real model servers: Serial chaining, Direct mode, errors, health."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from modelcrate.containers.endpoint import ServerError, execution_parameters, http_request
from modelcrate.pipeline import PipelineError, running_pipeline
from modelcrate.pipeline.front import combine_execution_parameters
from modelcrate.scaffold.sample_models import abalone_dataset
from tests.pipeline.conftest import (
    RECORDER_DEFAULT_ACCEPT,
    established_connections,
    recorded,
    recorder,
    runtime_pid,
    write_definition,
)

TARGET = "X-Amzn-SageMaker-Target-Container-Hostname"


def csv_rows(rows, with_ids: bool = False) -> bytes:
    return "".join(
        (f"{i}," if with_ids else "") + ",".join(repr(float(v)) for v in row) + "\n" for i, row in enumerate(rows)
    ).encode()


@pytest.fixture(scope="module")
def test_rows():
    return abalone_dataset("classification").x_test[:50]


@pytest.fixture(scope="module")
def serial(sample_model, recorder_dir, tmp_path_factory):
    """prepare (drops an id column) -> classifier (XGBoost, keys as CSV) -> finish (passes the body on)."""
    directory = tmp_path_factory.mktemp("serial")
    definition = {
        "Containers": [
            recorder(
                recorder_dir,
                "prepare",
                directory / "prepare.jsonl",
                DROP_FIRST_COLUMN="1",
                SAGEMAKER_MAX_PAYLOAD_IN_MB="5",
            ),
            {
                "ContainerHostname": "classifier",
                "ModelDirectory": str(sample_model("xgboost", "json", "classification")),
                "Environment": {
                    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                    "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities",
                    "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
                },
            },
            recorder(recorder_dir, "finish", directory / "finish.jsonl"),
        ],
    }
    with running_pipeline(write_definition(directory, definition), workers=1) as endpoint:
        yield endpoint, directory


def test_serial_passes_each_response_to_the_next_container(serial, test_rows):
    endpoint, directory = serial
    classifier = endpoint.containers[1]
    status, headers, body = http_request(
        endpoint.port,
        "POST",
        "/invocations",
        csv_rows(test_rows, with_ids=True),
        {"Content-Type": "text/csv", "Accept": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "trace=7"},
    )
    assert status == 200, body
    # The classifier's own answer to the rows without ids, passed on unchanged by the last container.
    direct = http_request(classifier.port, "POST", "/invocations", csv_rows(test_rows), {"Content-Type": "text/csv"})
    assert direct[0] == 200 and body == direct[2]
    assert headers["content-type"] == "text/csv"
    assert body.decode().splitlines()[0].split(",", 1)[0] in ("F", "I", "M")

    prepare, finish = recorded(directory / "prepare.jsonl")[-1], recorded(directory / "finish.jsonl")[-1]
    # The caller's Content-Type reaches the first container, its Accept only the last; in between, the type
    # is what the previous container answered (the classifier's SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT).
    assert prepare["content_type"] == "text/csv" and prepare["accept"] == RECORDER_DEFAULT_ACCEPT
    assert finish["content_type"] == "text/csv" and finish["accept"] == "application/json"
    assert prepare["custom_attributes"] == finish["custom_attributes"] == "trace=7"
    assert prepare["inference_id"] and prepare["inference_id"] == finish["inference_id"]


def test_the_callers_inference_id_reaches_every_container(serial, test_rows):
    endpoint, directory = serial
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "request-42"}
    assert http_request(endpoint.port, "POST", "/invocations", csv_rows(test_rows[:1], True), headers)[0] == 200
    assert recorded(directory / "prepare.jsonl")[-1]["inference_id"] == "request-42"
    assert recorded(directory / "finish.jsonl")[-1]["inference_id"] == "request-42"


def test_an_error_names_the_container_and_keeps_its_status(serial, test_rows):
    endpoint, _ = serial
    # Without an id column, the prepare container drops a feature: the classifier refuses 7 features.
    status, headers, body = http_request(
        endpoint.port, "POST", "/invocations", csv_rows(test_rows[:3]), {"Content-Type": "text/csv"}
    )
    assert (status, headers["content-type"]) == (400, "text/plain; charset=utf-8")
    assert body == b"container 'classifier' (2 of 3) answered 400: expected 8 features per record, got 7\n"

    status, _, body = http_request(endpoint.port, "POST", "/invocations", b"1,2,3\n")
    assert status == 415
    assert body.startswith(b"container 'prepare' (1 of 3) answered 415: Content-Type header is missing")


def test_serial_mode_refuses_a_target_container(serial):
    endpoint, _ = serial
    status, _, body = http_request(
        endpoint.port, "POST", "/invocations", b"1\n", {"Content-Type": "text/csv", TARGET: "classifier"}
    )
    assert status == 400
    assert b"only applies in Direct mode; this pipeline runs in Serial mode" in body


def test_execution_parameters_are_the_most_restrictive_of_the_containers(serial):
    endpoint, _ = serial
    assert execution_parameters(endpoint.port) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 5,
    }


def test_combining_execution_parameters():
    assert combine_execution_parameters([]) is None
    assert combine_execution_parameters([{"Other": 1}]) is None
    answers = [
        {"MaxConcurrentTransforms": 4, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 0},
        {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 20},
    ]
    # 0 (whole objects, streamed) sets no limit of its own.
    assert combine_execution_parameters(answers) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 20,
    }
    assert combine_execution_parameters([{"MaxPayloadInMB": 0}, {"BatchStrategy": "SingleRecord"}]) == {
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 0,
    }


def test_connections_to_the_containers_are_kept_alive(serial, test_rows):
    endpoint, _ = serial
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        for _ in range(30):
            connection.request("POST", "/invocations", csv_rows(test_rows[:2], True), {"Content-Type": "text/csv"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
    finally:
        connection.close()
    assert [established_connections(c.port) for c in endpoint.containers] == [1, 1, 1]


def test_a_chunked_request_body_is_read_whole(serial, test_rows):
    endpoint, _ = serial
    lines = csv_rows(test_rows, True).splitlines(keepends=True)
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request(
            "POST", "/invocations", body=iter(lines), headers={"Content-Type": "text/csv"}, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 200
        assert len(response.read().splitlines()) == len(test_rows)
    finally:
        connection.close()


def test_unknown_paths_and_methods(serial):
    endpoint, _ = serial
    status, _, body = http_request(endpoint.port, "GET", "/models")
    assert status == 404 and b"/ping, /invocations and /execution-parameters" in body
    assert http_request(endpoint.port, "GET", "/invocations")[:3:2] == (405, b"use POST /invocations\n")
    assert http_request(endpoint.port, "POST", "/ping")[0] == 405


@pytest.fixture(scope="module")
def direct(sample_model, recorder_dir, tmp_path_factory):
    """xgb (from a model.tar.gz), forest (scikit-learn) and slow (answers after 3 s), in Direct mode."""
    directory = tmp_path_factory.mktemp("direct")
    archive = directory / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sample_model("xgboost", "json", "classification").iterdir():
            tar.add(path, arcname=path.name)
    definition = {
        "Containers": [
            {"ContainerHostname": "xgb", "ModelDataUrl": f"file://{archive}"},
            {"ContainerHostname": "forest", "ModelDataUrl": str(sample_model("sklearn", "joblib", "classification"))},
            recorder(recorder_dir, "slow", directory / "slow.jsonl", SLEEP_SECONDS="3"),
        ],
        "InferenceExecutionConfig": {"Mode": "Direct"},
    }
    with running_pipeline(write_definition(directory, definition), workers=1, invocation_timeout=1.0) as endpoint:
        yield endpoint


@pytest.mark.parametrize(("hostname", "position"), [("xgb", 0), ("forest", 1)])
def test_direct_mode_calls_the_named_container_only(direct, test_rows, hostname, position):
    body = csv_rows(test_rows)
    asked = {"Content-Type": "text/csv", "Accept": "application/jsonlines"}
    status, headers, answer = http_request(direct.port, "POST", "/invocations", body, {**asked, TARGET: hostname})
    assert status == 200
    assert headers["content-type"] == "application/jsonlines"
    assert answer == http_request(direct.containers[position].port, "POST", "/invocations", body, asked)[2]


def test_direct_mode_needs_a_known_target(direct):
    status, _, body = http_request(direct.port, "POST", "/invocations", b"1\n", {"Content-Type": "text/csv"})
    assert (status, body) == (
        400,
        b"this pipeline runs in Direct mode: name the container in X-Amzn-SageMaker-Target-Container-Hostname "
        b"(one of: xgb, forest, slow)\n",
    )
    status, _, body = http_request(
        direct.port, "POST", "/invocations", b"1\n", {"Content-Type": "text/csv", TARGET: "gbm"}
    )
    assert (status, body) == (
        404,
        b"no container has the hostname 'gbm'; this pipeline's containers: xgb, forest, slow\n",
    )


def test_a_container_slower_than_the_invocation_timeout_gives_504(direct):
    started = time.monotonic()
    status, _, body = http_request(
        direct.port, "POST", "/invocations", b"1\n", {"Content-Type": "text/csv", TARGET: "slow"}
    )
    assert time.monotonic() - started < 2.5
    assert (status, body) == (
        504,
        b"container 'slow' (3 of 3) did not answer within the pipeline's 1 s invocation timeout\n",
    )


def test_ping_is_healthy_only_while_every_container_is(sample_model, tmp_path):
    model = str(sample_model("xgboost", "json", "classification"))
    definition = {"Containers": [{"ModelDirectory": model}, {"ModelDirectory": model}]}
    with running_pipeline(write_definition(tmp_path, definition), workers=1) as endpoint:
        assert http_request(endpoint.port, "GET", "/ping")[0] == 200
        os.kill(runtime_pid(endpoint.containers[1].port), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (answer := http_request(endpoint.port, "GET", "/ping"))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, _, body = answer
        assert status == 503
        assert body.startswith(b"unhealthy container(s): container-2 (not answering: ")
        assert b"container-1" not in body
        # The healthy container still answers; the stopped one is reported by name.
        status, _, body = http_request(
            endpoint.port, "POST", "/invocations", csv_rows(np.zeros((1, 8))), {"Content-Type": "text/csv"}
        )
        assert status == 502 and body.startswith(b"container 'container-2' (2 of 2) is not answering")


def test_a_taken_port_fails_before_any_container_starts(tmp_path, recorder_dir):
    definition = {"Containers": [{"ModelDirectory": str(recorder_dir)}, {"ModelDirectory": str(recorder_dir)}]}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with (
            pytest.raises(PipelineError, match=f"port {port} on 127.0.0.1 is already in use; choose another port"),
            running_pipeline(write_definition(tmp_path, definition), port=port),
        ):
            pass
        assert time.monotonic() - started < 1


def test_the_endpoint_object_serves_transform_jobs(serial):
    endpoint, _ = serial
    assert endpoint.url == f"http://127.0.0.1:{endpoint.port}"
    assert [c.spec.hostname for c in endpoint.containers] == ["prepare", "classifier", "finish"]
    assert "==> classifier <==" in endpoint.logs()
    assert json.loads(http_request(endpoint.port, "GET", "/execution-parameters")[2])["MaxPayloadInMB"] == 5


def child_pids() -> set[int]:
    me = os.getpid()
    return {int(pid) for task in Path(f"/proc/{me}/task").iterdir() for pid in (task / "children").read_text().split()}


def test_a_container_that_cannot_start_stops_the_others(tmp_path, recorder_dir):
    (tmp_path / "empty").mkdir()
    definition = {
        "Containers": [
            {"ContainerHostname": "fine", "ModelDirectory": str(recorder_dir)},
            {"ContainerHostname": "broken", "ModelDirectory": str(tmp_path / "empty")},
        ]
    }
    before = child_pids()
    with (
        pytest.raises(ServerError, match="the model server for broken stopped before it was healthy: "),
        running_pipeline(write_definition(tmp_path, definition), workers=1),
    ):
        pass
    assert child_pids() == before


def test_a_body_over_100_mib_is_refused_before_it_is_sent(serial):
    endpoint, _ = serial
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as client:
        client.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 104857601\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b"request body exceeds 100 MiB; send smaller requests\n")
