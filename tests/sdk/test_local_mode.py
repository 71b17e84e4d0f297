"""The official SageMaker Python SDK (v2) as a client, in local mode, against images made by `modelcrate init`.

The SDK lives in its own virtualenv (scripts/setup-sagemaker-sdk.sh; .ci/run exports its path in
MODELCRATE_TEST_SAGEMAKER_SDK_VENV) and runs tests/sdk/driver.py; predictions made here, in-process with this
checkout's runtime on the same model files, are what its answers must equal. The models are `model.tar.gz`
archives of root-owned 0700 directories and 0600 files, given as `model_data="file://..."`: the SDK unpacks them
as it does for any user, and the image must read them as SageMaker would mount them.

Host networking: this engine runs `dockerd --bridge=none`, so no bridge network can exist. Local mode writes a
docker-compose.yaml that puts its container on a bridge network named sagemaker-local and publishes the serving
port, then runs `docker compose` or, when the Docker CLI has no compose plugin (as here), `docker-compose` from
PATH. The SDK's PATH starts with scripts/sagemaker-local, whose `docker-compose` rewrites the file the SDK wrote
(drops `networks` and `ports`, sets `network_mode: host`, turns the published port into SAGEMAKER_BIND_TO_PORT)
and then runs Debian's docker-compose. The SDK then reaches the container on localhost as it always does.

No AWS: the SDK gets a region, dummy credentials and a HOME of its own whose config opts out of telemetry and
sets the serving port; the driver refuses and records any address outside loopback, and every test asserts
that record is empty.

Each image is built once for the module and removed at its end with every container the SDK left of it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from modelcrate.containers.docker import DockerError, docker, require_engine
from modelcrate.containers.image_test import unpacked_model
from modelcrate.scaffold.sample_models import abalone_dataset, create_sample_model
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.service import InferenceService
from tests.conftest import free_port
from tests.e2e.conftest import init_and_build, modelcrate, remove_images

IMAGE_PREFIX = "sdk-"
SDK_VENV = "MODELCRATE_TEST_SAGEMAKER_SDK_VENV"
REPO = Path(__file__).resolve().parents[2]
COMPOSE_WRAPPER_DIR = REPO / "scripts" / "sagemaker-local"
DRIVER = Path(__file__).with_name("driver.py")
# A whole driver run: container starts (the SDK polls /ping every 5 s, for at most 120 s each) and jobs.
DRIVER_TIMEOUT = 900
STRATEGIES = ["SingleRecord", "MultiRecord", None]
# The (strategy, assemble_with) transforms per framework. Strategy and assembly are the serving runtime's, the same
# in every image, so their matrix runs on sklearn's alone: each strategy assembled as the SDK assembles by default
# (None), then SingleRecord with Line. XGBoost's image has to answer the SDK too: MultiRecord, the SDK's usual one.
TRANSFORMS = {
    "sklearn": [*((strategy, None) for strategy in STRATEGIES), ("SingleRecord", "Line")],
    "xgboost": [("MultiRecord", None)],
}
TASK = "classification"
HYPERPARAMETERS = {"num_round": 30, "max_depth": 4, "eta": 0.2, "subsample": 0.8, "seed": 11}
# The frameworks, each with the model format its sample model is saved in; XGBoost's image also trains.
IMAGES = {
    "sklearn": ("joblib", ["--model-source", "s3", "--sample-task", TASK]),
    "xgboost": ("json", ["--model-source", "s3", "--sample-task", TASK, "--with-training"]),
}
TELEMETRY_OPT_OUT = 'SchemaVersion: "1.0"\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n'


@pytest.fixture(scope="module", autouse=True)
def engine():
    try:
        require_engine()
    except DockerError as exc:
        pytest.fail(f"these tests need Docker: {exc}")
    yield
    remove_images(IMAGE_PREFIX)


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    venv = os.environ.get(SDK_VENV)
    python = Path(venv or "", "bin", "python")
    if not venv or not python.is_file():
        pytest.fail(
            f"these tests need the SageMaker Python SDK's virtualenv in ${SDK_VENV} (now {venv!r}): run "
            f'export {SDK_VENV}="$(bash scripts/setup-sagemaker-sdk.sh | tail -n 1)"'
        )
    return python


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sdk-projects")
    for framework, (model_format, options) in IMAGES.items():
        init_and_build(root, f"{IMAGE_PREFIX}{framework}", framework, model_format, *options)
    return {framework: f"{IMAGE_PREFIX}{framework}:latest" for framework in IMAGES}


def remove_containers(image: str) -> None:
    """The containers local mode made of IMAGE: `docker-compose up` leaves them behind, stopped or not."""
    for container in docker("ps", "--all", "--quiet", "--filter", f"ancestor={image}", check=False).split():
        docker("rm", "--force", container, check=False)


def run_sdk(python: Path, workdir: Path, jobs: list[dict]) -> dict:
    """DRIVER's result for JOBS: one SDK process with its own HOME (config files), region and dummy keys."""
    home = workdir / "home"
    (home / ".config" / "sagemaker").mkdir(parents=True)
    user_config = home / ".config" / "sagemaker" / "config.yaml"
    user_config.write_text(TELEMETRY_OPT_OUT)
    (home / ".sagemaker").mkdir()
    (workdir / "containers").mkdir()
    # Local mode's own settings: a free port instead of 8080, its scratch directories under this test's.
    (home / ".sagemaker" / "config.yaml").write_text(
        f"local:\n  serving_port: {free_port()}\n  container_root: {workdir / 'containers'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "MODELCRATE_"))}
    env.update(
        PATH=os.pathsep.join([str(COMPOSE_WRAPPER_DIR), str(python.parent), os.environ["PATH"]]),
        HOME=str(home),
        SAGEMAKER_USER_CONFIG_OVERRIDE=str(user_config),
        SAGEMAKER_SUPPRESS_V2_WARNING="1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="modelcrate-local-mode",
        AWS_SECRET_ACCESS_KEY="modelcrate-local-mode",
    )
    spec, result = workdir / "spec.json", workdir / "result.json"
    spec.write_text(json.dumps({"jobs": jobs}))
    try:
        run = subprocess.run(
            [str(python), str(DRIVER), str(spec), str(result)], env=env, capture_output=True, text=True,
            timeout=DRIVER_TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        for image in {job["image"] for job in jobs}:
            remove_containers(image)
    assert run.returncode == 0 and result.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    outcome = json.loads(result.read_text())
    outcome["log"] = run.stdout[-4000:] + run.stderr[-4000:]
    return outcome


def job_result(outcome: dict, index: int) -> dict:
    """Job INDEX's result, once the SDK reached nothing outside loopback and the job did not raise."""
    assert outcome["refused"] == [], outcome["refused"]
    job = outcome["jobs"][index]
    assert "error" not in job, job.get("error", "") + outcome["log"]
    return job


def root_only_archive(model_dir: Path, archive: Path) -> None:
    """model.tar.gz of MODEL_DIR as SageMaker mounts a model: root-owned, directories 0700 and files 0600."""

    def restricted(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o700 if info.isdir() else 0o600
        return info

    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name, filter=restricted)


def in_process(model_dir: Path, body: str, accept: str) -> bytes:
    service = InferenceService.load(ServingConfig.from_env({"SM_MODEL_DIR": str(model_dir)}))
    answer, _ = service.invoke(body.encode(), "text/csv", accept, None)
    return answer


def in_process_execution_parameters(model_dir: Path) -> dict:
    return ServingConfig.from_env({"SM_MODEL_DIR": str(model_dir)}).execution_parameters


def csv_rows(rows: list[list[float]]) -> str:
    return "".join(",".join(map(repr, row)) + "\n" for row in rows)


@pytest.fixture(scope="module", params=sorted(IMAGES))
def served(request, images, sdk_python, tmp_path_factory) -> dict:
    """One SDK run against the framework's image: deploy + predict, then its TRANSFORMS."""
    framework = request.param
    root = tmp_path_factory.mktemp(f"sdk-{framework}")
    model_dir = root / "model-source"
    create_sample_model(framework, IMAGES[framework][0], TASK, model_dir)
    (root / "model").mkdir(mode=0o700)
    root_only_archive(model_dir, root / "model" / "model.tar.gz")
    features = abalone_dataset(TASK).x_test.tolist()
    (root / "input").mkdir()
    files = {"a.csv": csv_rows(features[:70]), "b.csv": csv_rows(features[70:150])}
    for name, text in files.items():
        (root / "input" / name).write_text(text)
    common = {"image": images[framework], "model_data": f"file://{root / 'model' / 'model.tar.gz'}"}
    jobs = [{"kind": "deploy", **common, "rows": features[:25]}]
    for strategy, assemble in TRANSFORMS[framework]:
        output = str(root / f"out-{strategy}-{assemble}")
        jobs.append({**common, "kind": "transform", "input": str(root / "input"), "output": output,
                     "strategy": strategy, "assemble_with": assemble})  # fmt: skip
    outcome = run_sdk(sdk_python, root / "sdk", jobs)
    return {"framework": framework, "root": root, "model_dir": model_dir, "files": files, "outcome": outcome}


def transform_index(served: dict, strategy: str | None, assemble: str | None) -> int:
    """The index in SERVED's outcome of its transform with STRATEGY and ASSEMBLE (the deploy is job 0)."""
    return 1 + TRANSFORMS[served["framework"]].index((strategy, assemble))


def test_deployed_model_answers_csv_and_json_as_in_process(served):
    result = job_result(served["outcome"], 0)
    csv_answer = in_process(served["model_dir"], result["csv"]["body"], "text/csv").decode()
    assert result["csv"]["answer"] == list(csv.reader(csv_answer.splitlines()))
    # The JSON serializer's body is a JSON document: the same rows, so the same predictions.
    service = InferenceService.load(ServingConfig.from_env({"SM_MODEL_DIR": str(served["model_dir"])}))
    json_answer, _ = service.invoke(result["json"]["body"].encode(), "application/json", "application/json", None)
    assert result["json"]["answer"] == json.loads(json_answer)
    assert len(result["csv"]["answer"]) == 25


def test_batch_transform_writes_one_line_per_record(served):
    """Our CSV answers end every record, the last one too, with a newline, as AWS's own containers do in batch
    mode; the SDK assembles them as they come (assemble_with=None, its default): one line per record. Checked for
    each strategy the framework's transforms name (a loop, not a parameter: pytest would order a parameter
    shared with `served` so that one framework's SDK run is made twice)."""
    framework = served["framework"]
    strategies = [strategy for strategy, assemble in TRANSFORMS[framework] if strategy and assemble is None]
    assert strategies, f"no transform with a strategy and assemble_with=None for {framework}"
    for strategy in strategies:
        result = job_result(served["outcome"], transform_index(served, strategy, None))
        assert result["batch_strategy"] == strategy
        out = served["root"] / f"out-{strategy}-None"
        assert sorted(p.name for p in out.iterdir()) == ["a.csv.out", "b.csv.out"]
        for name, text in served["files"].items():
            expected = in_process(served["model_dir"], text, "text/csv")
            assert (out / f"{name}.out").read_bytes() == expected, (strategy, name)
            assert len(expected.splitlines()) == len(text.splitlines())


@pytest.mark.parametrize("served", ["sklearn"], indirect=True)
def test_with_no_strategy_the_sdk_asks_the_container_and_refuses_the_documented_spelling(served):
    """With no strategy given the SDK reads /execution-parameters. We answer BatchStrategy as SageMaker's developer
    guide documents it for the service (MULTI_RECORD, spec section 6); local mode knows only the API spelling
    (MultiRecord) and stops. Answering the API spelling instead would risk the real service for the sake of the
    SDK's local mode, so the README tells local-mode users to pass strategy=; this pins both halves."""
    outcome = served["outcome"]
    assert outcome["refused"] == [], outcome["refused"]
    job = outcome["jobs"][transform_index(served, None, None)]
    assert "Invalid Batch Strategy" in job.get("error", ""), job
    answer = in_process_execution_parameters(served["model_dir"])
    assert answer["BatchStrategy"] == "MULTI_RECORD"


@pytest.mark.parametrize("served", ["sklearn"], indirect=True)
def test_assemble_with_line_adds_a_newline_after_each_answer_in_local_mode(served):
    """Local mode writes a newline after every response whatever it ends with (`modelcrate transform` adds one
    only where it is missing): with SingleRecord each record's line is then followed by an empty one. The
    README says so; assemble_with=None gives one line per record."""
    job_result(served["outcome"], transform_index(served, "SingleRecord", "Line"))
    out = served["root"] / "out-SingleRecord-Line"
    for name, text in served["files"].items():
        lines = in_process(served["model_dir"], text, "text/csv").splitlines(keepends=True)
        assert (out / f"{name}.out").read_bytes() == b"".join(line + b"\n" for line in lines)


def test_estimator_fit_writes_a_model_the_same_image_serves(images, sdk_python, tmp_path):
    data = modelcrate("sample-data", "--task", TASK, "--output", "data", cwd=tmp_path)
    assert data.returncode == 0, data.stderr
    rows = abalone_dataset(TASK).x_test[:25].tolist()
    job = {
        "kind": "fit",
        "image": images["xgboost"],
        "channels": {"train": str(tmp_path / "data" / "train"), "validation": str(tmp_path / "data" / "validation")},
        "output": str(tmp_path / "trained"),
        "hyperparameters": HYPERPARAMETERS,
        "rows": rows,
    }
    result = job_result(run_sdk(sdk_python, tmp_path / "sdk", [job]), 0)
    archive = tmp_path / "trained" / "model.tar.gz"
    assert result["model_data"] == f"file://{archive}"
    with unpacked_model(archive) as model_dir:
        expected = in_process(model_dir, result["csv"]["body"], "text/csv").decode()
    assert result["csv"]["answer"] == list(csv.reader(expected.splitlines()))
