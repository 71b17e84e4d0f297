"""examples/python_api.py, the notebook-style tour of the Python API, runs to the end and prints what it did."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import modelcrate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python_api.py"


def test_the_example_registers_approves_documents_serves_and_transforms(tmp_path):
    source = str(Path(modelcrate.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, str(ROOT)]), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = [
        "registered: arn:aws:sagemaker:local:000000000000:model-package/abalone/1",
        "described: version 1, PendingManualApproval",
        "listed: ['arn:aws:sagemaker:local:000000000000:model-package/abalone/1']",
        "approval: Approved",
        "card: abalone-card version 1, Draft",
        "transform: Completed, 5 records",
    ]
    assert [line for line in lines if line in expected] == expected
    served = next(line for line in lines if line.startswith("served: "))
    transformed = lines[lines.index("transform: Completed, 5 records") + 1 :]
    assert len(transformed) == 5
    # The batch job's predictions are those the local server gave, row for row.
    assert [float(value) for value in transformed] == ast.literal_eval(served.removeprefix("served: "))["predictions"]
    assert list(tmp_path.iterdir()) == []  # the example cleans up after itself
