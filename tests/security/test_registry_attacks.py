"""The registry under hostile input and faults: racing group creation, registrations killed mid-write, archives
that are not what they claim, and a command line that answers every failure in one line."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelcrate.registry.artifacts import ArtifactStore
from modelcrate.registry.db import open_engine
from modelcrate.registry.models import ArtifactClaim
from modelcrate.registry.service import Registry, RegistryError, group_arn, now
from tests.conftest import MODELCRATE
from tests.registry.conftest import backend, database, model_dir, model_tar, package_request, registry  # noqa: F401

THREADS = 8
NEW_GROUPS = 5


def test_threads_creating_the_same_new_group_at_once_all_get_it(database, tmp_path):  # noqa: F811
    engine = open_engine(database)
    store = ArtifactStore(str(tmp_path / "artifacts"))
    start = threading.Barrier(THREADS)
    answers, failures = [], []

    def create(name: str) -> None:
        start.wait(timeout=60)
        try:
            answers.append(Registry(engine, store).ensure_model_package_group(name)["ModelPackageGroupArn"])
        except Exception as exc:  # any failure of a racing thread is the defect under test
            failures.append(repr(exc))

    for number in range(NEW_GROUPS):
        threads = [threading.Thread(target=create, args=(f"fresh-{number}",)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert failures == []
    assert len(answers) == THREADS * NEW_GROUPS
    assert set(answers) == {group_arn(f"fresh-{n}") for n in range(NEW_GROUPS)}
    listed = Registry(engine, store).list_model_package_groups({"MaxResults": 100})["ModelPackageGroupSummaryList"]
    assert sorted(g["ModelPackageGroupName"] for g in listed) == [f"fresh-{n}" for n in range(NEW_GROUPS)]
    engine.dispose()


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _claims_of(engine, pid: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(ArtifactClaim).where(ArtifactClaim.owner.endswith(f":{pid}"))
        )


@pytest.mark.parametrize("moment", ["packing", "storing"])
def test_sigkill_of_a_registration_leaves_no_staging_file_after_recovery(database, model_dir, tmp_path, moment):  # noqa: F811
    store, temp = tmp_path / "artifacts", tmp_path / "tmp"
    temp.mkdir()
    big_model = tmp_path / "big-model"
    shutil.copytree(model_dir, big_model)
    (big_model / "padding.bin").write_bytes(os.urandom(48 * 1024 * 1024))  # random: packing takes seconds
    engine = open_engine(database)
    env = {
        **os.environ,
        "MODELCRATE_DATABASE_URL": database,
        "MODELCRATE_ARTIFACT_STORE": str(store),
        "TMPDIR": str(temp),  # where tempfile would put anything meant for /tmp
    }
    worker = subprocess.Popen(
        [MODELCRATE, "registry", "register", str(big_model), "--group", "killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    if moment == "packing":  # the archive being written, in /tmp or in the store
        while not any(p.stat().st_size for p in [*temp.rglob("*"), *store.rglob("*")] if p.is_file()):
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()[-2000:]
            time.sleep(0.005)
    else:  # the claim committed: the artifact is being copied into the store
        while _claims_of(engine, worker.pid) == 0:
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()[-2000:]
            time.sleep(0.001)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)

    survivor = Registry(engine, ArtifactStore(str(store)))  # recovery runs on open
    assert survivor.list_model_packages({"ModelPackageGroupName": "killed"})["ModelPackageSummaryList"] == []
    assert _files_under(store) == set()
    assert _files_under(temp) == set()
    engine.dispose()


def test_old_incoming_copies_are_swept_unless_a_live_claim_covers_them(database, model_tar, tmp_path):  # noqa: F811
    """Earlier versions wrote the copy being stored as sha256/<digest>/.incoming-* after claiming the digest."""
    engine = open_engine(database)
    store = ArtifactStore(str(tmp_path / "artifacts"))
    earlier = Registry(engine, store)
    earlier.ensure_model_package_group("abalone")
    earlier.create_model_package(package_request(model_tar))
    (stored,) = map(Path, store.stored())
    beside_stored = stored.parent / ".incoming-k1ll3d"
    nothing_stored = tmp_path / "artifacts" / "sha256" / ("a" * 64) / ".incoming-k1ll3d"
    being_written = tmp_path / "artifacts" / "sha256" / ("b" * 64) / ".incoming-wr1t1n"
    for leftover in (beside_stored, nothing_stored, being_written):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"part of a model.tar.gz")
    with Session(engine) as session, session.begin():  # the writer's claim: this process, alive
        session.add(ArtifactClaim(sha256="b" * 64, owner=f"{socket.gethostname()}:{os.getpid()}", created_at=now()))

    Registry(engine, store)  # recovery runs on open
    assert not beside_stored.exists() and stored.is_file()
    assert not nothing_stored.parent.exists()
    assert being_written.read_bytes() == b"part of a model.tar.gz"
    engine.dispose()


def _tar_gz(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def not_model_archives(where: Path) -> dict[str, tuple[Path, str]]:
    """Archives registration refuses, with what the refusal says."""
    text = where / "text.tar.gz"
    text.write_text("just text, named like an archive\n")
    gzipped_text = where / "gzipped-text.tar.gz"
    gzipped_text.write_bytes(gzip.compress(b"text, compressed but no tar\n" * 100))
    bare_tar = where / "bare.tar.gz"
    with tarfile.open(bare_tar, "w") as archive:
        archive.addfile(_member("model.json"), io.BytesIO(b""))
    return {
        "text": (text, "is not a gzip-compressed tar archive"),
        "gzipped text": (gzipped_text, "is not a gzip-compressed tar archive"),
        "uncompressed tar": (bare_tar, "is not a gzip-compressed tar archive"),
        "parent member": (
            _tar_gz(where / "parent.tar.gz", (_member("../outside.txt"), b"x")),
            "member ../outside.txt would be written outside the model directory",
        ),
        "link out": (
            _tar_gz(where / "link.tar.gz", (_member("model.json", tarfile.SYMTYPE, "../../etc/passwd"), b"")),
            "member model.json would be written outside the model directory",
        ),
    }


@pytest.mark.parametrize("case", ["text", "gzipped text", "uncompressed tar", "parent member", "link out"])
def test_an_archive_that_is_not_a_safe_gzip_tar_is_refused_at_registration(registry, tmp_path, case):  # noqa: F811
    archive, problem = not_model_archives(tmp_path)[case]
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    with pytest.raises(RegistryError, match=problem) as refused:
        registry.create_model_package(package_request(archive))
    assert "\n" not in str(refused.value)
    assert registry.store.stored() == set()
    assert registry.list_model_packages({})["ModelPackageSummaryList"] == []


@pytest.fixture
def cli(run_modelcrate, tmp_path):
    env = {
        "MODELCRATE_HOME": str(tmp_path / "home"),
        "COLUMNS": "80",
        "MODELCRATE_DATABASE_URL": None,
        "MODELCRATE_ARTIFACT_STORE": None,
    }

    def run(*args, separate_process: bool = False, **extra_env) -> subprocess.CompletedProcess:
        return run_modelcrate("registry", *args, env={**env, **extra_env}, separate_process=separate_process)

    return run


def _one_line(run: subprocess.CompletedProcess, code: int) -> str:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == code, run.stderr[-3000:]
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run.stderr


def registry_cli_failures(where: Path) -> dict[str, tuple[list, dict[str, str], int, str]]:
    """Failures of ``modelcrate registry``, each as (arguments, environment, exit code, what its one line says)."""
    failures = {}
    for case, (archive, problem) in not_model_archives(where).items():
        request = where / f"{case.replace(' ', '-')}.json"
        request.write_text(json_request(archive))
        failures[case] = (["create-model-package", "--cli-input-json", f"file://{request}"], {}, 2, problem)
    request = where / "missing-archive.json"
    request.write_text(json_request(where / "missing.tar.gz"))
    failures["missing archive"] = (
        ["create-model-package", "--cli-input-json", f"file://{request}"],
        {},
        2,
        f"ModelDataUrl {where / 'missing.tar.gz'}: no such file",
    )
    failures["no model"] = (
        ["register", where / "no-model-here", "--group", "abalone"],
        {},
        2,
        "no-model-here is neither a model directory nor a project",
    )
    unreachable = "postgresql+psycopg://nobody:nothing@127.0.0.1:1/nowhere"
    failures["database down"] = (
        ["list-model-package-groups"],
        {"MODELCRATE_DATABASE_URL": unreachable},
        1,
        "the registry database cannot be used",
    )
    return failures


def test_every_registry_cli_failure_is_one_line_without_a_traceback(cli, tmp_path):
    assert cli("create-model-package-group", "--model-package-group-name", "abalone").returncode == 0
    for case, (args, env, code, says) in registry_cli_failures(tmp_path).items():
        line = _one_line(cli(*args, **env), code)
        assert says in line, case
        assert "nothing@" not in line, case  # never the database's password


@pytest.mark.parametrize("case", ["link out", "no model", "database down"])
def test_a_registry_cli_failure_is_one_line_in_a_real_process_too(cli, tmp_path, case):
    """One failure of each kind (a refused request, a refused model source, an unusable database) in the installed
    script's own process: a traceback the interpreter prints, or anything printed at exit, shows only there."""
    assert cli("create-model-package-group", "--model-package-group-name", "abalone").returncode == 0
    args, env, code, says = registry_cli_failures(tmp_path)[case]
    line = _one_line(cli(*args, separate_process=True, **env), code)
    assert says in line
    assert "nothing@" not in line


def json_request(archive: Path) -> str:
    return json.dumps(package_request(archive))
