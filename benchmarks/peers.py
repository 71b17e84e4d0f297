"""Peer benchmark: modelcrate's ``serve`` against MLflow, MLServer and BentoML, all measured in one run.

    .venv/bin/python benchmarks/peers.py [--duration SECONDS] [--only SERVER,...] [--models FRAMEWORK,...]

Installs each peer into its own virtualenv under ~/.cache/modelcrate-bench/ (created on the first run, then
reused), with the scikit-learn and XGBoost versions modelcrate has, so every server loads the same Abalone
RandomForest and XGBoost regressors. modelcrate runs as a user would run it at its best: the model compiled by
``modelcrate optimize``, adaptive batching on auto. Every server gets 2 workers and the same wrk runs (1 and
100 rows, concurrency 1, 16 and 64), plus one 10,000-row request. A full run writes
benchmarks/results/peers.md, benchmarks/results/peers.png and the peer table of README.md; a run with
--only or --models prints its tables only. Traffic goes to 127.0.0.1 only, and every server started here is
stopped before exit, on Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import http.client
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelcrate.compiler.trees import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE
from modelcrate.predictors import find_model_file, load_predictor
from modelcrate.scaffold.sample_models import abalone_dataset, create_sample_model
from serving import (
    BENCHMARKS_DIR,
    BIN_DIR,
    HOST,
    MODELS,
    OMP_WAIT_POLICY,
    READY_TIMEOUT_SECONDS,
    SETTLE_SECONDS,
    THREAD_VARIABLES,
    WRK_SCRIPT,
    WRK_THREADS,
    BenchmarkError,
    Load,
    Model,
    RunningServer,
    counted,
    cpu_ticks,
    csv_body,
    free_port,
    load_average,
    machine_table,
    progress,
    run_wrk,
    running_process,
    running_server,
    server_environment,
    source_revision,
    table,
    threads_per_worker,
    wait_until_healthy,
)

RESULTS_DIR = BENCHMARKS_DIR / "results"
REPORT_PATH = RESULTS_DIR / "peers.md"
CHART_PATH = RESULTS_DIR / "peers.png"
README_PATH = BENCHMARKS_DIR.parent / "README.md"
README_START = "<!-- peers.py: start -->"
README_END = "<!-- peers.py: end -->"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelcrate-bench"

SERVERS = ("modelcrate", "mlflow", "mlserver", "bentoml")
PEERS = SERVERS[1:]
# Current releases that install on Python 3.11 (MLflow 3.18.0 needs an mlflow-skinny that PyPI lacks for it).
PEER_PACKAGES = {
    "mlflow": ("mlflow==3.17.2",),
    # MLServer 1.7.1's parallel workers fail to start with uvloop 0.22 and later (SeldonIO/MLServer#2286).
    "mlserver": ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "mlserver-xgboost==1.7.1", "uvloop==0.21.0"),
    "bentoml": ("bentoml==1.4.40",),
}
# The peers load the very model files modelcrate loads: same framework versions.
FRAMEWORK_PINS = tuple(f"{name}=={version(name)}" for name in ("scikit-learn", "xgboost"))
REPORTED_PACKAGES = ("scikit-learn", "xgboost", "numpy", "pandas", "uvicorn")

WORKERS = 2
ROW_COUNTS = (1, 100)
CONCURRENCIES = (1, 16, 64)
BIG_ROWS = 10_000
BIG_REQUESTS = 5  # the 10,000-row latency is the median of this many, after one unmeasured request
PIP_RETRIES = 10
MLSERVER_MODEL_NAME = "abalone"

# Acceptance targets (issue 7): 1-row CSV, concurrency 16, 2 workers.
TARGET_ROWS, TARGET_CONCURRENCY = 1, 16
MIN_RATIO = {"sklearn": 10.0, "xgboost": 3.0}
P99_BELOW_EVERY_PEER = ("xgboost",)


@dataclass(frozen=True)
class RequestFormat:
    """How one server is asked for predictions, and where its answer holds them."""

    path: str
    content_type: str
    description: str
    encode: Callable[[np.ndarray, list[str]], bytes]  # (records, feature names) -> body
    decode: Callable[[object], list]  # parsed JSON answer -> predictions


def mlserver_body(records: np.ndarray, _names: list[str]) -> bytes:
    tensor = {"name": "rows", "shape": list(records.shape), "datatype": "FP64", "data": records.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


REQUEST_FORMATS = {
    "modelcrate": RequestFormat(
        "/invocations",
        "text/csv",
        "CSV, no header (SageMaker's `text/csv`)",
        lambda records, _names: csv_body(records),
        lambda answer: answer["predictions"],
    ),
    "mlflow": RequestFormat(
        "/invocations",
        "text/csv",
        "CSV with a header line of the feature names (MLflow reads CSV with `pandas.read_csv`, header first)",
        lambda records, names: (",".join(names) + "\n").encode() + csv_body(records),
        lambda answer: answer["predictions"],
    ),
    "mlserver": RequestFormat(
        f"/v2/models/{MLSERVER_MODEL_NAME}/infer",
        "application/json",
        "Open Inference Protocol (V2) JSON: one FP64 tensor of shape [rows, 10]",
        mlserver_body,
        lambda answer: answer["outputs"][0]["data"],
    ),
    "bentoml": RequestFormat(
        "/predict",
        "application/json",
        'BentoML JSON: `{"rows": [[...], ...]}` for the `numpy.ndarray` argument `rows`',
        lambda records, _names: json.dumps({"rows": records.tolist()}).encode(),
        lambda answer: answer,
    ),
}
HEALTH_PATHS = {
    "modelcrate": "/ping",
    "mlflow": "/ping",
    "mlserver": f"/v2/models/{MLSERVER_MODEL_NAME}/ready",
    "bentoml": "/readyz",
}


@dataclass(frozen=True)
class Settings:
    duration: int  # seconds of each measured wrk run
    warmup: int  # seconds of wrk load after a server has settled, not measured
    servers: tuple[str, ...]
    models: tuple[Model, ...]

    @property
    def full_run(self) -> bool:
        return self.servers == SERVERS and self.models == MODELS


@dataclass
class ServerResults:
    load: dict[tuple[int, int], Load]  # by (rows, concurrency)
    big_request_ms: list[float]  # the 10,000-row request, one per measured request
    command: str  # how the server was started, with the scratch directory shown as $WORK


# ---- peer virtualenvs -------------------------------------------------------------------------------


def peer_requirements(peer: str) -> str:
    return "\n".join((*PEER_PACKAGES[peer], *FRAMEWORK_PINS)) + "\n"


def peer_bin(peer: str) -> Path:
    """The bin directory of the peer's virtualenv, created (or recreated, if its pins changed) on demand."""
    venv = CACHE_DIR / peer
    requirements = peer_requirements(peer)
    stamp = venv / "modelcrate-bench-requirements.txt"  # written last: a half-made virtualenv has none
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / f"{peer}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: the second waits for the first one's install
        if not (stamp.exists() and stamp.read_text() == requirements):
            create_virtualenv(peer, venv, requirements)
            stamp.write_text(requirements)
    return venv / "bin"


def create_virtualenv(peer: str, venv: Path, requirements: str) -> None:
    progress(f"installing {peer} into {venv} (first run only; a few minutes)")
    shutil.rmtree(venv, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(venv)])
    requirements_file = venv / "requirements.in"
    requirements_file.write_text(requirements)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        [*pip, "--retries", str(PIP_RETRIES), "-r", str(requirements_file)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BenchmarkError(
            f"pip could not install {peer} into {venv} (exit code {result.returncode}); check that PyPI is "
            f"reachable and that these pins exist:\n{requirements}{result.stderr[-3000:]}"
        )


def peer_versions(peer: str) -> str:
    names = [package.split("==")[0] for package in PEER_PACKAGES[peer]] + list(REPORTED_PACKAGES)
    script = """
import importlib.metadata, json, sys
versions = {}
for name in sys.argv[1:]:
    try:
        versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps(versions))
"""
    versions = json.loads(run_checked([str(peer_bin(peer) / "python"), "-c", script, *names]).stdout)
    return ", ".join(f"{name} {number}" for name, number in versions.items())


def run_checked(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise BenchmarkError(f"{shlex.join(argv)} failed with exit code {result.returncode}:\n{output}")
    return result


# ---- servers ----------------------------------------------------------------------------------------


def peer_environment(workers: int) -> dict[str, str]:
    # The thread pools benchmarks/serving.py gives its baseline: each worker gets its share of the cores.
    return (
        server_environment()
        | dict.fromkeys(THREAD_VARIABLES, str(threads_per_worker(workers)))
        | OMP_WAIT_POLICY
        | {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    )


def save_in_peer_format(bin_dir: Path, peer: str, framework: str, model_file: Path, destination: str, env) -> None:
    """The peer's own copy of the model file, written by the peer's Python (benchmarks/peer_models.py)."""
    command = [str(bin_dir / "python"), str(BENCHMARKS_DIR / "peer_models.py"), peer, framework, str(model_file)]
    run_checked([*command, destination], env=env)


def start_peer(peer: str, model: Model, model_file: Path, work: Path) -> contextlib.AbstractContextManager:
    """Saves the model in the peer's format, then starts the peer's production server on it."""
    bin_dir, port = peer_bin(peer), free_port()
    env, cwd = peer_environment(WORKERS), None
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"  # as if activated: MLflow runs `uvicorn` from PATH
    # No access log (uvicorn reads its options from UVICORN_* variables): modelcrate writes no line per request.
    env["UVICORN_ACCESS_LOG"] = "false"
    if peer == "mlflow":
        saved = work / f"mlflow-{model.framework}"
        shutil.rmtree(saved, ignore_errors=True)
        save_in_peer_format(bin_dir, peer, model.framework, model_file, str(saved), env)
        argv = [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "--model-uri",
            str(saved),
            "--env-manager",
            "local",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
        ]
    elif peer == "mlserver":
        repository = work / f"mlserver-{model.framework}"
        (repository / MLSERVER_MODEL_NAME).mkdir(parents=True, exist_ok=True)
        settings = {
            "host": HOST,
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": WORKERS,
            "debug": False,  # no access log: modelcrate logs no line per request either
        }
        runtime = "mlserver_xgboost.XGBoostModel" if model.framework == "xgboost" else "mlserver_sklearn.SKLearnModel"
        model_settings = {
            "name": MLSERVER_MODEL_NAME,
            "implementation": runtime,
            "parameters": {"uri": str(model_file)},
        }
        (repository / "settings.json").write_text(json.dumps(settings, indent=2))
        (repository / MLSERVER_MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        argv, cwd = [str(bin_dir / "mlserver"), "start", str(repository)], repository
    else:
        env |= {"BENTOML_HOME": str(work / "bentoml-home"), "PEER_BENTOML_MODEL": f"abalone-{model.framework}"}
        env["PEER_WORKERS"] = str(WORKERS)
        save_in_peer_format(bin_dir, peer, model.framework, model_file, env["PEER_BENTOML_MODEL"], env)
        argv = [
            str(bin_dir / "bentoml"),
            "serve",
            "peer_bentoml_service:AbaloneRegressor",
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        cwd = BENCHMARKS_DIR
    return running_process(peer, argv, env, port, work, health_path=HEALTH_PATHS[peer], cwd=cwd)


def start_server(name: str, model: Model, model_dir: Path, work: Path) -> contextlib.AbstractContextManager:
    if name == "modelcrate":
        return running_server("modelcrate", model_dir, WORKERS, work)
    return start_peer(name, model, find_model_file(model_dir).path, work)


def shown_command(server: RunningServer, work: Path) -> str:
    command = shlex.join(server.process.args).replace(str(work), "$WORK")
    return command.replace(str(CACHE_DIR), "~/.cache/modelcrate-bench").replace(f"{BENCHMARKS_DIR.parent}/", "")


def wait_until_settled(server: RunningServer) -> None:
    """Until no process of the server used any CPU for SETTLE_SECONDS: every worker has loaded its model."""
    deadline = time.perf_counter() + READY_TIMEOUT_SECONDS
    previous = None
    while time.perf_counter() < deadline:
        try:
            ticks = {pid: cpu_ticks(pid) for pid in server.pids()}
        except FileNotFoundError:  # a process exited while being read: not settled
            ticks = None
        if ticks is not None and ticks == previous:
            return
        previous = ticks
        time.sleep(SETTLE_SECONDS)
    raise server.failure(f"its processes did not go idle within {READY_TIMEOUT_SECONDS:g} s of starting")


# ---- requests ---------------------------------------------------------------------------------------


def post(server: RunningServer, request: RequestFormat, body: bytes) -> tuple[int, bytes, float]:
    """Status, payload and milliseconds from sending the request to reading the whole answer."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=120)
    try:
        start = time.perf_counter()
        connection.request("POST", request.path, body=body, headers={"Content-Type": request.content_type})
        response = connection.getresponse()
        payload = response.read()
        return response.status, payload, (time.perf_counter() - start) * 1e3
    finally:
        connection.close()


def check_answer(server: RunningServer, request: RequestFormat, body: bytes, expected: np.ndarray) -> float:
    """The server must answer 200 with the original model's predictions; returns the milliseconds it took.

    modelcrate serves the compiled model, which `modelcrate optimize` checked against the original within
    these tolerances; every server is held to them."""
    status, payload, elapsed_ms = post(server, request, body)
    if status != 200:
        raise server.failure(f"answered HTTP {status} to a {len(expected)}-row request: {payload[:500]!r}")
    predictions = np.asarray(request.decode(json.loads(payload)), dtype=np.float64).reshape(-1)
    close = predictions.shape == expected.shape and np.allclose(
        predictions, expected, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE
    )
    if not close:
        raise server.failure(f"its predictions differ from the original model's: {predictions[:3]} != {expected[:3]}")
    return elapsed_ms


@dataclass(frozen=True)
class Workload:
    records: dict[int, np.ndarray]  # by rows: 1 and 100 hold-out rows, and BIG_ROWS of them repeated
    feature_names: list[str]
    wrk_script: Path
    work: Path


def measure_server(
    name: str, model: Model, model_dir: Path, expected: dict[int, np.ndarray], workload: Workload, settings: Settings
) -> ServerResults:
    request, work = REQUEST_FORMATS[name], workload.work
    bodies = {rows: request.encode(records, workload.feature_names) for rows, records in workload.records.items()}
    body_files = {}
    for rows in ROW_COUNTS:
        body_files[rows] = work / f"{name}-{rows}.body"
        body_files[rows].write_bytes(bodies[rows])
    with start_server(name, model, model_dir, work) as server:
        wait_until_healthy(server)
        wait_until_settled(server)
        for rows, body in bodies.items():
            check_answer(server, request, body, expected[rows])

        def wrk(rows: int, concurrency: int, duration: int) -> Load:
            return run_wrk(
                server,
                workload.wrk_script,
                body_files[rows],
                concurrency,
                duration,
                path=request.path,
                content_type=request.content_type,
                count_status_errors=True,
            )

        wrk(1, TARGET_CONCURRENCY, settings.warmup)
        load = {}
        for rows in ROW_COUNTS:
            for concurrency in CONCURRENCIES:
                load[rows, concurrency] = wrk(rows, concurrency, settings.duration)
        big = [check_answer(server, request, bodies[BIG_ROWS], expected[BIG_ROWS]) for _ in range(BIG_REQUESTS + 1)]
        return ServerResults(load, big[1:], shown_command(server, work))


def optimize(model_dir: Path) -> dict:
    """`modelcrate optimize MODEL_DIR`, as a user runs it; the benchmark needs the compiled model."""
    run_checked([str(BIN_DIR / "modelcrate"), "optimize", str(model_dir)])
    metadata = json.loads((model_dir / "modelcrate.json").read_text())
    compiled = metadata.get("compiled")
    if not compiled:
        raise BenchmarkError(f"modelcrate optimize {model_dir} left no compiled model in modelcrate.json")
    return compiled


def measure_model(model: Model, workload: Workload, settings: Settings) -> dict[str, ServerResults]:
    model_dir = workload.work / model.framework
    create_sample_model(model.framework, model.model_format, "regression", model_dir)
    original = load_predictor(model_dir)  # before optimize: the model every peer loads
    expected = {rows: original.predict(records).values for rows, records in workload.records.items()}
    if "modelcrate" in settings.servers:
        optimize(model_dir)
    results = {}
    for name in settings.servers:
        progress(f"  {name}")
        results[name] = measure_server(name, model, model_dir, expected, workload, settings)
    return results


# ---- report -----------------------------------------------------------------------------------------


def best_peer(results: dict[str, ServerResults], rows: int, concurrency: int) -> str | None:
    peers = [name for name in PEERS if name in results]
    return max(peers, key=lambda name: results[name].load[rows, concurrency].requests_per_second, default=None)


def ratio_to_best_peer(results: dict[str, ServerResults], rows: int, concurrency: int) -> float | None:
    peer = best_peer(results, rows, concurrency)
    if peer is None or "modelcrate" not in results:
        return None
    ours = results["modelcrate"].load[rows, concurrency].requests_per_second
    return ours / results[peer].load[rows, concurrency].requests_per_second


def errors_note(load: Load) -> str:
    """Marks a run with failed requests: its req/s counts answers that were not predictions."""
    notes = [] if load.requests_per_second else ["**no request completed within the run**"]
    if load.status_errors:
        notes.append(f"**{load.status_errors} non-2xx**")
    if load.socket_errors:
        notes.append(f"**{load.socket_errors} socket errors**")
    return ", ".join(notes) or "0"


def load_table(results: dict[str, ServerResults]) -> list[str]:
    rows_out = []
    for rows in ROW_COUNTS:
        for concurrency in CONCURRENCIES:
            ratio = ratio_to_best_peer(results, rows, concurrency)
            best = best_peer(results, rows, concurrency)
            for name, server in results.items():
                load = server.load[rows, concurrency]
                shown_ratio = f"**{ratio:.1f}x** (vs {best})" if name == "modelcrate" and ratio else ""
                rows_out.append(
                    f"| {rows} | {concurrency} | {name} | {load.requests_per_second:,.0f} | {load.p50_ms:.2f} "
                    f"| {load.p99_ms:.2f} | {errors_note(load)} | {load.other_cpu:.2f} | {shown_ratio} |"
                )
    header = (
        "| rows | concurrency | server | req/s | p50 ms | p99 ms | failed requests | other CPU, cores "
        "| modelcrate req/s / best peer's |"
    )
    return table(header, rows_out)


def big_request_table(results: dict[str, ServerResults]) -> list[str]:
    rows = [
        f"| {name} | {statistics.median(server.big_request_ms):.1f} | {min(server.big_request_ms):.1f} "
        f"| {max(server.big_request_ms):.1f} |"
        for name, server in results.items()
    ]
    return table(f"| server | median ms ({BIG_REQUESTS} requests) | min ms | max ms |", rows)


def targets(all_results: dict[str, dict[str, ServerResults]]) -> list[str]:
    rows = []
    setting = f"1-row CSV, concurrency {TARGET_CONCURRENCY}, {WORKERS} workers"
    for model in MODELS:
        results = all_results.get(model.framework, {})
        ratio = ratio_to_best_peer(results, TARGET_ROWS, TARGET_CONCURRENCY)
        if ratio is None:
            continue
        limit = MIN_RATIO[model.framework]
        verdict = "PASS" if ratio >= limit else "FAIL"
        best = best_peer(results, TARGET_ROWS, TARGET_CONCURRENCY)
        rows.append(
            f"| {model.title}, {setting}: modelcrate req/s / best peer's ({best}) | {ratio:.1f}x "
            f"| >= {limit:g}x | {verdict} |"
        )
        if model.framework in P99_BELOW_EVERY_PEER:
            ours = results["modelcrate"].load[TARGET_ROWS, TARGET_CONCURRENCY].p99_ms
            lowest_peer = min(results[name].load[TARGET_ROWS, TARGET_CONCURRENCY].p99_ms for name in PEERS)
            verdict = "PASS" if ours < lowest_peer else "FAIL"
            rows.append(
                f"| {model.title}, {setting}: modelcrate p99 below every peer's | {ours:.2f} ms "
                f"| < {lowest_peer:.2f} ms | {verdict} |"
            )
    failed = [
        f"{model.framework} {name}"
        for model in MODELS
        for name, server in all_results.get(model.framework, {}).items()
        if name == "modelcrate" and any(load.status_errors or load.socket_errors for load in server.load.values())
    ]
    rows.append(
        f"| modelcrate: every request answered | {'; '.join(failed) or 'yes'} | yes | {'FAIL' if failed else 'PASS'} |"
    )
    return table("| target | measured | limit | result |", rows)


METHOD = """\
## Method

- Models: the Abalone sample regressors of `modelcrate.scaffold.sample_models` (10 features), written once
  and loaded by every server: a scikit-learn RandomForestRegressor (100 trees, joblib) and an XGBoost
  regressor (100 trees, the scikit-learn API's JSON).
- modelcrate: `modelcrate optimize MODEL_DIR` compiles the model to ONNX (served with ONNX Runtime), then
  `serve` with `SAGEMAKER_MODEL_SERVER_WORKERS={workers}` and `MODELCRATE_BATCHING=auto` (the default:
  adaptive batching with at most 256 rows and 2 ms of wait).
- MLflow: `mlflow.sklearn.save_model` (MLflow's default skops format, trusting `sklearn.tree._tree.Tree`) /
  `mlflow.xgboost.save_model` of the model loaded in MLflow's virtualenv, no signature; served by
  `mlflow models serve --env-manager local --workers {workers}` (uvicorn, its access log off with
  `UVICORN_ACCESS_LOG=false`).
- MLServer: `mlserver start` on a repository with `settings.json` (`parallel_workers: {workers}`,
  `debug: false`, i.e. no access log; every other setting at its default, so no adaptive batching) and a
  `model-settings.json` for the `mlserver_sklearn.SKLearnModel` or `mlserver_xgboost.XGBoostModel`
  runtime pointing at the same model file. uvloop is pinned to 0.21.0: MLServer 1.7.1's parallel workers
  do not start with later uvloop releases (SeldonIO/MLServer#2286).
- BentoML: `bentoml.sklearn.save_model` / `bentoml.xgboost.save_model` into a model store, served by
  `bentoml serve` (production mode) with `benchmarks/peer_bentoml_service.py`: `@bentoml.service(workers={workers})`
  with the access log off, and one `@bentoml.api` method (not batchable, the default) that calls the
  model's `predict` on a `numpy.ndarray`.
- Thread pools: the peers get `max(1, cores // workers)` = {threads} thread(s) per worker in {thread_variables}
  and `OMP_WAIT_POLICY=PASSIVE` (what modelcrate's workers set themselves); telemetry is off
  (`BENTOML_DO_NOT_TRACK`, `MLFLOW_DISABLE_TELEMETRY`, `DO_NOT_TRACK`).
- Requests: the same rows for every server, each in the server's own format (below): 1 row or 100 rows of
  the Abalone hold-out set, and {big_rows:,} rows (the hold-out set repeated). Before the load runs every
  server's answers to all three are checked: HTTP 200 and the original model's predictions within
  {atol:g} absolute + {rtol:g} relative (the tolerance `modelcrate optimize` checks the compiled model with).
- Load: `wrk --latency`, `-t1 -c1`, `-t{threads16} -c16` and `-t{threads64} -c64`, {duration} s per run, after a
  {warmup} s warm-up at 1 row, concurrency 16 that starts once no process of the server has used CPU for
  0.5 s (every worker has loaded its model). Percentiles and req/s come from wrk's Lua `done()` hook;
  "failed requests" are wrk's answers with a status of 400 or more and its socket errors (a run with any
  is shown in bold: its req/s counts them). wrk runs on the same cores as the servers.
- {big_rows:,}-row request: one request at a time on a new connection, timed from sending to reading the
  whole answer, {big_requests} requests after one unmeasured one.
- Other CPU: cores' worth of CPU that went to anything but the benchmark, its server and wrk during a
  run (other processes, or a neighbour's steal); on {cores} cores, more than about 0.2 means the run measured
  the machine's other work as well.
"""


NOTES = """\
## Notes

- MLflow with `--workers` runs uvicorn's multi-process mode, whose workers accept connections on a socket
  the supervisor created with protocol 0, so asyncio leaves Nagle's algorithm on for them (it sets
  `TCP_NODELAY` only on sockets of protocol `IPPROTO_TCP`). uvicorn writes an answer's headers and body
  separately, so on a kept-alive connection the body waits for the client's delayed ACK: that is most of
  MLflow's latency at concurrency 1 here (one uvicorn worker, without `--workers`, answers several times
  faster; seen with strace, by hand). It is what `mlflow models serve --workers 2` does, so it is measured as is.
- MLflow hands the model a pandas DataFrame; XGBoost's DataFrame input path costs milliseconds per call
  with pandas 3, against well under one for a NumPy array.
- The peers run with their defaults: MLServer's adaptive batching (`max_batch_size`, `max_batch_time`) and
  BentoML's batchable APIs are opt-in. Turned on by hand (MLServer, 64 requests, 2 ms), MLServer's 1-row
  throughput at concurrency 16 grew between two- and threefold, still far below modelcrate's.
- Large requests: the compiled RandomForest (ONNX Runtime, one thread per worker) costs time in proportion
  to the rows it predicts, where scikit-learn's predict is dominated by a fixed cost per call, so the
  RandomForest's lead shrinks as requests grow. From 1,000 rows on, each modelcrate worker times both models
  on its first such batch and answers the rest with the faster one (for this forest, scikit-learn's); the
  one unmeasured 10,000-row request before the measured ones is usually that timed batch. At 10,000 rows
  modelcrate spends about as long reading the CSV (NumPy's `loadtxt`) and writing the JSON answer as
  predicting, so the servers are close there.
"""


def render_report(
    all_results: dict[str, dict[str, ServerResults]],
    settings: Settings,
    started_at: datetime.datetime,
    machine: list[str],
    versions: dict[str, str],
) -> str:
    lines = [
        "# Peer benchmark: modelcrate against MLflow, MLServer and BentoML",
        "",
        f"Run of `.venv/bin/python benchmarks/peers.py` (`make bench-peers`) started {started_at:%Y-%m-%d %H:%M} "
        "UTC. Every server ran in this same run on this machine, one after the other, with "
        f"{WORKERS} workers; every ratio compares numbers of this run. Latencies are in milliseconds.",
        "",
        "![requests per second by server](peers.png)",
        "",
        "## Machine",
        "",
        *machine,
        *table("| peer virtualenv | packages |", [f"| {peer} | {versions[peer]} |" for peer in versions]),
        "## Targets",
        "",
        *targets(all_results),
        METHOD.format(
            workers=WORKERS,
            threads=threads_per_worker(WORKERS),
            thread_variables=", ".join(f"`{name}`" for name in THREAD_VARIABLES),
            big_rows=BIG_ROWS,
            atol=ABSOLUTE_TOLERANCE,
            rtol=RELATIVE_TOLERANCE,
            threads16=WRK_THREADS[16],
            threads64=WRK_THREADS[64],
            duration=settings.duration,
            warmup=settings.warmup,
            big_requests=BIG_REQUESTS,
            cores=os.cpu_count(),
        ),
        "## Request bodies",
        "",
        *table(
            "| server | POST | Content-Type | body |",
            [
                f"| {name} | `{REQUEST_FORMATS[name].path}` | `{REQUEST_FORMATS[name].content_type}` "
                f"| {REQUEST_FORMATS[name].description} |"
                for name in settings.servers
            ],
        ),
    ]
    for model in settings.models:
        results = all_results[model.framework]
        lines += [f"## {model.title}", "", "### Under load", "", *load_table(results)]
        lines += [f"### One {BIG_ROWS:,}-row request", "", *big_request_table(results)]
        lines += ["### Commands", ""]
        lines += [f"- {name}: `{server.command}`" for name, server in results.items()]
        lines.append("")
    lines += [
        "`$WORK` is the run's scratch directory; `~/.cache/modelcrate-bench/` holds the peers' virtualenvs. "
        "modelcrate's `serve` is configured by environment: `SM_MODEL_DIR=$WORK/<framework>`, "
        "`SAGEMAKER_BIND_TO_PORT`, `SAGEMAKER_MODEL_SERVER_WORKERS`, `MODELCRATE_BIND_HOST=127.0.0.1`, "
        "`SAGEMAKER_CONTAINER_LOG_LEVEL=30`, `MODELCRATE_BATCHING=auto`.",
        "",
        NOTES,
    ]
    return "\n".join(lines).rstrip() + "\n"


def readme_section(all_results: dict[str, dict[str, ServerResults]], started_at: datetime.datetime) -> str:
    rows = []
    for model in MODELS:
        results = all_results[model.framework]
        for name, server in results.items():
            load = server.load[TARGET_ROWS, TARGET_CONCURRENCY]
            ratio = ratio_to_best_peer(results, TARGET_ROWS, TARGET_CONCURRENCY)
            shown_ratio = f"{ratio:.1f}x" if name == "modelcrate" else ""
            rows.append(
                f"| {model.title} | {name} | {load.requests_per_second:,.0f} | {load.p99_ms:.1f} "
                f"| {statistics.median(server.big_request_ms):.0f} | {shown_ratio} |"
            )
    lines = [
        f"Last run ({started_at:%Y-%m-%d}, {os.cpu_count()} cores, {WORKERS} workers each; 1-row requests at "
        f"concurrency {TARGET_CONCURRENCY}, and one {BIG_ROWS:,}-row request):",
        "",
        *table(
            "| model | server | req/s | p99 ms | 10,000 rows, ms | modelcrate / best peer |",
            rows,
        ),
        "![requests per second of modelcrate, MLflow, MLServer and BentoML](benchmarks/results/peers.png)",
    ]
    return "\n".join(lines)


def update_readme(section: str) -> None:
    readme = README_PATH.read_text()
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise BenchmarkError(f"{README_PATH} has no {README_START} ... {README_END} block for the peer table")
    README_PATH.write_text(readme[: start + len(README_START)] + "\n" + section + "\n" + readme[end:])


def draw_chart(all_results: dict[str, dict[str, ServerResults]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(MODELS), len(ROW_COUNTS), figsize=(10, 7), sharey=True)
    width = 0.8 / len(SERVERS)
    positions = np.arange(len(CONCURRENCIES))
    for model, model_axes in zip(MODELS, axes, strict=True):
        for rows, axis in zip(ROW_COUNTS, model_axes, strict=True):
            for index, name in enumerate(SERVERS):
                load = all_results[model.framework][name].load
                values = [load[rows, concurrency].requests_per_second for concurrency in CONCURRENCIES]
                axis.bar(positions + (index - (len(SERVERS) - 1) / 2) * width, values, width, label=name)
            axis.set_yscale("log")
            axis.set_xticks(positions, [f"concurrency {concurrency}" for concurrency in CONCURRENCIES])
            axis.set_title(f"{model.title.split(' (')[0]}, {counted(rows, 'row')}", fontsize=10)
            axis.grid(axis="y", which="major", alpha=0.3)
        model_axes[0].set_ylabel("requests/s (log scale)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"Requests per second, {WORKERS} workers each, same machine and run (higher is better)")
    figure.tight_layout()
    figure.savefig(CHART_PATH, dpi=80)
    pyplot.close(figure)


# ---- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of each wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per server (default 2)")
    parser.add_argument("--only", help=f"comma-separated servers to measure, of {','.join(SERVERS)} (default all)")
    parser.add_argument("--models", help="comma-separated frameworks, of sklearn,xgboost (default both)")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 1:
        parser.error("--duration and --warmup must be at least 1 second")
    servers = tuple(args.only.split(",")) if args.only else SERVERS
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"--only: unknown server(s) {', '.join(sorted(unknown))}; choose from {', '.join(SERVERS)}")
    frameworks = args.models.split(",") if args.models else [model.framework for model in MODELS]
    models = tuple(model for model in MODELS if model.framework in frameworks)
    if len(models) != len(frameworks):
        parser.error(f"--models: choose from {', '.join(model.framework for model in MODELS)}")
    return Settings(args.duration, args.warmup, tuple(name for name in SERVERS if name in servers), models)


def stop_on_sigterm(_signum, _frame) -> None:
    raise SystemExit(143)  # unwinds the with-blocks, which stop the servers


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/peers.py needs wrk on PATH (apt-get install wrk)")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_at_start, revision = load_average(), source_revision()
    os.environ["MODELCRATE_BATCHING"] = "auto"  # the servers' environments are copies of this one
    held_out = abalone_dataset("regression")
    records = {rows: held_out.x_test[:rows] for rows in ROW_COUNTS}
    records[BIG_ROWS] = np.resize(held_out.x_test, (BIG_ROWS, held_out.x_test.shape[1]))
    all_results = {}
    try:
        versions = {peer: peer_versions(peer) for peer in settings.servers if peer in PEERS}
        with tempfile.TemporaryDirectory(prefix="modelcrate-peers-") as scratch:
            work = Path(scratch)
            workload = Workload(records, held_out.feature_names, work / "post_body.lua", work)
            workload.wrk_script.write_text(WRK_SCRIPT)
            for model in settings.models:
                progress(f"{model.title}: training, then measuring")
                all_results[model.framework] = measure_model(model, workload, settings)
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    report = render_report(all_results, settings, started_at, machine_table(load_at_start, revision), versions)
    print(report)
    if not settings.full_run:
        progress("a run with --only or --models: results/peers.md, results/peers.png and README.md left as they were")
        return 0
    REPORT_PATH.write_text(report)
    draw_chart(all_results)
    update_readme(readme_section(all_results, started_at))
    progress(f"wrote {REPORT_PATH.name}, {CHART_PATH.name} in {RESULTS_DIR} and the peer table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
