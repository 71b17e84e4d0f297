"""Pipelines of real model servers: Abalone sample models and small containers with user code that record
what they received (content type, accept, custom attributes, inference id)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RECORDER_CODE = """
import json
import os
import time


def model_fn(model_dir):
    # Opened while the worker is root: it answers requests as an unprivileged user, who cannot open test files.
    return open(os.environ.get("RECORD_FILE", os.devnull), "a", buffering=1)


def transform_fn(record, body, content_type, accept, context):
    seen = {
        "content_type": content_type,
        "accept": accept,
        "custom_attributes": context.custom_attributes,
        "inference_id": context.inference_id,
    }
    record.write(json.dumps(seen) + "\\n")
    time.sleep(float(os.environ.get("SLEEP_SECONDS", "0")))
    if os.environ.get("DROP_FIRST_COLUMN"):
        body = "".join(line.split(",", 1)[1] + "\\n" for line in body.decode().splitlines() if line)
    return body, content_type
"""
# The recorder's answer type when no Accept reaches it: tells "no Accept header" from any Accept the test sends.
RECORDER_DEFAULT_ACCEPT = "application/jsonlines"


@pytest.fixture(scope="session")
def recorder_dir(tmp_path_factory) -> Path:
    """A container that passes its request body on (dropping the first CSV column with DROP_FIRST_COLUMN=1)
    and appends what it received to $RECORD_FILE (when set)."""
    model_dir = tmp_path_factory.mktemp("recorder")
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(RECORDER_CODE)
    return model_dir


def recorder(model_dir: Path, hostname: str, record_file: Path, **env: str) -> dict:
    return {
        "ContainerHostname": hostname,
        "ModelDirectory": str(model_dir),
        "Environment": {
            "RECORD_FILE": str(record_file),
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": RECORDER_DEFAULT_ACCEPT,
            **env,
        },
    }


def recorded(record_file: Path) -> list[dict]:
    return [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.exists() else []


def write_definition(directory: Path, definition: dict, name: str = "pipeline.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(definition, indent=2))
    return path


def runtime_pid(port: int) -> int:
    """The pid of this process's child serving on ``port`` (a pipeline container started by the test)."""
    me = os.getpid()
    children = []
    for task in Path(f"/proc/{me}/task").iterdir():
        children += (task / "children").read_text().split()
    marker = f"SAGEMAKER_BIND_TO_PORT={port}\0".encode()
    for pid in children:
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes():
                return int(pid)
        except OSError:
            continue
    raise LookupError(f"no child process serves port {port}")


def established_connections(port: int) -> int:
    """TCP connections to 127.0.0.1:``port`` in the ESTABLISHED state, from this machine's socket table."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":
                count += 1
    return count
