"""Registries on both backends: a fresh SQLite file, and a fresh database on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelcrate.archives import pack_directory
from modelcrate.registry.artifacts import ArtifactStore
from modelcrate.registry.db import open_engine
from modelcrate.registry.service import Registry
from tests.registry.databases import DATABASE_BACKENDS, fresh_database


@pytest.fixture(params=DATABASE_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database(backend, tmp_path) -> str:
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def registry(database, tmp_path) -> Registry:
    engine = open_engine(database)
    yield Registry(engine, ArtifactStore(str(tmp_path / "artifacts")), who="alice")
    engine.dispose()


@pytest.fixture(scope="session")
def model_dir(sample_model) -> Path:
    return sample_model("xgboost", "json", "classification")


@pytest.fixture(scope="session")
def model_tar(model_dir, tmp_path_factory) -> Path:
    """The sample model as the model.tar.gz a ModelDataUrl names."""
    return pack_directory(model_dir, tmp_path_factory.mktemp("model-tar"))


def package_request(model_tar: Path, group: str = "abalone", **extra) -> dict:
    return {
        "ModelPackageGroupName": group,
        "InferenceSpecification": {
            "Containers": [{"Image": "abalone:latest", "ModelDataUrl": str(model_tar), "Framework": "XGBOOST"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **extra,
    }
