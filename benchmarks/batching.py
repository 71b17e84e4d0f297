"""Adaptive batching benchmark: modelcrate's ``serve`` with MODELCRATE_BATCHING off, on and auto.

    .venv/bin/python benchmarks/batching.py [--quick] [--duration SECONDS]

For the Abalone XGBoost and scikit-learn RandomForest regressors, 2 workers: throughput of 64 concurrent
1-row CSV clients, and 1-row latency at concurrency 1, in each mode, all in one run (the servers of one
model run back to back). The report goes to benchmarks/results/batching.md and to stdout. Traffic goes to
127.0.0.1 only, and every server started here is stopped before exit.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
import tempfile
from pathlib import Path

from modelcrate.predictors import load_predictor
from modelcrate.scaffold.sample_models import abalone_dataset, create_sample_model
from serving import (
    MODELS,
    OMP_WAIT_POLICY,
    THREAD_VARIABLES,
    WRK_SCRIPT,
    BenchmarkError,
    Load,
    check_answer,
    csv_body,
    load_average,
    machine_table,
    parse_args,
    progress,
    run_wrk,
    running_server,
    source_revision,
    table,
    threads_per_worker,
    wait_until_healthy,
    wait_until_workers_loaded,
)

REPORT_PATH = Path(__file__).resolve().parent / "results" / "batching.md"
MODES = ("off", "on", "auto")
WORKERS = 2
CONCURRENCIES = (1, 64)
MIN_THROUGHPUT_RATIO = 2.0  # acceptance: batching on vs off, 64 concurrent 1-row clients


def measure(model_dir: Path, body_file: Path, wrk_script: Path, log_dir: Path, settings) -> dict[tuple, Load]:
    expected = load_predictor(model_dir).predict(abalone_dataset("regression").x_test[:1]).values.tolist()
    body = body_file.read_bytes()
    results = {}
    for mode in MODES:
        progress(f"  MODELCRATE_BATCHING={mode}")
        os.environ["MODELCRATE_BATCHING"] = mode  # the server's environment is a copy of this one
        with running_server("modelcrate", model_dir, WORKERS, log_dir) as server:
            wait_until_healthy(server)
            wait_until_workers_loaded(server, WORKERS)
            run_wrk(server, wrk_script, body_file, max(CONCURRENCIES), settings.warmup)
            for concurrency in CONCURRENCIES:
                check_answer(server, body, expected)
                results[mode, concurrency] = run_wrk(server, wrk_script, body_file, concurrency, settings.duration)
    return results


def render(results: dict[str, dict[tuple, Load]], machine: list[str], started_at, duration: int) -> str:
    lines = [
        "# Adaptive batching benchmark: MODELCRATE_BATCHING off / on / auto",
        "",
        f"Run of `.venv/bin/python benchmarks/batching.py` started {started_at:%Y-%m-%d %H:%M} UTC. Every ratio "
        "compares numbers measured in this same run on this machine. Latencies are in milliseconds.",
        "",
        "## Machine",
        "",
        *machine,
        "",
        "## Method",
        "",
        f"- `serve` with {WORKERS} workers, default MODELCRATE_MAX_BATCH_ROWS (256) and "
        "MODELCRATE_MAX_BATCH_WAIT_MS (2); one 1-row Abalone CSV body.",
        f"- `wrk --latency`, `-t1 -c1` and `-t2 -c64`, {duration} s per run after a warm-up run; wrk runs on the "
        "same machine (its CPU competes with the server's).",
        "",
        "## Targets",
        "",
    ]
    targets = []
    for framework, loads in results.items():
        ratio = loads["on", 64].requests_per_second / loads["off", 64].requests_per_second
        verdict = "PASS" if ratio >= MIN_THROUGHPUT_RATIO else "FAIL"
        targets.append(
            f"| {framework}: 64 concurrent 1-row clients, req/s batching on / off | {ratio:.2f}x "
            f"| >= {MIN_THROUGHPUT_RATIO:g}x | {verdict} |"
        )
    lines += table("| target | measured | limit | result |", targets)
    for framework, loads in results.items():
        lines += ["", f"## {framework}", ""]
        rows = []
        for mode in MODES:
            for concurrency in CONCURRENCIES:
                load = loads[mode, concurrency]
                ratio = load.requests_per_second / loads["off", concurrency].requests_per_second
                rows.append(
                    f"| {mode} | {concurrency} | {load.requests_per_second:.0f} | {ratio:.2f}x | {load.p50_ms:.3f} "
                    f"| {load.p99_ms:.3f} | {load.socket_errors} | {load.other_cpu:.2f} |"
                )
        lines += table(
            "| batching | concurrency | req/s | req/s vs off | p50 | p99 | socket errors | other CPU (cores) |", rows
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/batching.py needs wrk on PATH (apt-get install wrk)")
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_at_start, revision = load_average(), source_revision()
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads_per_worker(1))) | OMP_WAIT_POLICY)
    results = {}
    with tempfile.TemporaryDirectory(prefix="modelcrate-batching-") as scratch:
        work = Path(scratch)
        wrk_script = work / "post_body.lua"
        wrk_script.write_text(WRK_SCRIPT)
        body_file = work / "body-1.csv"
        body_file.write_bytes(csv_body(abalone_dataset("regression").x_test[:1]))
        try:
            for model in reversed(MODELS):  # XGBoost first
                progress(f"{model.title}: training, then measuring")
                model_dir = work / model.framework
                create_sample_model(model.framework, model.model_format, "regression", model_dir)
                results[model.title] = measure(model_dir, body_file, wrk_script, work, settings)
        except BenchmarkError as exc:
            sys.exit(f"benchmark failed: {exc}")
    report = render(results, machine_table(load_at_start, revision), started_at, settings.duration)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)
    progress(f"report written to {REPORT_PATH.relative_to(REPORT_PATH.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
