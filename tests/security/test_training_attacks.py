"""Hostile training jobs: hyperparameters and CSV fields thousands of characters long, and a channel bigger than
the memory the job may use. Each fails as the job's own error (exit 1) with one short line in output/failure."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from modelcrate.training import default_spec, run_training

MAX_REASON = 600  # characters: a reason names the problem, it does not echo the input back


def job_layout(root: Path, framework: str, csv: bytes, hyperparameters: dict) -> tuple[Path, Path]:
    """A regression job's prefix (one train channel holding ``csv``) and its training.json."""
    prefix = root / "ml"
    (prefix / "input" / "data" / "train").mkdir(parents=True)
    (prefix / "input" / "data" / "train" / "data.csv").write_bytes(csv)
    (prefix / "input" / "config").mkdir()
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    spec = root / "training.json"
    spec.write_text(json.dumps(default_spec(framework, "regression")))
    return prefix, spec


def short_failure(prefix: Path) -> str:
    reason = (prefix / "output" / "failure").read_text()
    assert len(reason.strip().splitlines()) == 1, reason[:MAX_REASON]
    assert len(reason) < MAX_REASON, reason[:MAX_REASON]
    return reason


ROWS = b"".join(b"%d,%d,%d\n" % (i % 7, i, i * i) for i in range(50))


def test_a_num_round_of_5000_digits_is_out_of_range_and_not_echoed(tmp_path):
    prefix, spec = job_layout(tmp_path, "xgboost", ROWS, {"num_round": "9" * 5000})
    assert run_training(prefix, spec) == 1
    reason = short_failure(prefix)
    assert 'hyperparameter num_round="99999' in reason and "(5,002 characters)" in reason
    assert reason.endswith("is out of range; give a whole number from 1 to 10000\n")


def test_a_whole_number_beyond_a_c_int_is_out_of_range_where_the_spec_sets_no_maximum(tmp_path):
    prefix, spec = job_layout(tmp_path, "xgboost", ROWS, {"nthread": str(2**40)})
    assert run_training(prefix, spec) == 1
    assert "nthread" in short_failure(prefix)
    assert "is out of range; give a whole number from 0 to 2147483647" in short_failure(prefix)


def test_an_unknown_hyperparameter_with_a_long_name_and_a_line_break_is_one_short_line(tmp_path):
    prefix, spec = job_layout(tmp_path, "sklearn", ROWS, {"x" * 3000 + "\nforged line": "1" * 3000})
    assert run_training(prefix, spec) == 1
    assert short_failure(prefix).startswith("unknown hyperparameter xxxx")


def test_a_megabyte_field_is_named_without_being_echoed(tmp_path):
    prefix, spec = job_layout(tmp_path, "sklearn", ROWS + b"1,2," + b"a" * 1_000_000 + b"\n", {})
    assert run_training(prefix, spec) == 1
    assert "line 51 column 3: 'aaaa" in short_failure(prefix)
    assert "(1,000,002 characters) is not a finite number" in short_failure(prefix)


def peak_virtual_memory(code: str) -> int:
    """Bytes of address space Python takes at most running ``code`` (the probe prints /proc/self/status)."""
    probe = f"{code}; print(open('/proc/self/status').read())"
    status = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=ONE_THREAD
    ).stdout
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmPeak:"))


def zeros_channel(tmp_path: Path, csv_mb: int, hyperparameters: dict) -> tuple[Path, Path]:
    # 2 bytes of CSV a value become 8 bytes of float64: the channel needs 4x its CSV's size.
    row = b",".join([b"0"] * 11) + b"\n"
    return job_layout(tmp_path, "xgboost", row * (csv_mb * 2**20 // len(row)), hyperparameters)


def run_capped(prefix: Path, spec: Path, cap: int) -> subprocess.CompletedProcess:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**ONE_THREAD, "MODELCRATE_ML_PREFIX": str(prefix), "MODELCRATE_TRAINING_SPEC": str(spec)}
    return subprocess.run(
        [sys.executable, "-m", "modelcrate.training"],
        env=env,
        preexec_fn=limit_memory,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Each thread reserves address space of its own: one thread keeps the capped runs' needs predictable.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def test_a_channel_bigger_than_the_memory_cap_fails_as_the_jobs_size_not_an_internal_error(tmp_path):
    prefix, spec = zeros_channel(tmp_path, 100, {})  # 400 MB as float64
    done = run_capped(prefix, spec, peak_virtual_memory("import modelcrate.training.job") + 200 * 2**20)
    assert done.returncode == 1, done.stderr[-2000:]
    reason = short_failure(prefix)
    assert reason.startswith(
        "ran out of memory reading channel 'train' (about 4,766,254 rows x 11 columns = 419 MB as float64); "
        "use an instance with more memory or fewer rows"
    )
    assert "Traceback" not in done.stderr


def test_running_out_of_memory_while_xgboost_trains_fails_as_the_jobs_size(tmp_path):
    prefix, spec = zeros_channel(tmp_path, 50, {"num_round": "2", "nthread": "1"})  # 200 MB as float64
    xgboost_trained = (
        "import modelcrate.training.job, numpy, xgboost; x = numpy.zeros((100, 3)); "
        "xgboost.train({'tree_method': 'hist', 'nthread': 1}, xgboost.DMatrix(x, label=x[:, 0]), 2)"
    )
    # Room for the channel's arrays but not for XGBoost's work on them (quantile sketches, histogram index).
    done = run_capped(prefix, spec, peak_virtual_memory(xgboost_trained) + 250 * 2**20)
    assert done.returncode == 1, done.stderr[-2000:]
    assert short_failure(prefix).startswith(
        "ran out of memory training xgboost on channel 'train' (2,383,127 rows x 10 features = 191 MB as float64); "
        "use an instance with more memory"
    )
    assert list((prefix / "model").iterdir()) == []
