"""Batch transform benchmark: 1 million Abalone-shaped CSV rows through the sklearn and XGBoost sample models.

    .venv/bin/python benchmarks/transform.py [--rows N]

For each model, in one run: the in-process predict floor (the model's own predict on the already parsed
rows, in the job's request-sized batches, in this process: no parsing, no HTTP, no output), then the local
engine (one model server, its workers = cores) and the Ray engine (a local Ray cluster; actors each running
a model server, and actors predicting in-process). Each engine's rows/s is reported with its ratio to the
floor measured in the same run; the engines' outputs are checked to be byte-identical. Server and actor start-up
are not timed (a transform job's time is its records' time). The report goes to
benchmarks/results/transform.md and stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelcrate.predictors import load_predictor
from modelcrate.scaffold.sample_models import create_sample_model, read_abalone
from modelcrate.transform.engine import list_inputs
from modelcrate.transform.job import TransformJob
from modelcrate.transform.run import run_job
from modelcrate.transform.targets import Target

REPORT_PATH = Path(__file__).resolve().parent / "results" / "transform.md"
MODELS = (("xgboost", "json"), ("sklearn", "joblib"))
# 2 MB requests (about 48,000 rows) rather than SageMaker's default 6: 1M rows make 21 requests instead of 7,
# so no worker idles while the last big request of the file finishes (measured: 51% -> 68% of the floor).
PAYLOAD_MB = 2
CONCURRENCY_PER_WORKER = 2  # the next request waits at the worker while the client handles the last answer
FLOOR_REPEATS = 3  # the floor is the best of this many passes


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_rows(count: int, path: Path) -> np.ndarray:
    """``count`` Abalone rows (the 8 numeric columns), drawn with a fixed seed; written as CSV, returned parsed."""
    rows = read_abalone()
    text = [",".join(r[1:]) for r in rows]
    picks = np.random.default_rng(0).integers(0, len(rows), count)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text[i] for i in picks) + "\n")
    return np.array([[float(v) for v in r[1:]] for r in rows])[picks]


def predict_floor(model_dir: Path, matrix: np.ndarray, batch_rows: int) -> float:
    predictor = load_predictor(model_dir)
    predictor.predict(matrix[:10])
    best = float("inf")
    for _ in range(FLOOR_REPEATS):
        started = time.perf_counter()
        for start in range(0, len(matrix), batch_rows):
            predictor.predict(matrix[start : start + batch_rows])
        best = min(best, time.perf_counter() - started)
    return best


def job_for(data_dir: Path, out_dir: Path, concurrency: int, instances: int = 1) -> TransformJob:
    return TransformJob.parse(
        {
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3Uri": str(data_dir)}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": str(out_dir), "Accept": "text/csv"},
            "MaxPayloadInMB": PAYLOAD_MB,
            "MaxConcurrentTransforms": concurrency,
            "TransformResources": {"InstanceCount": instances},
        }
    )


def timed(job: TransformJob, model_dir: Path, **engine) -> float:
    summary = run_job(job, Target("model", str(model_dir)), list_inputs(job), **engine)
    if summary.status != "Completed":
        raise SystemExit(f"benchmark job failed: {summary.failure_reason}")
    return summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory(prefix="modelcrate-bench-transform-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        say(f"writing {args.rows:,} rows")
        matrix = make_rows(args.rows, data_dir / "abalone.csv")
        size_mb = (data_dir / "abalone.csv").stat().st_size / 1e6
        batch_rows = int(args.rows * PAYLOAD_MB * 1024 * 1024 / (size_mb * 1e6))  # rows in one request
        for framework, model_format in MODELS:
            model_dir = root / f"{framework}-{model_format}"
            create_sample_model(framework, model_format, "classification", model_dir)
            say(f"{framework}: in-process predict floor")
            floor = predict_floor(model_dir, matrix, batch_rows)
            runs = {}
            for name, job, engine in (
                (
                    "local engine (1 server, workers = cores)",
                    job_for(data_dir, root / f"o-{framework}-local", cores * CONCURRENCY_PER_WORKER),
                    {},
                ),
                (
                    f"Ray engine ({cores} actors, each a 1-worker server)",
                    job_for(data_dir, root / f"o-{framework}-ray", CONCURRENCY_PER_WORKER, instances=cores),
                    {"engine": "ray", "workers": 1},
                ),
                (
                    f"Ray engine ({cores} actors, in-process predictor)",
                    job_for(data_dir, root / f"o-{framework}-rayip", CONCURRENCY_PER_WORKER, instances=cores),
                    {"engine": "ray", "in_process": True},
                ),
            ):
                say(f"{framework}: {name}")
                runs[name] = (timed(job, model_dir, **engine), job.TransformOutput.S3OutputPath)
            outputs = {Path(out, "abalone.csv.out").read_bytes() for _, out in runs.values()}
            if len(outputs) != 1:
                raise SystemExit(f"{framework}: the engines' outputs differ")
            results.append((framework, floor, {name: seconds for name, (seconds, _) in runs.items()}))
    write_report(results, args.rows, size_mb, cores)


def write_report(results, rows: int, size_mb: float, cores: int) -> None:
    lines = [
        "# Batch transform benchmark",
        "",
        f"{datetime.date.today().isoformat()}; {platform.machine()}, {cores} cores; "
        f"Python {platform.python_version()}, "
        f"xgboost {version('xgboost')}, scikit-learn {version('scikit-learn')}, ray {version('ray')}.",
        f"{rows:,} Abalone-shaped CSV rows ({size_mb:.0f} MB, one file), SplitType Line, MultiRecord, "
        f"MaxPayloadInMB {PAYLOAD_MB}, MaxConcurrentTransforms {CONCURRENCY_PER_WORKER} per server worker, "
        "Accept text/csv; classification sample models (8 features).",
        "Floor: the model's own predict on the already parsed rows in request-sized batches, in one process. "
        "Engines: wall time of the records (start-up excluded), outputs byte-identical across engines.",
        "",
        "| model | run | seconds | rows/s | share of the floor's rows/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for framework, floor, runs in results:
        lines.append(f"| {framework} | in-process predict floor | {floor:.2f} | {rows / floor:,.0f} | 100% |")
        for name, seconds in runs.items():
            lines.append(f"| {framework} | {name} | {seconds:.2f} | {rows / seconds:,.0f} | {floor / seconds:.0%} |")
    lines.append("")
    lines.append("Reproduce: `make bench-transform` (or `.venv/bin/python benchmarks/transform.py`).")
    report = "\n".join(lines) + "\n"
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
