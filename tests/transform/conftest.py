"""Transform jobs run as a user runs them: the modelcrate command, real model servers, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcrate.scaffold.sample_models import read_abalone

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))

# A container whose answers show how it was called: one line per record with the request's size in bytes,
# the records in the request, the serving process's parent (one per server), and the record itself.
ECHO_CODE = """
import os, struct, time

from modelcrate.serving.errors import BadRequest


def model_fn(model_dir):
    return None


def _records(body, split):
    if split == "RecordIO":
        out, at = [], 0
        while at < len(body):
            length = struct.unpack_from("<I", body, at + 4)[0] & ((1 << 29) - 1)
            out.append(body[at + 8 : at + 8 + length])
            at += 8 + length + (-length % 4)
        return out
    if split == "TFRecord":
        out, at = [], 0
        while at < len(body):
            length = struct.unpack_from("<Q", body, at)[0]
            out.append(body[at + 12 : at + 12 + length])
            at += 16 + length
        return out
    if split == "None":
        return [body]
    return [line for line in body.split(b"\\n") if line]


def transform_fn(model, body, content_type, accept):
    time.sleep(float(os.environ.get("ECHO_DELAY", "0")))
    records = _records(body, os.environ.get("ECHO_SPLIT", "Line"))
    if any(b"BAD" in r for r in records):
        raise BadRequest("this record is BAD")
    server = os.getppid()
    return b"".join(b"%d %d %d %s\\n" % (len(body), len(records), server, r) for r in records), "text/plain"
"""


@dataclass
class JobRun:
    returncode: int
    summary: dict | None
    stderr: str


@pytest.fixture(scope="session")
def echo_model(tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("echo-model")
    (model / "code").mkdir()
    (model / "code" / "inference.py").write_text(ECHO_CODE)
    return model


@pytest.fixture(scope="session")
def abalone_rows() -> list[str]:
    """The 4177 Abalone rows without Sex: the 8 numeric features the classification sample models take."""
    return [",".join(row[1:]) for row in read_abalone()]


def transform(target, *args: str, env: dict | None = None, timeout: float = 300) -> JobRun:
    """``modelcrate transform TARGET ARGS...``; the summary is what it printed on stdout."""
    import os

    result = subprocess.run(
        [MODELCRATE, "transform", str(target), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    try:
        summary = json.loads(result.stdout) if result.stdout.strip() else None
    except ValueError:
        summary = None
    return JobRun(result.returncode, summary, result.stderr)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path
