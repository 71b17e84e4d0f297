"""Transform jobs against real images: a generated project and an image reference give the same outputs as the
model directory on this machine's runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelcrate.scaffold.sample_models import read_abalone
from tests.e2e.conftest import init_and_build, modelcrate

IMAGE = IMAGE_PREFIX = "e2e-transform"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return init_and_build(tmp_path_factory.mktemp("transform-project"), IMAGE, "xgboost", "json")


def test_project_image_and_model_directory_give_identical_outputs(tmp_path, project):
    rows = [",".join(["1.0" if r[0] == s else "0.0" for s in "FIM"] + r[1:8]) for r in read_abalone()[:3000]]
    (tmp_path / "in" / "nested").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_text("".join(r + "\n" for r in rows[:1000]))
    (tmp_path / "in" / "nested" / "b.csv").write_text("".join(r + "\n" for r in rows[1000:]))
    job = [
        "--input",
        str(tmp_path / "in"),
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        "text/csv",
        "--max-payload",
        "1",
    ]
    results = {}
    for kind, target in (("model", project / "model"), ("project", project), ("image", f"{IMAGE}:latest")):
        run = modelcrate("transform", str(target), *job, "--output", str(tmp_path / kind), cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        results[kind] = {p.name: p.read_bytes() for p in (tmp_path / kind).rglob("*.out")}
    assert sorted(results["model"]) == ["a.csv.out", "b.csv.out"]
    assert len(results["model"]["b.csv.out"].splitlines()) == 2000
    assert results["project"] == results["image"] == results["model"]
