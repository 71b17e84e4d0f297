"""s3:// inputs and outputs through boto3, against moto's S3 server on 127.0.0.1 (S3 is an AWS service)."""

from __future__ import annotations

import gzip

import pytest

from tests.conftest import moto_client
from tests.transform.conftest import transform


@pytest.fixture(scope="module")
def s3_env(moto_env):
    return moto_env, moto_client(moto_env, "s3")


def test_s3_prefix_in_s3_out_with_nested_keys_gzip_and_resume(s3_env, sample_model, abalone_rows, tmp_path):
    env, s3 = s3_env
    model = sample_model("xgboost", "json", "classification")
    s3.create_bucket(Bucket="data")
    rows = [r + "\n" for r in abalone_rows[:400]]
    s3.put_object(Bucket="data", Key="batch/in/part-1.csv.gz", Body=gzip.compress("".join(rows[:200]).encode()))
    s3.put_object(Bucket="data", Key="batch/in/day=2/part-2.csv.gz", Body=gzip.compress("".join(rows[200:]).encode()))
    s3.put_object(Bucket="data", Key="batch/other/ignored.csv.gz", Body=b"not under the prefix")
    args = [
        "--input",
        "s3://data/batch/in/",
        "--output",
        "s3://data/batch/out",
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--compression",
        "Gzip",
        "--accept",
        "text/csv",
    ]

    run = transform(model, *args, env=env)
    assert run.returncode == 0, run.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="batch/out/")["Contents"])
    assert keys == ["batch/out/day=2/part-2.csv.gz.out", "batch/out/part-1.csv.gz.out"]

    # The same rows from a local file give the same bytes.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-1.csv").write_text("".join(rows[:200]))
    local = transform(
        model,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--accept",
        "text/csv",
    )
    assert local.returncode == 0, local.stderr
    remote = s3.get_object(Bucket="data", Key="batch/out/part-1.csv.gz.out")["Body"].read()
    assert remote == (tmp_path / "out" / "part-1.csv.out").read_bytes()

    again = transform(model, *args, "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert {f["Status"] for f in again.summary["Files"]} == {"Skipped"}


def test_a_missing_bucket_is_a_clear_error(s3_env, sample_model):
    env, _ = s3_env
    run = transform(
        sample_model("xgboost", "json", "classification"),
        "--input",
        "s3://no-such-bucket/in/",
        "--output",
        "s3://no-such-bucket/out/",
        "--content-type",
        "text/csv",
        env=env,
    )
    assert run.returncode == 2
    assert "cannot list s3://no-such-bucket/in/" in run.stderr and "NoSuchBucket" in run.stderr
