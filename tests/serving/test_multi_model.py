"""Multi-model endpoints (SAGEMAKER_MULTI_MODEL=true) against a real server with two workers: SageMaker's /models
API, every status it answers, and loads and unloads seen by the worker that did not answer them."""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

# transform_fn keeps the worker that accepted "hold:<file>" busy until <file> exists, and names its process,
# so that a test knows which worker answers while the other one is held.
HOLDING_HOOK = """
import os
import time
from pathlib import Path


def transform_fn(model, body, content_type, accept):
    if body.startswith(b"hold:"):
        release = Path(body[5:].decode())
        Path(f"{release}.held").touch()
        while not release.exists():
            time.sleep(0.01)
    return str(os.getpid())
"""


@pytest.fixture
def scratch() -> Path:
    """Outside pytest's root-only temporary tree, sticky and world-writable like /tmp: the workers load models
    and the holding hook writes files here after dropping root (the tests run as root)."""
    directory = Path(tempfile.mkdtemp(prefix="modelcrate-mme-"))
    directory.chmod(0o1777)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def root(sample_model, scratch) -> Path:
    """The models directory, as SageMaker fills it: <root>/<name>/model (readable by the workers' uid)."""
    models = scratch / "models"
    shutil.copytree(sample_model("xgboost", "json", "classification"), models / "classifier" / "model")
    shutil.copytree(sample_model("xgboost", "json", "regression"), models / "regressor" / "model")
    shutil.copytree(sample_model("xgboost", "json", "regression"), models / "holder" / "model")
    (models / "holder" / "model" / "code").mkdir()
    (models / "holder" / "model" / "code" / "inference.py").write_text(textwrap.dedent(HOLDING_HOOK))
    (models / "empty" / "model").mkdir(parents=True)
    for path in [models, *models.rglob("*")]:  # the samples were made in root-only directories
        path.chmod(0o755 if path.is_dir() else 0o644)
    return models


@pytest.fixture
def start_endpoint(root, start_server, xgboost_imported_at_start):
    def start(**env):
        return start_server(
            root,
            env={
                "SAGEMAKER_MULTI_MODEL": "true",
                "MODELCRATE_MULTI_MODEL_ROOT": str(root),
                **xgboost_imported_at_start,
                **env,
            },
            workers=2,
        )

    return start


def load(server, name, url):
    body = json.dumps({"model_name": name, "url": str(url)}).encode()
    return server.request("POST", "/models", body, {"Content-Type": "application/json"})


def invoke(server, name, body, content_type="text/csv", accept=None):
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return server.request("POST", f"/models/{name}/invoke", body.encode(), headers)


def samples(model_dir: Path) -> str:
    """The model's recorded sample records, as CSV."""
    records = [s["input"] for s in json.loads((model_dir / "modelcrate.json").read_text())["samples"]]
    return "".join(",".join(map(repr, record)) + "\n" for record in records)


class Hold:
    """Keeps busy the worker that accepts the request, until released: the other worker answers meanwhile."""

    def __init__(self, server, release: Path):
        self.release = release
        self.answer = {}
        self.thread = threading.Thread(
            target=lambda: self.answer.update(resp=invoke(server, "holder", f"hold:{release}"))
        )
        self.thread.start()
        held = Path(f"{release}.held")
        deadline = time.monotonic() + 60
        while not held.exists():
            assert time.monotonic() < deadline, f"no worker took the hold:\n{server.log()}"
            time.sleep(0.01)

    def end(self) -> int:
        """Release the worker; its process id."""
        self.release.touch()
        self.thread.join(60)
        assert self.answer["resp"].status == 200, self.answer["resp"].text
        return int(self.answer["resp"].text)


def worker_answering(server) -> int:
    return int(invoke(server, "holder", "who").text)


def test_loads_and_unloads_reach_the_worker_that_did_not_answer_them(root, start_endpoint, start_server, scratch):
    server = start_endpoint()
    assert load(server, "holder", root / "holder" / "model").status == 200
    records = samples(root / "classifier" / "model")
    single = start_server(root / "classifier" / "model")
    want_json = single.invoke(records, "text/csv", "application/json")
    want_csv = single.invoke(records, "text/csv", "text/csv")

    first = Hold(server, scratch / "release-1")  # worker X is busy: Y answers
    y = worker_answering(server)
    assert load(server, "classifier", root / "classifier" / "model").status == 200
    on_y = invoke(server, "classifier", records, accept="application/json")
    second = Hold(server, scratch / "release-2")  # X is still busy, so this holds Y
    x = first.end()  # X is free again and alone to answer
    assert x != y and set(server.worker_pids()) == {x, y}
    assert worker_answering(server) == x
    on_x = invoke(server, "classifier", records, accept="application/json")  # X loads what Y loaded
    assert on_x.status == on_y.status == 200, (on_x.text, on_y.text)
    assert on_x.body == on_y.body == want_json.body
    assert on_x.headers["content-type"] == "application/json"
    assert invoke(server, "classifier", records, accept="text/csv").body == want_csv.body
    assert server.request("DELETE", "/models/classifier").status == 200
    assert load(server, "regressor", root / "regressor" / "model").status == 200

    third = Hold(server, scratch / "release-3")  # Y is busy, so this holds X
    assert second.end() == y
    assert worker_answering(server) == y
    gone = invoke(server, "classifier", records)  # Y sees X's unload...
    assert gone.status == 404 and "model 'classifier' is not loaded" in gone.text
    assert invoke(server, "regressor", samples(root / "regressor" / "model")).status == 200  # ...and X's load
    assert third.end() == x


def test_every_status_of_the_models_api(root, start_endpoint):
    server = start_endpoint()
    assert server.request("GET", "/ping").status == 200
    listed = server.request("GET", "/models")
    assert (listed.status, json.loads(listed.body)) == (200, {"models": []})
    url = root / "classifier" / "model"
    for body, status, phrase in [
        (b"", 400, "POST /models takes a JSON object"),
        (b"{oops", 400, "POST /models takes a JSON object"),
        (b"[]", 400, "POST /models takes a JSON object"),
        (json.dumps({"url": str(url)}).encode(), 400, "model_name None must be a string"),
        (json.dumps({"model_name": "a/b", "url": str(url)}).encode(), 400, "without spaces or '/'"),
        (json.dumps({"model_name": "a"}).encode(), 400, "url None must name the directory"),
        (json.dumps({"model_name": "a", "url": "s3://bucket/a.tar.gz"}).encode(), 400, "not a local directory"),
        (json.dumps({"model_name": "a", "url": "/etc"}).encode(), 400, "outside the models directory"),
        (json.dumps({"model_name": "a", "url": f"{root}/../../x"}).encode(), 400, "outside the models directory"),
        (json.dumps({"model_name": "a", "url": str(root / "nowhere")}).encode(), 404, "does not exist"),
        (json.dumps({"model_name": "a", "url": str(url / "model.json")}).encode(), 400, "is not a directory"),
        (json.dumps({"model_name": "a", "url": str(root / "empty" / "model")}).encode(), 400, "no model file found"),
    ]:
        resp = server.request("POST", "/models", body, {"Content-Type": "application/json"})
        assert (resp.status, phrase in resp.text) == (status, True), (body, resp.text)

    loaded = load(server, "classifier", url)
    assert (loaded.status, json.loads(loaded.body)) == (200, {"modelName": "classifier", "modelUrl": str(url)})
    again = load(server, "classifier", root / "regressor" / "model")
    assert again.status == 409 and "already loaded" in again.text
    relative = load(server, "relative", "regressor/model")  # a url relative to the models directory
    assert relative.status == 200, relative.text

    described = server.request("GET", "/models/classifier")
    assert described.status == 200
    details = json.loads(described.body)
    assert details["modelName"] == "classifier" and details["modelUrl"] == str(url)
    assert (details["framework"], details["task"], details["labels"]) == ("xgboost", "classification", ["F", "I", "M"])
    assert server.request("GET", "/models/nowhere").status == 404
    assert invoke(server, "nowhere", "1,2").status == 404
    assert server.request("GET", "/models/classifier/invoke").status == 405
    assert server.request("PUT", "/models").status == 405
    direct = server.request("POST", "/invocations", b"1,2", {"Content-Type": "text/csv"})
    assert direct.status == 404 and "multi-model endpoint" in direct.text
    assert invoke(server, "classifier", "1,2").status == 400  # the model's own checks: 8 features

    assert server.request("DELETE", "/models/classifier").status == 200
    assert server.request("DELETE", "/models/classifier").status == 404
    assert server.request("GET", "/models/classifier").status == 404
    assert invoke(server, "classifier", samples(url)).status == 404
    assert load(server, "classifier", url).status == 200  # loadable again once unloaded
    metrics = server.request("GET", "/metrics").text
    assert 'modelcrate_requests_total{route="/models",status="409"} 1' in metrics


def test_list_is_paginated(root, start_endpoint):
    server = start_endpoint()
    names = [f"model-{i}" for i in range(5)]
    for name in reversed(names):
        assert load(server, name, root / "regressor" / "model").status == 200
    everything = json.loads(server.request("GET", "/models").body)
    assert everything == {"models": [{"modelName": n, "modelUrl": str(root / "regressor" / "model")} for n in names]}

    seen, pages, query = [], 0, "/models?max_results=2"
    while True:
        page = json.loads(server.request("GET", query).body)
        seen += [m["modelName"] for m in page["models"]]
        pages += 1
        if "nextPageToken" not in page:
            break
        query = f"/models?max_results=2&next_page_token={page['nextPageToken']}"
    assert (seen, pages) == (names, 3)
    for query, phrase in [
        ("/models?max_results=0", "max_results='0' must be a whole number from 1 to 1000"),
        ("/models?max_results=many", "max_results='many'"),
        ("/models?next_page_token=abc", "is not one this server gave"),
    ]:
        resp = server.request("GET", query)
        assert (resp.status, phrase in resp.text) == (400, True), (query, resp.text)


def test_loads_beyond_the_limits_get_507(root, start_endpoint):
    counted = start_endpoint(MODELCRATE_MAX_LOADED_MODELS="1")
    assert load(counted, "first", root / "regressor" / "model").status == 200
    refused = load(counted, "second", root / "classifier" / "model")
    assert refused.status == 507 and "MODELCRATE_MAX_LOADED_MODELS=1" in refused.text
    assert counted.request("DELETE", "/models/first").status == 200
    assert load(counted, "second", root / "classifier" / "model").status == 200

    starved = start_endpoint(MODELCRATE_MIN_FREE_MEMORY_MB=str(1 << 40))
    refused = load(starved, "first", root / "regressor" / "model")
    assert refused.status == 507 and "not enough memory for model 'first'" in refused.text
    assert json.loads(starved.request("GET", "/models").body) == {"models": []}
