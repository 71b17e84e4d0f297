"""Training memory benchmark: peak memory of a training job against the float64 size of its data.

    .venv/bin/python benchmarks/training_memory.py [--rows N] [--baseline SRC]

Writes one numeric CSV (a regression label and 10 features, 6 significant digits: about 100 bytes a row,
120 MB at the default 1.2 million rows) and, for each code under test, runs in a child process each:
reading the train channel alone (``read_channel``), then a whole XGBoost and a whole scikit-learn job
(``python -m modelcrate.training``: read, fit, evaluate, save). Peak memory is the child's peak RSS
(``os.wait4``'s ru_maxrss). Every run is repeated on 1,000 rows: the difference is what the data costs,
reported as a ratio to the data's float64 size (rows x 11 columns x 8 bytes), beside the whole peak's ratio.
``--baseline SRC`` runs the same children against another checkout's ``src`` (e.g. the code before a change)
in the same run. The report goes to benchmarks/results/training_memory.md and stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from modelcrate.training import default_spec

REPORT_PATH = Path(__file__).resolve().parent / "results" / "training_memory.md"
SOURCE = Path(__file__).resolve().parent.parent / "src"
FEATURES = 10
# Small models, so the data and not the trees dominate memory: the bound is about how the data is held.
JOBS = {
    "xgboost": {"num_round": "20", "max_depth": "6", "seed": "7"},
    "sklearn": {"n_estimators": "3", "max_depth": "6", "max_features": "sqrt", "seed": "7"},
}
READ_ONLY = (
    "import sys, time; from pathlib import Path; from modelcrate.training.data import read_channel; "
    "started = time.perf_counter(); read_channel('train', Path(sys.argv[1]), 0); "
    "print(time.perf_counter() - started)"
)
# Each run is repeated on this many rows: its peak RSS there is the cost of the code and libraries, not the data.
FIXED_COST_ROWS = 1_000
READ_REPEATS = 3  # the machine may be shared: reading's time is the best of these


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=FEATURES)
    path.parent.mkdir(parents=True)
    with path.open("w") as file:
        for start in range(0, rows, 100_000):
            features = rng.normal(size=(min(100_000, rows - start), FEATURES))
            labels = features @ weights + rng.normal(size=len(features))
            np.savetxt(file, np.column_stack([labels, features]), fmt="%.6g", delimiter=",")


def run_child(args: list[str], source: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Seconds, peak RSS in MB and stdout of ``python args`` importing modelcrate from ``source``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **(env or {}), "PYTHONPATH": str(source)},
            stdout=out,
            stderr=err,
        )
        # wait4 rather than wait: it returns this child's own rusage, and so its own peak RSS.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode:
            raise SystemExit(f"{args[:2]} failed with exit {child.returncode}: {err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def job_prefix(root: Path, channel: Path, framework: str) -> Path:
    prefix = root / f"{channel.name}-{framework}"
    if not prefix.exists():
        (prefix / "input" / "data").mkdir(parents=True)
        (prefix / "input" / "data" / "train").symlink_to(channel)
        (prefix / "input" / "config").mkdir()
        (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(JOBS[framework]))
        (prefix / "training.json").write_text(json.dumps(default_spec(framework, "regression")))
    (prefix / "model").mkdir(exist_ok=True)
    for leftover in (prefix / "model").iterdir():
        leftover.unlink()
    return prefix


def measure(source: Path, channel: Path, root: Path) -> dict[str, tuple[float, float]]:
    """Each run's seconds and peak RSS (MB) with the code in ``source`` on ``channel``; reading is timed
    in-process, best of READ_REPEATS."""
    reads = [run_child(["-c", READ_ONLY, str(channel)], source) for _ in range(READ_REPEATS)]
    results = {"reading the train channel (read_channel)": (min(float(out) for *_, out in reads), reads[0][1])}
    for framework, hyperparameters in JOBS.items():
        prefix = job_prefix(root, channel, framework)
        env = {"MODELCRATE_ML_PREFIX": str(prefix), "MODELCRATE_TRAINING_SPEC": str(prefix / "training.json")}
        shown = ", ".join(f"{name}={value}" for name, value in hyperparameters.items())
        results[f"{framework} job ({shown})"] = run_child(["-m", "modelcrate.training"], source, env)[:2]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_200_000)
    parser.add_argument("--baseline", type=Path, help="another checkout's src directory, measured the same way")
    args = parser.parse_args()
    codes = {"this checkout": SOURCE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory(prefix="modelcrate-bench-training-") as tmp:
        root = Path(tmp)
        say(f"writing {args.rows:,} rows")
        full, small = root / "full", root / "small"
        write_csv(full / "data.csv", args.rows)
        write_csv(small / "data.csv", FIXED_COST_ROWS)
        csv_mb = (full / "data.csv").stat().st_size / 1e6
        results = {}
        for label, source in codes.items():
            say(f"{label}: {FIXED_COST_ROWS:,} rows")
            fixed = measure(source, small, root)
            say(f"{label}: {args.rows:,} rows")
            results[label] = {run: (*measured, fixed[run][1]) for run, measured in measure(source, full, root).items()}
    write_report(results, args.rows, csv_mb)


def write_report(results: dict[str, dict[str, tuple[float, float, float]]], rows: int, csv_mb: float) -> None:
    float64_mb = rows * (FEATURES + 1) * 8 / 1e6
    lines = [
        "# Training memory benchmark",
        "",
        f"{datetime.date.today().isoformat()}; {platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, numpy {version('numpy')}, xgboost {version('xgboost')}, "
        f"scikit-learn {version('scikit-learn')}.",
        f"One train channel: {rows:,} rows x {FEATURES + 1} columns (label first), {csv_mb:.0f} MB of CSV, "
        f"{float64_mb:.0f} MB as float64. Each run is a child process; peak is its peak RSS. The data's share is "
        f"the peak less the same run's peak on {FIXED_COST_ROWS:,} rows (interpreter, libraries, model); "
        "the ratios divide by the data's float64 size. Reading is timed in-process, best of "
        f"{READ_REPEATS}; jobs are timed whole (start-up, fit, evaluation, saving).",
        "",
        "| code | run | seconds | peak RSS MB | peak on 1,000 rows MB | data's share / float64 size "
        "| peak / float64 size |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, runs in results.items():
        for run, (seconds, peak, fixed) in runs.items():
            lines.append(
                f"| {label} | {run} | {seconds:.1f} | {peak:,.0f} | {fixed:,.0f} | "
                f"{(peak - fixed) / float64_mb:.2f}x | {peak / float64_mb:.2f}x |"
            )
    lines += [
        "",
        "What the frameworks hold besides the job's float64 arrays: XGBoost trains on a QuantileDMatrix, the "
        "features as 1-byte histogram bins plus its quantile sketches while it builds them (a DMatrix would copy "
        "them at 8 bytes a value); scikit-learn's forest fits on a float32 copy of the features (half their "
        "float64 size), and predicting for the metrics makes that copy again. The jobs' time is mostly fitting.",
        "",
        "Reproduce: `make bench-training` (or `.venv/bin/python benchmarks/training_memory.py`; "
        "`--baseline OTHER_CHECKOUT/src` adds the same runs against other code).",
    ]
    report = "\n".join(lines) + "\n"
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
