"""The Ray engine (a local Ray cluster started by the job) gives outputs byte-identical to the local engine."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from modelcrate.transform.job import TransformJob
from modelcrate.transform.ray_engine import plan_ranges
from modelcrate.transform.records import Processor
from modelcrate.transform.storage import list_prefix
from tests.transform.conftest import transform, write_lines


def outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, abalone_rows) -> Path:
    root = tmp_path_factory.mktemp("ray-inputs")
    write_lines(root / "large.csv", abalone_rows * 20)  # about 3 MB: cut into byte ranges
    write_lines(root / "small" / "a.csv", abalone_rows[:10])
    write_lines(root / "small" / "b.csv", abalone_rows[10:700])
    return root


def test_large_files_are_cut_into_ranges_where_requests_end(inputs):
    job = TransformJob.parse(
        {
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3Uri": str(inputs)}},
                "SplitType": "Line",
                "ContentType": "text/csv",
            },
            "TransformOutput": {"S3OutputPath": "unused"},
        }
    )
    processor = Processor(job, "MultiRecord", 1)
    large = next(item for item in list_prefix(str(inputs)) if item.relative == "large.csv")
    ranges = plan_ranges(large, processor, "None", chunk=1024 * 1024)
    assert len(ranges) >= 2
    assert ranges[0][0] == 0 and ranges[-1][1] == large.size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    data = Path(large.uri).read_bytes()
    assert all(data[end - 1 : end] == b"\n" for _, end in ranges)


@pytest.mark.parametrize(
    ("accept", "extra"),
    [
        ("text/csv", ["--instance-count", "2"]),  # each Ray actor runs its own model server
        ("application/json", ["--in-process"]),  # the predictor inside the actor; JSON bodies show any re-cut
    ],
)
def test_ray_outputs_are_byte_identical_to_the_local_engine(tmp_path, sample_model, inputs, accept, extra):
    model = sample_model("xgboost", "json", "classification")
    job = [
        "--input",
        inputs,
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        accept,
        "--max-payload",
        "1",
    ]
    local = transform(model, *job, "--output", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    distributed = transform(model, *job, "--output", tmp_path / "ray", "--engine", "ray", *extra)
    assert distributed.returncode == 0, distributed.stderr
    assert distributed.summary["RecordsIn"] == local.summary["RecordsIn"] == 4177 * 20 + 700
    expected = outputs(tmp_path / "local")
    assert sorted(expected) == ["large.csv.out", "small/a.csv.out", "small/b.csv.out"]
    assert outputs(tmp_path / "ray") == expected
