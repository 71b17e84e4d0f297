"""The privilege model as processes: started as root, workers load a root-only model (dirs 0700, files 0600, as
SageMaker mounts it) and then answer as an unprivileged user with no_new_privs. The tests run as root, as CI and
SageMaker do. Started as another uid (nothing dropped; an unreadable model is one line): tests/e2e/test_privileges.py,
since this machine's Python may sit where only root can run it."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from modelcrate.compiler.trees import optimize

SAMPLE_ROW = "0.0,1.0,0.0,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
OTHER_UID = 1234  # a uid with no passwd entry


@pytest.fixture(autouse=True)
def running_as_root():
    assert os.geteuid() == 0, "these tests start serve as root (as SageMaker does): run them as root"


def root_only(directory: Path) -> Path:
    """As SageMaker and its SDK unpack model.tar.gz: owned by root, directories 0700, files 0600."""
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, 0, 0)
        path.chmod(0o700 if path.is_dir() else 0o600)
    return directory


@pytest.fixture
def shared_dir():
    """A directory outside pytest's root-only temporary tree, so that other uids can reach what is put in it."""
    directory = Path(tempfile.mkdtemp(prefix="modelcrate-privileges-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def ids(status: dict[str, str], name: str) -> set[int]:
    """The real, effective, saved and filesystem ids of a /proc status line."""
    return {int(value) for value in status[name].split()}


def expected_serving_uid() -> int:
    """The image's `model` user when this machine has one, else nobody (the documented rule)."""
    try:
        return pwd.getpwnam("model").pw_uid
    except KeyError:
        return 65534


def test_workers_load_a_root_only_model_as_root_then_answer_unprivileged(sample_model, tmp_path, start_server):
    model_dir = root_only(shutil.copytree(sample_model("xgboost", "json", "regression"), tmp_path / "model"))
    server = start_server(model_dir, workers=2)
    server.wait_for_ready_workers(2)
    assert server.invoke(SAMPLE_ROW).status == 200
    workers = server.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        status = proc_status(pid)
        assert ids(status, "Uid") == {expected_serving_uid()}, status["Uid"]
        assert 0 not in ids(status, "Gid"), status["Gid"]
        assert status["Groups"].strip() == ""
        assert status["NoNewPrivs"] == "1"
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
    assert ids(proc_status(server.process.pid), "Uid") == {0}  # the supervisor answers nothing; it forks loaders
    started = [json.loads(line) for line in server.log().splitlines() if '"serving"' in line]
    assert started[0]["workers_answer_as"] == f"uid {expected_serving_uid()}"


def test_a_compiled_model_reads_its_original_before_the_drop(sample_model, tmp_path, start_server):
    """The original model answers records with missing values: it must be read while the worker is still root."""
    model_dir = shutil.copytree(sample_model("sklearn", "joblib", "regression"), tmp_path / "model")
    assert optimize(model_dir)["missing_values"] == "original"
    server = start_server(root_only(model_dir))
    answer = server.invoke(SAMPLE_ROW.replace("0.455", ""))
    assert answer.status == 200, answer.text
    assert ids(proc_status(server.worker_pids()[0]), "Uid") == {expected_serving_uid()}


def test_serve_user_is_configurable_and_never_root(sample_model, tmp_path, start_server):
    model_dir = root_only(shutil.copytree(sample_model("xgboost", "json", "regression"), tmp_path / "model"))
    server = start_server(model_dir, env={"MODELCRATE_SERVE_USER": f"{OTHER_UID}:{OTHER_UID + 1}"})
    assert server.invoke(SAMPLE_ROW).status == 200
    status = proc_status(server.worker_pids()[0])
    assert ids(status, "Uid") == {OTHER_UID} and ids(status, "Gid") == {OTHER_UID + 1}
    for refused in ("root", "0", "1234:0"):
        server = start_server(model_dir, env={"MODELCRATE_SERVE_USER": refused}, wait=False)
        assert server.process.wait(60) == 2
        assert "requests are never answered as root" in server.log(), server.log()
    server = start_server(model_dir, env={"MODELCRATE_SERVE_USER": "no-such-user"}, wait=False)
    assert server.process.wait(60) == 2
    assert "MODELCRATE_SERVE_USER=no-such-user: no such user" in server.log()


def test_a_multi_model_endpoint_names_a_model_directory_its_workers_cannot_read(
    sample_model, shared_dir, start_server, xgboost_imported_at_start
):
    readable = shutil.copytree(sample_model("xgboost", "json", "regression"), shared_dir / "open" / "model")
    for path in [shared_dir / "open", *readable.parent.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    private = shutil.copytree(sample_model("xgboost", "json", "regression"), shared_dir / "private" / "model")
    root_only(private.parent)
    server = start_server(
        shared_dir,
        env={
            "SAGEMAKER_MULTI_MODEL": "true",
            "MODELCRATE_MULTI_MODEL_ROOT": str(shared_dir),
            **xgboost_imported_at_start,
        },
        workers=2,
    )
    headers = {"Content-Type": "application/json"}
    loaded = server.request("POST", "/models", json.dumps({"model_name": "open", "url": "open/model"}), headers)
    assert loaded.status == 200, loaded.text
    invoked = server.request("POST", "/models/open/invoke", SAMPLE_ROW.encode(), {"Content-Type": "text/csv"})
    assert invoked.status == 200, invoked.text
    refused = server.request("POST", "/models", json.dumps({"model_name": "p", "url": "private/model"}), headers)
    assert refused.status == 500
    uid = expected_serving_uid()
    assert refused.text == (
        f"cannot read {shared_dir / 'private'} (owner root, mode 0700) as uid {uid}: a multi-model endpoint loads "
        f"models as the uid its workers answer as; make the model files readable by uid {uid}\n"
    )
    assert "Traceback" not in server.log()
