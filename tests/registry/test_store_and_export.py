"""Artifacts on S3, export and push to SageMaker (moto stands in for both AWS services), and projects whose
model comes from the registry."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from modelcrate.archives import pack_directory
from modelcrate.pipeline.example import ALGORITHM, FEATURES, LABELS, train_models
from modelcrate.registry.artifacts import ArtifactCorrupted, ArtifactStore
from modelcrate.registry.db import open_engine
from modelcrate.registry.service import Registry
from tests.registry.conftest import package_request

MODELCRATE = str(Path(sys.executable).with_name("modelcrate"))


@pytest.fixture
def aws(aws_environment):
    s3 = boto3.client("s3")
    for bucket in ("artifacts", "exports"):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    return aws_environment, s3


def test_an_s3_artifact_store_checks_every_read(aws, tmp_path, model_tar):
    _, s3 = aws
    registry = Registry(open_engine(f"sqlite:///{tmp_path / 'r.db'}"), ArtifactStore("s3://artifacts/team"))
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    registry.create_model_package(package_request(model_tar))
    url = registry.describe_model_package("abalone/1")["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert url.startswith("s3://artifacts/team/sha256/")
    assert (registry.model_directory("abalone/1", tmp_path / "model") / "model.json").is_file()
    key = url[len("s3://artifacts/") :]
    data = bytearray(s3.get_object(Bucket="artifacts", Key=key)["Body"].read())
    data[100] ^= 0xFF
    s3.put_object(Bucket="artifacts", Key=key, Body=bytes(data))
    with pytest.raises(ArtifactCorrupted, match="sha256 mismatch"):
        registry.model_directory("abalone/1", tmp_path / "again")


def cli(home: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {}), "MODELCRATE_HOME": str(home), "COLUMNS": "400"}
    full.pop("MODELCRATE_DATABASE_URL", None)
    return subprocess.run([MODELCRATE, *map(str, args)], capture_output=True, text=True, env=full, timeout=300)


def test_export_and_push_only_an_approved_package(aws, tmp_path, model_dir):
    moto_env, s3 = aws
    home = tmp_path / "home"
    assert cli(home, "registry", "register", model_dir, "--group", "abalone").returncode == 0
    refused = cli(home, "registry", "export-sagemaker", "abalone/1", "--model-data-url", "s3://exports/m.tar.gz")
    assert refused.returncode == 1 and "PendingManualApproval" in refused.stderr
    approve = cli(
        home,
        "registry",
        "update-model-package",
        "--model-package-arn",
        "abalone/1",
        "--model-approval-status",
        "Approved",
        "--approval-description",
        "ok",
    )
    assert approve.returncode == 0, approve.stderr

    exported = cli(home, "registry", "export-sagemaker", "abalone/1", "--model-data-url", "s3://exports/m.tar.gz")
    assert exported.returncode == 0, exported.stderr
    request = json.loads(exported.stdout)
    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("CreateModelPackageInput")
    assert not ParamValidator().validate(request, shape).has_errors()
    assert request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == "s3://exports/m.tar.gz"

    pushed = cli(home, "registry", "push", "abalone/1", "--s3-prefix", "s3://exports/registry", env=moto_env)
    assert pushed.returncode == 0, pushed.stderr
    answer = json.loads(pushed.stdout)
    bucket, _, key = answer["Containers"][0]["ModelDataUrl"][len("s3://") :].partition("/")
    uploaded = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    digest = json.loads(cli(home, "registry", "describe-model-package", "--model-package-name", "abalone/1").stdout)
    assert hashlib.sha256(uploaded).hexdigest() == digest["ModelDataDigests"][0]
    described = boto3.client("sagemaker").describe_model_package(ModelPackageName=answer["ModelPackageArn"])
    assert described["ModelApprovalStatus"] == "Approved"


def test_a_registry_project_resolves_its_model_when_built(tmp_path, model_dir):
    home = tmp_path / "home"
    assert cli(home, "registry", "register", model_dir, "--group", "abalone").returncode == 0
    assert (
        cli(home, "registry", "register", model_dir, "--group", "abalone", "--approval-status", "Approved").returncode
        == 0
    )
    created = cli(
        home,
        "init",
        "from-registry",
        "--framework",
        "xgboost",
        "--model-format",
        "json",
        "--model-source",
        "registry",
        "--registry-package",
        "abalone",
        "--optimize",  # the model arrives at build, and is compiled then
        "--yes",
        "--destination",
        tmp_path / "p",
    )
    assert created.returncode == 0, created.stderr
    project = next(p for p in (tmp_path / "p").rglob("modelcrate-project.json")).parent
    built = cli(home, "build", project, "--context-only")
    assert built.returncode == 0, built.stderr
    assert "model-package/abalone/2" in built.stderr  # the latest Approved version
    assert (project / "model" / "model.json").read_bytes() == (model_dir / "model.json").read_bytes()
    assert "model: compiled to ONNX and verified" in built.stderr
    assert json.loads((project / "model" / "modelcrate.json").read_text())["compiled"]["verified"]

    pinned = cli(
        home,
        "init",
        "pinned",
        "--framework",
        "xgboost",
        "--model-format",
        "json",
        "--model-source",
        "registry",
        "--registry-package",
        "abalone/1",
        "--yes",
        "--destination",
        tmp_path / "q",
    )
    assert pinned.returncode == 0, pinned.stderr
    project = next(p for p in (tmp_path / "q").rglob("modelcrate-project.json")).parent
    refused = cli(home, "build", project, "--context-only")
    assert refused.returncode == 1
    assert "PendingManualApproval: only an Approved package may be exported or deployed" in refused.stderr


@pytest.fixture(scope="module")
def autopilot_models(tmp_path_factory) -> Path:
    """The Autopilot-style example's three models (features, algorithm, labels): three different artifacts."""
    models = tmp_path_factory.mktemp("autopilot") / "models"
    train_models(models)
    return models


def register_autopilot_package(home: Path, models: Path, scratch: Path) -> None:
    containers = []
    for name in (FEATURES, ALGORITHM, LABELS):
        (scratch / name).mkdir()
        archive = pack_directory(models / name, scratch / name)
        image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:1"
        containers.append({"ContainerHostname": name, "Image": image, "ModelDataUrl": str(archive)})
    request = package_request(scratch / "unused", group="autopilot", ModelApprovalStatus="Approved")
    request["InferenceSpecification"]["Containers"] = containers
    (scratch / "request.json").write_text(json.dumps(request))
    assert (
        cli(home, "registry", "create-model-package-group", "--model-package-group-name", "autopilot").returncode == 0
    )
    created = cli(home, "registry", "create-model-package", "--cli-input-json", f"file://{scratch / 'request.json'}")
    assert created.returncode == 0, created.stderr


def test_push_gives_every_container_of_a_package_its_own_model(aws, tmp_path, autopilot_models):
    moto_env, s3 = aws
    home = tmp_path / "home"
    register_autopilot_package(home, autopilot_models, tmp_path)
    registered = json.loads(
        cli(home, "registry", "describe-model-package", "--model-package-name", "autopilot/1").stdout
    )
    digests = registered["ModelDataDigests"]
    assert len(set(digests)) == 3

    pushed = cli(home, "registry", "push", "autopilot/1", "--s3-prefix", "s3://exports/registry", env=moto_env)
    assert pushed.returncode == 0, pushed.stderr
    answer = json.loads(pushed.stdout)
    urls = [container["ModelDataUrl"] for container in answer["Containers"]]
    assert len(set(urls)) == 3
    for url, digest, container in zip(urls, digests, answer["Containers"], strict=True):
        bucket, _, key = url[len("s3://") :].partition("/")
        assert hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest() == digest
        assert container["Sha256"] == digest
    in_sagemaker = boto3.client("sagemaker").describe_model_package(ModelPackageName=answer["ModelPackageArn"])
    landed = in_sagemaker["InferenceSpecification"]["Containers"]
    assert [(c["ContainerHostname"], c["ModelDataUrl"]) for c in landed] == list(
        zip((FEATURES, ALGORITHM, LABELS), urls, strict=True)
    )


def test_export_takes_a_model_data_url_per_container(aws, tmp_path, autopilot_models):
    home = tmp_path / "home"
    register_autopilot_package(home, autopilot_models, tmp_path)

    one_for_all = cli(home, "registry", "export-sagemaker", "autopilot/1", "--model-data-url", "s3://exports/m.tar.gz")
    assert one_for_all.returncode == 1
    refusal = one_for_all.stderr.strip()
    assert len(refusal.splitlines()) == 1
    assert "different models" in refusal and "features=s3://" in refusal

    exported = cli(
        home,
        "registry",
        "export-sagemaker",
        "autopilot/1",
        *("--model-data-url", "features=s3://exports/f.tar.gz"),
        *("--model-data-url", "1=s3://exports/a.tar.gz"),
        *("--model-data-url", "labels=s3://exports/l.tar.gz"),
    )
    assert exported.returncode == 0, exported.stderr
    request = json.loads(exported.stdout)
    containers = request["InferenceSpecification"]["Containers"]
    assert [c["ModelDataUrl"] for c in containers] == [
        "s3://exports/f.tar.gz",
        "s3://exports/a.tar.gz",
        "s3://exports/l.tar.gz",
    ]
    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("CreateModelPackageInput")
    assert not ParamValidator().validate(request, shape).has_errors()

    unknown = cli(
        home, "registry", "export-sagemaker", "autopilot/1", "--model-data-url", "scaler=s3://exports/s.tar.gz"
    )
    assert (
        unknown.returncode == 1
        and "no container scaler" in unknown.stderr
        and "features, algorithm, labels" in unknown.stderr
    )


def registry_project(home: Path, tmp_path: Path, package: str) -> Path:
    """An XGBoost project whose model is the registry package ``package``, resolved when built."""
    created = cli(
        home,
        "init",
        "from-registry",
        *("--framework", "xgboost", "--model-format", "json"),
        *("--model-source", "registry", "--registry-package", package),
        *("--yes", "--destination", tmp_path / "project"),
    )
    assert created.returncode == 0, created.stderr
    return tmp_path / "project"


def test_a_registry_project_refuses_a_package_of_another_framework(tmp_path, sample_model):
    home = tmp_path / "home"
    sklearn_model = sample_model("sklearn", "joblib", "regression")
    registered = cli(home, "registry", "register", sklearn_model, "--group", "shells", "--approval-status", "Approved")
    assert registered.returncode == 0, registered.stderr
    project = registry_project(home, tmp_path, "shells")

    refused = cli(home, "build", project, "--context-only")

    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (
        "model-package/shells/1 is a SKLEARN model" in refused.stderr
        and "this project serves xgboost" in refused.stderr
    )
    assert not (project / "model").exists()


def test_a_registry_project_pins_the_framework_version_of_its_package(tmp_path, model_tar):
    home = tmp_path / "home"
    request = package_request(model_tar, group="pinned", ModelApprovalStatus="Approved")
    request["InferenceSpecification"]["Containers"][0]["FrameworkVersion"] = "2.1.1"
    assert cli(home, "registry", "create-model-package-group", "--model-package-group-name", "pinned").returncode == 0
    created = cli(home, "registry", "create-model-package", "--cli-input-json", json.dumps(request))
    assert created.returncode == 0, created.stderr
    project = registry_project(home, tmp_path, "pinned")
    assert "xgboost-cpu==2.1.3" in (project / "requirements.txt").read_text()  # nothing resolved yet: the default

    built = cli(home, "build", project, "--context-only")

    assert built.returncode == 0, built.stderr
    requirements = (project / "requirements.txt").read_text()
    assert "xgboost-cpu==2.1.1" in requirements and "2.1.3" not in requirements
    assert "model-package/pinned/1" in requirements
