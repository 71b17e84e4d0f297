"""Serving benchmark: modelcrate's ``serve`` against the classic Flask + gunicorn container.

    .venv/bin/python benchmarks/serving.py [--quick] [--duration SECONDS]

Trains the Abalone regressors (scikit-learn RandomForest as joblib, XGBoost as JSON), then measures, in
one run: the in-process predict floor, HTTP latency and throughput of both servers under wrk, the time
from process start to a healthy /ping, and the peak RSS of a worker. Every ratio in the report compares
numbers from this same run. The report goes to benchmarks/results/serving.md and to stdout; progress
goes to stderr. Traffic goes to 127.0.0.1 only, and every process started here is stopped before exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelcrate.predictors import find_model_file, load_predictor
from modelcrate.scaffold.sample_models import abalone_dataset, create_sample_model

BENCHMARKS_DIR = Path(__file__).resolve().parent
SOURCE_DIR = BENCHMARKS_DIR.parent / "src"
REPORT_PATH = BENCHMARKS_DIR / "results" / "serving.md"
BIN_DIR = Path(sys.executable).parent  # the virtualenv's bin: serve and gunicorn live beside python
HOST = "127.0.0.1"
CORES = os.cpu_count() or 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of CPU times in /proc
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# modelcrate's workers set this themselves; the baseline and the in-process floor get it too.
OMP_WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}

SERVERS = ("modelcrate", "baseline")
WORKER_COUNTS = (1, 2)
ROW_COUNTS = (1, 100)
CONCURRENCIES = (1, 16)
WRK_THREADS = {1: 1, 16: 2, 64: 2}  # 64: benchmarks/batching.py
STARTS = 3  # start-up time is the median of this many starts
FLOOR_WARMUP_CALLS = 20  # the first calls pay for lazy initialisation and cold caches
FLOOR_MIN_CALLS = 200  # enough for a p99
FLOOR_MAX_CALLS = 20_000

PING_INTERVAL_SECONDS = 0.01
PING_TIMEOUT_SECONDS = 0.5
READY_TIMEOUT_SECONDS = 120.0
SETTLE_SECONDS = 0.5  # workers that used no CPU for this long have finished loading
STOP_TIMEOUT_SECONDS = 35.0  # both servers drain within 30 s of SIGTERM

# Acceptance targets.
MAX_OVERHEAD_MS = 0.3
MIN_THROUGHPUT_RATIO = 3.0
MAX_WORKER_RSS_MB = 200.0
MAX_HEALTHY_SECONDS = 1.5

# wrk POSTs the file named by BENCH_BODY_FILE as BENCH_CONTENT_TYPE; done() prints one JSON line for the
# parser below (errors.status counts the answers with a status of 400 or more).
WRK_SCRIPT = """\
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"p50_us": %d, "p99_us": %d, "requests_per_second": %.2f, "socket_errors": %d, "status_errors": %d}\\n',
    latency:percentile(50), latency:percentile(99), summary.requests / (summary.duration / 1e6),
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
"""


class BenchmarkError(RuntimeError):
    """The benchmark cannot produce honest numbers (a server failed, answered wrongly, or wrk failed)."""


@dataclass(frozen=True)
class Model:
    framework: str
    model_format: str
    title: str


MODELS = (
    Model("sklearn", "joblib", "scikit-learn RandomForestRegressor (joblib)"),
    Model("xgboost", "json", "XGBoost regressor (JSON)"),
)


@dataclass(frozen=True)
class Settings:
    duration: int  # seconds of each measured wrk run
    warmup: int  # seconds of wrk load after a server starts, not measured
    floor_seconds: float  # time budget of each in-process floor


@dataclass(frozen=True)
class Workload:
    """What every model is measured with."""

    settings: Settings
    records: dict[int, np.ndarray]  # by rows: Abalone hold-out rows
    body_files: dict[int, Path]  # by rows: the same records as CSV
    wrk_script: Path
    log_dir: Path  # the servers' output, shown when one fails


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p99_ms: float
    samples: int
    other_cpu: float  # see OtherCpu


@dataclass(frozen=True)
class Load:
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    socket_errors: int
    status_errors: int  # answers with a status of 400 or more
    other_cpu: float  # see OtherCpu


@dataclass
class ModelResults:
    floor: dict[int, Timing]  # by rows
    load: dict[tuple[str, int, int, int], Load]  # by (server, workers, rows, concurrency)
    worker_rss_mb: dict[tuple[str, int], float]  # by (server, workers): the largest worker's VmHWM
    healthy_seconds: dict[str, list[float]]  # by server: one per start


# ---- processes --------------------------------------------------------------------------------------


def threads_per_worker(workers: int) -> int:
    return max(1, CORES // workers)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_environment() -> dict[str, str]:
    # Thread variables are removed so that neither server inherits this process's own settings.
    return {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}


def server_command(server: str, model_dir: Path, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    env = server_environment()
    if server == "modelcrate":
        # Each serve worker sizes its thread pools (cores / workers) itself.
        env |= {
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "MODELCRATE_BIND_HOST": HOST,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "30",
        }
        return [str(BIN_DIR / "serve")], env
    # The baseline gets the same thread pools per worker, through its environment.
    env |= dict.fromkeys(THREAD_VARIABLES, str(threads_per_worker(workers))) | OMP_WAIT_POLICY
    env["BASELINE_MODEL_PATH"] = str(find_model_file(model_dir).path)
    argv = [
        str(BIN_DIR / "gunicorn"),
        "--workers",
        str(workers),
        "--bind",
        f"{HOST}:{port}",
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
        "--chdir",
        str(BENCHMARKS_DIR),
        "baseline_flask_app:app",
    ]
    return argv, env


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen
    port: int
    started: float  # perf_counter just before the process was created
    log_path: Path
    health_path: str  # answers 200 once the server can predict

    def failure(self, what: str) -> BenchmarkError:
        log = self.log_path.read_text(errors="replace")[-3000:]
        return BenchmarkError(f"{self.name} server on port {self.port}: {what}\n--- its output ---\n{log}")

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def pids(self) -> list[int]:
        """The server process and all its descendants (workers, and whatever they started)."""
        pids, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            pids.append(pid)
            with contextlib.suppress(FileNotFoundError):  # a process that has just exited
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(child) for child in (task / "children").read_text().split()]
        return pids


@contextlib.contextmanager
def running_server(server: str, model_dir: Path, workers: int, log_dir: Path) -> Iterator[RunningServer]:
    port = free_port()
    argv, env = server_command(server, model_dir, port, workers)
    with running_process(server, argv, env, port, log_dir) as running:
        yield running


@contextlib.contextmanager
def running_process(
    name: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    log_dir: Path,
    health_path: str = "/ping",
    cwd: Path | None = None,
) -> Iterator[RunningServer]:
    """Starts a server listening on ``port``; stops it, and everything it started, on the way out."""
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        # A session of its own: if the server leaves workers behind, its process group still names them.
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log, start_new_session=True)
    try:
        yield RunningServer(name, process, port, started, log_path, health_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the leader is not reaped yet: the group id is still ours
            process.wait()
    stop_process_group(process.pid)


def stop_process_group(group: int) -> None:
    """Processes the server started and left running when it exited: they are still in its process group."""
    deadline = time.perf_counter() + STOP_TIMEOUT_SECONDS
    signal_to_send = signal.SIGTERM
    while True:
        try:
            os.killpg(group, signal_to_send)
        except ProcessLookupError:
            return  # the group is empty
        # Signal 0 only asks whether any member is left.
        signal_to_send = signal.SIGKILL if time.perf_counter() > deadline else 0
        time.sleep(PING_INTERVAL_SECONDS)


def ping_ok(port: int, path: str = "/ping") -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=PING_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_until_healthy(server: RunningServer) -> float:
    """Seconds from process start to the first 200 from its health path."""
    deadline = time.perf_counter() + READY_TIMEOUT_SECONDS
    while not ping_ok(server.port, server.health_path):
        if server.process.poll() is not None:
            code = server.process.returncode
            raise server.failure(f"exited with code {code} before {server.health_path} answered 200")
        if time.perf_counter() > deadline:
            raise server.failure(f"{server.health_path} did not answer 200 within {READY_TIMEOUT_SECONDS:g} s")
        time.sleep(PING_INTERVAL_SECONDS)
    return time.perf_counter() - server.started


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))


def wait_until_workers_loaded(server: RunningServer, workers: int) -> None:
    """/ping answers once one worker is up; measure only once every worker has loaded and gone idle."""
    deadline = time.perf_counter() + READY_TIMEOUT_SECONDS
    previous = None
    while time.perf_counter() < deadline:
        pids = server.worker_pids()
        ticks = sum(cpu_ticks(pid) for pid in pids) if len(pids) == workers else None
        if ticks is not None and ticks == previous:
            return
        previous = ticks
        time.sleep(SETTLE_SECONDS)
    raise server.failure(f"its {workers} workers did not finish loading within {READY_TIMEOUT_SECONDS:g} s")


def machine_cpu_seconds() -> float:
    """CPU time of every core so far, with the time the hypervisor gave to other guests (steal).

    Interrupt time is left out: the run's own loopback traffic is handled there."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields[1:9])
    return (user + nice + system + steal) / CLOCK_TICKS


def own_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time of this process, of its finished children (every wrk run) and of ``pids`` (a server)."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages) + sum(cpu_ticks(pid) for pid in pids) / CLOCK_TICKS


class OtherCpu:
    """How many cores' worth of CPU went to anything but this benchmark, its server and wrk.

    The machine is shared: a run during which others used a core measured them as much as the server."""

    def __init__(self, pids: Sequence[int] = ()):
        self.pids = pids
        self.wall, self.machine, self.own = time.perf_counter(), machine_cpu_seconds(), own_cpu_seconds(pids)

    def cores(self) -> float:
        machine = machine_cpu_seconds() - self.machine
        own = own_cpu_seconds(self.pids) - self.own
        return max(0.0, (machine - own) / (time.perf_counter() - self.wall))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchmarkError(f"/proc/{pid}/status has no VmHWM line")


# ---- measurements -----------------------------------------------------------------------------------


def time_predict(predictor, records: np.ndarray, seconds: float) -> Timing:
    for _ in range(FLOOR_WARMUP_CALLS):
        predictor.predict(records)
    elapsed = []
    other_cpu = OtherCpu()
    deadline = time.perf_counter() + seconds
    for call in range(FLOOR_MAX_CALLS):
        if call >= FLOOR_MIN_CALLS and time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        predictor.predict(records)
        elapsed.append(time.perf_counter() - start)
    p50, p99 = np.percentile(elapsed, [50, 99]) * 1e3
    return Timing(float(p50), float(p99), len(elapsed), other_cpu.cores())


def check_answer(server: RunningServer, body: bytes, expected: list[float]) -> None:
    """The server must answer this body with 200 and exactly the in-process predictions."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=60)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise server.failure(f"answered HTTP {response.status} to a CSV body: {payload[:500]!r}")
    predictions = json.loads(payload)["predictions"]
    if predictions != expected:
        shown = f"{predictions[:3]}... != {expected[:3]}..."
        raise server.failure(f"its predictions differ from the in-process ones: {shown}")


def run_wrk(
    server: RunningServer,
    script: Path,
    body_file: Path,
    concurrency: int,
    duration: int,
    *,
    path: str = "/invocations",
    content_type: str = "text/csv",
    count_status_errors: bool = False,
) -> Load:
    """Raises on any answer with a status of 400 or more, unless ``count_status_errors``."""
    threads = WRK_THREADS[concurrency]
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{server.port}{path}",
    ]
    other_cpu = OtherCpu(server.pids())
    result = subprocess.run(
        argv,
        env=os.environ | {"BENCH_BODY_FILE": str(body_file), "BENCH_CONTENT_TYPE": content_type},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        output = result.stdout + result.stderr
        raise BenchmarkError(f"{' '.join(argv)} failed with exit code {result.returncode}:\n{output}")
    stats = json.loads(lines[-1])
    if stats["status_errors"] and not count_status_errors:
        raise BenchmarkError(f"{stats['status_errors']} non-2xx answers under load: {' '.join(argv)}")
    return Load(
        p50_ms=stats["p50_us"] / 1e3,
        p99_ms=stats["p99_us"] / 1e3,
        requests_per_second=stats["requests_per_second"],
        socket_errors=stats["socket_errors"],
        status_errors=stats["status_errors"],
        other_cpu=other_cpu.cores(),
    )


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_model(model_dir: Path, workload: Workload) -> ModelResults:
    settings, records, body_files = workload.settings, workload.records, workload.body_files
    predictor = load_predictor(model_dir)
    floor = {rows: time_predict(predictor, records[rows], settings.floor_seconds) for rows in ROW_COUNTS}
    expected = {rows: predictor.predict(records[rows]).values.tolist() for rows in ROW_COUNTS}
    results = ModelResults(floor, {}, {}, {})

    for server_name in SERVERS:
        results.healthy_seconds[server_name] = []
        for _ in range(STARTS):
            with running_server(server_name, model_dir, 1, workload.log_dir) as server:
                results.healthy_seconds[server_name].append(wait_until_healthy(server))

    # Both servers with the same worker count run back to back, so that drifting machine load hits both.
    for workers in WORKER_COUNTS:
        for server_name in SERVERS:
            progress(f"  {server_name}, {counted(workers, 'worker')}")
            with running_server(server_name, model_dir, workers, workload.log_dir) as server:
                wait_until_healthy(server)
                wait_until_workers_loaded(server, workers)
                run_wrk(server, workload.wrk_script, body_files[1], max(CONCURRENCIES), settings.warmup)
                for rows in ROW_COUNTS:
                    body = body_files[rows].read_bytes()
                    for concurrency in CONCURRENCIES:
                        check_answer(server, body, expected[rows])
                        results.load[server_name, workers, rows, concurrency] = run_wrk(
                            server, workload.wrk_script, body_files[rows], concurrency, settings.duration
                        )
                worker_rss = [peak_rss_mb(pid) for pid in server.worker_pids()]
                results.worker_rss_mb[server_name, workers] = max(worker_rss)
    return results


# ---- report -----------------------------------------------------------------------------------------

PACKAGES = (
    "modelcrate",
    "numpy",
    "scikit-learn",
    "xgboost",
    "pandas",
    "flask",
    "gunicorn",
    "httptools",
    "uvloop",
)
LOAD_TABLE_HEADER = (
    "| workers | rows | concurrency | modelcrate p50 ms | modelcrate p99 ms | modelcrate req/s "
    "| baseline p50 ms | baseline p99 ms | baseline req/s | modelcrate req/s / baseline req/s "
    "| other CPU, cores (modelcrate / baseline) |"
)
METHOD = """\
## Method

- Models: the Abalone sample regressors of `modelcrate.scaffold.sample_models` (10 features): a
  scikit-learn RandomForestRegressor (100 trees, joblib) and an XGBoost regressor (100 trees, JSON).
- modelcrate: `.venv/bin/serve`, configured by environment (`SM_MODEL_DIR`, `SAGEMAKER_BIND_TO_PORT`,
  `SAGEMAKER_MODEL_SERVER_WORKERS`, `MODELCRATE_BIND_HOST=127.0.0.1`, `SAGEMAKER_CONTAINER_LOG_LEVEL=30`).
- Baseline: `benchmarks/baseline_flask_app.py`, the classic bring-your-own-container server: Flask under
  `gunicorn --worker-class sync`, the model loaded once at import (scikit-learn: `joblib.load`; XGBoost:
  the scikit-learn API, `XGBRegressor().load_model(path)`, whose `predict` takes XGBoost's in-place
  prediction path as modelcrate does), the body read with `pandas.read_csv(..., header=None)`, the
  predictions returned with `flask.jsonify`. Sync workers close the connection after each response.
- Thread pools: both servers give each worker `max(1, cores // workers)` threads in
  {thread_variables}, and `OMP_WAIT_POLICY=PASSIVE`: modelcrate sets its own, the baseline gets them in
  its environment. The in-process floor runs with {floor_threads}, as one worker does.
- Requests: `POST /invocations`, `Content-Type: text/csv`, no header, 1 row ({bytes_1} bytes) or 100 rows
  ({bytes_100} bytes) of the Abalone hold-out set. Before each run the server's answer to the body is
  checked: HTTP 200 and exactly the in-process predictions.
- Load: `wrk --latency`, `-t1 -c1` for concurrency 1 and `-t2 -c16` for concurrency 16, {duration} s per
  run, after a {warmup} s warm-up at concurrency 16 that starts once every worker has loaded its model
  (all workers idle). Percentiles and req/s come from the Lua `done()` hook. wrk runs on the same
  cores as the server.
- Other CPU: cores' worth of CPU that went to anything but the benchmark, its server and wrk during a
  run (other processes, or a neighbour's steal), from `/proc/stat` less their own CPU time. On
  {cores} cores, a run with more than about 0.2 measured the machine's other work as well.
- Floor: `load_predictor(model_dir).predict(X)` (the predictor the server uses) on a float64 array,
  timed with `time.perf_counter` after {floor_warmup} warm-up calls, for {floor_seconds:g} s and at least
  {floor_min} calls (at most {floor_max}).
- Start-up: seconds from creating the process to the first 200 from `/ping` (polled every
  {ping_ms:g} ms), 1 worker, {starts} starts.
- Memory: VmHWM in `/proc/<worker>/status` after the load runs; the workers are the children of the
  server process. MB = 10^6 bytes.
"""


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def load_average() -> float:
    return os.getloadavg()[0]


def git(*args: str) -> subprocess.CompletedProcess:
    argv = ["git", "-C", str(SOURCE_DIR.parent), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def source_revision() -> str:
    """The commit measured, and whether src/ differed from it."""
    commit = git("rev-parse", "--short", "HEAD")
    if commit.returncode != 0:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--", "src").stdout.strip()
    return commit.stdout.strip() + (" with uncommitted changes in src/" if changed else "")


def source_digest() -> str:
    """Of every file in src/: servers started later in the run import whatever src/ holds by then."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.rglob("*.py")):
        digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def machine_table(load_at_start: float, revision: str) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    packages = ", ".join(f"{name} {version(name)}" for name in PACKAGES)
    wrk_banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    return table(
        "| | |",
        [
            f"| CPU | {cpu}; nproc {len(os.sched_getaffinity(0))}, os.cpu_count() {CORES} |",
            f"| OS | {platform.system()} {platform.release()} |",
            f"| Python | {platform.python_version()} |",
            f"| packages | {packages} |",
            f"| modelcrate source | {revision} |",
            f"| load generator | wrk {wrk_banner.split()[1]} |",
            f"| 1-minute load average, start / end | {load_at_start:.2f} / {load_average():.2f} |",
        ],
    )


def table(header: str, rows: list[str]) -> list[str]:
    separator = "|" + "---|" * (header.count("|") - 1)
    return [header, separator, *rows, ""]


def at_most(target: str, measured: float, limit: float, unit: str) -> str:
    verdict = "PASS" if measured <= limit else "FAIL"
    return f"| {target} | {measured:.3f} {unit} | <= {limit:g} {unit} | {verdict} |"


def at_least(target: str, measured: float, limit: float, unit: str) -> str:
    verdict = "PASS" if measured >= limit else "FAIL"
    return f"| {target} | {measured:.2f}{unit} | >= {limit:g}{unit} | {verdict} |"


def throughput_ratio(results: ModelResults, workers: int, rows: int, concurrency: int) -> float:
    ours = results.load["modelcrate", workers, rows, concurrency].requests_per_second
    baseline = results.load["baseline", workers, rows, concurrency].requests_per_second
    return ours / baseline


def overhead_ms(results: ModelResults, workers: int, rows: int) -> float:
    """modelcrate's p50 at concurrency 1 minus the in-process predict p50: what HTTP and CSV/JSON cost."""
    return results.load["modelcrate", workers, rows, 1].p50_ms - results.floor[rows].p50_ms


def targets_table(results: dict[str, ModelResults]) -> list[str]:
    xgboost, sklearn = results["xgboost"], results["sklearn"]
    rows = []
    for workers in WORKER_COUNTS:
        setting = f"XGBoost, 1 row, concurrency 1, {counted(workers, 'worker')}"
        target = f"{setting}: modelcrate p50 minus floor p50"
        rows.append(at_most(target, overhead_ms(xgboost, workers, 1), MAX_OVERHEAD_MS, "ms"))
    for workers in WORKER_COUNTS:
        setting = f"XGBoost, 1 row CSV, concurrency 1, {counted(workers, 'worker')}"
        target = f"{setting}: modelcrate req/s / baseline req/s"
        rows.append(at_least(target, throughput_ratio(xgboost, workers, 1, 1), MIN_THROUGHPUT_RATIO, "x"))
    rss = max(mb for (server, _), mb in sklearn.worker_rss_mb.items() if server == "modelcrate")
    target = "scikit-learn: peak RSS of one modelcrate worker (the largest, 1 or 2 workers)"
    rows.append(at_most(target, rss, MAX_WORKER_RSS_MB, "MB"))
    for model in MODELS:
        healthy = statistics.median(results[model.framework].healthy_seconds["modelcrate"])
        target = f"{model.framework}: modelcrate /ping healthy after start, 1 worker, median of {STARTS}"
        rows.append(at_most(target, healthy, MAX_HEALTHY_SECONDS, "s"))
    return table("| target | measured | limit | result |", rows)


def model_section(model: Model, results: ModelResults) -> list[str]:
    lines = [f"## {model.title}", "", "### In-process predict floor", ""]
    lines += table(
        "| rows | p50 ms | p99 ms | calls timed | other CPU, cores |",
        [
            f"| {rows} | {t.p50_ms:.3f} | {t.p99_ms:.3f} | {t.samples} | {t.other_cpu:.2f} |"
            for rows, t in results.floor.items()
        ],
    )
    lines += ["### HTTP: CSV in, JSON out", ""]
    load_rows = []
    for workers in WORKER_COUNTS:
        for rows in ROW_COUNTS:
            for concurrency in CONCURRENCIES:
                ours = results.load["modelcrate", workers, rows, concurrency]
                base = results.load["baseline", workers, rows, concurrency]
                load_rows.append(
                    f"| {workers} | {rows} | {concurrency} "
                    f"| {ours.p50_ms:.3f} | {ours.p99_ms:.3f} | {ours.requests_per_second:,.0f} "
                    f"| {base.p50_ms:.3f} | {base.p99_ms:.3f} | {base.requests_per_second:,.0f} "
                    f"| **{throughput_ratio(results, workers, rows, concurrency):.2f}x** "
                    f"| {ours.other_cpu:.2f} / {base.other_cpu:.2f} |"
                )
    lines += table(LOAD_TABLE_HEADER, load_rows)
    socket_errors = [
        f"{server}, {counted(workers, 'worker')}, {counted(rows, 'row')}, concurrency {concurrency}: "
        f"{load.socket_errors}"
        for (server, workers, rows, concurrency), load in results.load.items()
        if load.socket_errors
    ]
    if socket_errors:
        lines += [f"Socket errors (connect, read, write, timeout): {'; '.join(socket_errors)}.", ""]
    lines += ["### Derived", ""]
    for workers in WORKER_COUNTS:
        for rows in ROW_COUNTS:
            lines.append(
                f"- modelcrate p50 minus in-process floor p50, {counted(rows, 'row')}, concurrency 1, "
                f"{counted(workers, 'worker')}: {overhead_ms(results, workers, rows):.3f} ms"
            )
    for server in SERVERS:
        starts = results.healthy_seconds[server]
        lines.append(
            f"- /ping healthy after start, {server}, 1 worker: median {statistics.median(starts):.3f} s "
            f"(starts: {', '.join(f'{s:.3f}' for s in starts)})"
        )
    for (server, workers), mb in results.worker_rss_mb.items():
        setting = f"{server}, {counted(workers, 'worker')}"
        lines.append(f"- peak RSS of one worker after the load runs, {setting}: {mb:.1f} MB")
    return [*lines, ""]


def render_report(
    results: dict[str, ModelResults],
    settings: Settings,
    started_at: datetime.datetime,
    body_sizes: dict[int, int],
    machine: list[str],
) -> str:
    lines = [
        "# Serving benchmark: modelcrate `serve` vs Flask + gunicorn",
        "",
        f"Run of `.venv/bin/python benchmarks/serving.py` started {started_at:%Y-%m-%d %H:%M} UTC. Every "
        "ratio compares numbers measured in this same run on this machine. Latencies are in milliseconds.",
        "",
        "## Machine",
        "",
        *machine,
        "## Targets",
        "",
        *targets_table(results),
        METHOD.format(
            thread_variables=", ".join(f"`{name}`" for name in THREAD_VARIABLES),
            floor_threads=counted(threads_per_worker(1), "thread"),
            bytes_1=body_sizes[1],
            bytes_100=body_sizes[100],
            duration=settings.duration,
            warmup=settings.warmup,
            cores=CORES,
            floor_seconds=settings.floor_seconds,
            floor_warmup=FLOOR_WARMUP_CALLS,
            floor_min=FLOOR_MIN_CALLS,
            floor_max=FLOOR_MAX_CALLS,
            ping_ms=PING_INTERVAL_SECONDS * 1e3,
            starts=STARTS,
        ),
    ]
    for model in MODELS:
        lines += model_section(model, results[model.framework])
    return "\n".join(lines).rstrip() + "\n"


# ---- main -------------------------------------------------------------------------------------------


def csv_body(records: np.ndarray) -> bytes:
    # repr() writes the shortest text that reads back as the same float64: answers can be compared exactly.
    return "".join(",".join(repr(float(value)) for value in row) + "\n" for row in records).encode()


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s wrk runs and shorter floors: a smoke run")
    parser.add_argument("--duration", type=int, help="seconds of each wrk run (default 5; --quick: 1)")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.quick:
        return Settings(duration=args.duration or 1, warmup=1, floor_seconds=0.5)
    return Settings(duration=args.duration or 5, warmup=2, floor_seconds=3.0)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/serving.py needs wrk on PATH (apt-get install wrk)")
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_at_start, revision, digest = load_average(), source_revision(), source_digest()
    # The floor runs with a one-worker server's thread pools; the frameworks are imported after this line.
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads_per_worker(1))) | OMP_WAIT_POLICY)
    held_out = abalone_dataset("regression").x_test
    records = {rows: held_out[:rows] for rows in ROW_COUNTS}
    results = {}
    with tempfile.TemporaryDirectory(prefix="modelcrate-bench-") as scratch:
        work = Path(scratch)
        workload = Workload(
            settings=settings,
            records=records,
            body_files={rows: work / f"body-{rows}.csv" for rows in ROW_COUNTS},
            wrk_script=work / "post_body.lua",
            log_dir=work,
        )
        workload.wrk_script.write_text(WRK_SCRIPT)
        body_sizes = {}
        for rows, path in workload.body_files.items():
            body_sizes[rows] = path.write_bytes(csv_body(records[rows]))  # returns the size, for the report
        try:
            for model in MODELS:
                progress(f"{model.title}: training, then measuring")
                model_dir = work / model.framework
                create_sample_model(model.framework, model.model_format, "regression", model_dir)
                results[model.framework] = measure_model(model_dir, workload)
        except BenchmarkError as exc:
            sys.exit(f"benchmark failed: {exc}")
    if source_digest() != digest:
        revision += "; src/ changed during this run, so its servers did not all run the same code"
    report = render_report(results, settings, started_at, body_sizes, machine_table(load_at_start, revision))
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)
    progress(f"report written to {REPORT_PATH.relative_to(BENCHMARKS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
