"""Many processes registering into one group at once, and registrations killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from modelcrate.registry.artifacts import ArtifactStore
from modelcrate.registry.db import open_engine
from modelcrate.registry.models import ArtifactClaim
from modelcrate.registry.service import Registry

PROCESSES = 8
VERSIONS_EACH = 50

# Registers COUNT versions (COUNT=0: until killed), each a model directory with different bytes.
REGISTER = """
import os, sys
from pathlib import Path
from modelcrate.archives import pack_directory
from modelcrate.registry.service import Registry

count, work = int(sys.argv[1]), Path(sys.argv[2])
registry = Registry()
number = 0
while count == 0 or number < count:
    number += 1
    model = work / str(number)
    model.mkdir(parents=True)
    (model / "model.json").write_bytes(os.urandom(int(sys.argv[3])))
    (work / f"{number}-tar").mkdir()
    archive = pack_directory(model, work / f"{number}-tar")
    registry.create_model_package({
        "ModelPackageGroupName": "busy",
        "InferenceSpecification": {
            "Containers": [{"Image": "busy:latest", "ModelDataUrl": str(archive)}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
        },
    })
    print(number, flush=True)
"""


def environment(database: str, store: Path) -> dict:
    return {**os.environ, "MODELCRATE_DATABASE_URL": database, "MODELCRATE_ARTIFACT_STORE": str(store)}


def start(database: str, store: Path, work: Path, count: int, size: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", REGISTER, str(count), str(work), str(size)],
        env=environment(database, store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_processes_register_400_versions_exactly_once(database, tmp_path):
    store = tmp_path / "artifacts"
    registry = Registry(open_engine(database), ArtifactStore(str(store)))
    registry.create_model_package_group({"ModelPackageGroupName": "busy"})
    workers = [start(database, store, tmp_path / f"w{i}", VERSIONS_EACH, 64) for i in range(PROCESSES)]
    for worker in workers:
        _, errors = worker.communicate(timeout=600)
        assert worker.returncode == 0, errors[-2000:]
    versions, token = [], None
    while True:
        page = registry.list_model_packages(
            {"ModelPackageGroupName": "busy", "MaxResults": 100, **({"NextToken": token} if token else {})}
        )
        versions += [p["ModelPackageVersion"] for p in page["ModelPackageSummaryList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(versions) == list(range(1, PROCESSES * VERSIONS_EACH + 1))
    assert len(registry.store.stored()) == PROCESSES * VERSIONS_EACH  # each version's own bytes, once


def claims_of(engine, pid: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(ArtifactClaim).where(ArtifactClaim.owner.endswith(f":{pid}"))
        )


def test_sigkill_during_registration_leaves_the_whole_package_or_nothing(database, tmp_path):
    store = tmp_path / "artifacts"
    engine = open_engine(database)
    registry = Registry(engine, ArtifactStore(str(store)))
    registry.create_model_package_group({"ModelPackageGroupName": "busy"})
    for round_ in range(6):
        worker = start(database, store, tmp_path / f"r{round_}", 0, 2 * 1024 * 1024)
        assert worker.stdout.readline().strip(), worker.stderr.read()[-2000:]  # one registration done
        # Killed while its next artifact is being stored: the claim is committed, the package is not.
        while claims_of(engine, worker.pid) == 0 and worker.poll() is None:
            time.sleep(0.001)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    with engine.connect() as connection:
        orphaned = connection.scalar(select(func.count()).select_from(ArtifactClaim))
    assert orphaned >= 1  # the last kill left a claim (earlier ones were recovered by the next round's start)

    survivor = Registry(engine, ArtifactStore(str(store)))  # recovery runs on open
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ArtifactClaim)) == 0
    packages = survivor.list_model_packages({"ModelPackageGroupName": "busy", "MaxResults": 100})
    versions = sorted(p["ModelPackageVersion"] for p in packages["ModelPackageSummaryList"])
    assert len(versions) >= 6  # each round registered at least one before its kill
    assert versions == list(range(1, len(versions) + 1))  # a killed registration used no number
    referenced = set()
    for version in versions:
        described = survivor.describe_model_package(f"busy/{version}")
        url = described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        survivor.store.read(url, described["ModelDataDigests"][0])  # present, and the bytes registered
        referenced.add(url)
    assert survivor.store.stored() == referenced  # no artifact without its package
