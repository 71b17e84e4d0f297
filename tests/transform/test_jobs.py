"""Transform jobs against real model servers: every point of the contract's batch transform section."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from modelcrate.predictors import load_predictor
from tests.transform.conftest import transform, write_lines
from tests.transform.test_records import recordio, tfrecord

CSV_LINE = ["--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv"]


@pytest.fixture(scope="module")
def classifier(sample_model) -> Path:
    return sample_model("xgboost", "json", "classification")


def expected_labels(model: Path, rows: list[str]) -> list[str]:
    predictor = load_predictor(model)
    return [str(v) for v in predictor.predict(np.array([[float(v) for v in r.split(",")] for r in rows])).values]


def echo_lines(path: Path) -> list[tuple[int, int, int, str]]:
    """(request bytes, records in the request, server, record) per output line of the echo container."""
    out = []
    for line in path.read_text().splitlines():
        size, count, server, record = line.split(" ", 3)
        out.append((int(size), int(count), int(server), record))
    return out


def test_line_split_multi_record_keeps_order_and_mirrors_nested_prefixes(tmp_path, classifier, abalone_rows):
    write_lines(tmp_path / "in" / "a.csv", abalone_rows[:1500])
    write_lines(tmp_path / "in" / "deeper" / "nested" / "b.csv", abalone_rows[1500:])
    run = transform(classifier, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE)
    assert run.returncode == 0, run.stderr
    assert run.summary["TransformJobStatus"] == "Completed"
    assert run.summary["RecordsIn"] == len(abalone_rows)
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == [
        "a.csv.out",
        "deeper",
        "deeper/nested",
        "deeper/nested/b.csv.out",
    ]
    assert (tmp_path / "out" / "a.csv.out").read_text().splitlines() == expected_labels(classifier, abalone_rows[:1500])
    assert (tmp_path / "out/deeper/nested/b.csv.out").read_text().splitlines() == expected_labels(
        classifier, abalone_rows[1500:]
    )


def test_assemble_with_line_puts_a_newline_after_each_response(tmp_path, classifier, abalone_rows):
    write_lines(tmp_path / "in" / "a.csv", abalone_rows[:20])
    common = [
        "--input",
        tmp_path / "in",
        "--content-type",
        "text/csv",
        "--split-type",
        "Line",
        "--strategy",
        "SingleRecord",
        "--accept",
        "application/json",
    ]
    assert transform(classifier, *common, "--output", tmp_path / "none").returncode == 0
    assert transform(classifier, *common, "--output", tmp_path / "line", "--assemble-with", "Line").returncode == 0
    expected = [json.dumps({"predictions": [label]}) for label in expected_labels(classifier, abalone_rows[:20])]
    assert (tmp_path / "none" / "a.csv.out").read_text() == "".join(expected)
    assert (tmp_path / "line" / "a.csv.out").read_text() == "".join(e + "\n" for e in expected)


def test_single_record_sends_each_record_alone(tmp_path, echo_model, abalone_rows):
    write_lines(tmp_path / "in" / "a.csv", abalone_rows[:50])
    run = transform(
        echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE, "--strategy", "SingleRecord"
    )
    assert run.returncode == 0, run.stderr
    lines = echo_lines(tmp_path / "out" / "a.csv.out")
    assert [count for _, count, _, _ in lines] == [1] * 50
    assert [record for *_, record in lines] == abalone_rows[:50]


def test_multi_record_packs_whole_records_up_to_the_payload_limit(tmp_path, echo_model):
    rows = [f"{i}," + "7" * (i % 997) for i in range(6000)]  # about 3 MB of records of many sizes
    write_lines(tmp_path / "in" / "big.csv", rows)
    run = transform(
        echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE, "--max-payload", "1"
    )
    assert run.returncode == 0, run.stderr
    lines = echo_lines(tmp_path / "out" / "big.csv.out")
    assert [record for *_, record in lines] == rows  # no record split or lost, in input order
    sizes = {size for size, *_ in lines}
    assert len(sizes) >= 3 and max(sizes) <= 1024 * 1024
    assert max(count for _, count, _, _ in lines) > 100


def test_a_record_larger_than_the_limit_fails_its_file_only(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "a.csv", ["1,2", "3,4"])
    write_lines(tmp_path / "in" / "b.csv", ["1,2", "9" * (1024 * 1024 + 10), "3,4"])
    run = transform(
        echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE, "--max-payload", "1"
    )
    assert run.returncode == 1
    assert run.summary["TransformJobStatus"] == "Failed"
    assert "b.csv: record 2 is 1.00 MB, more than MaxPayloadInMB=1" in run.summary["FailureReason"]
    assert (tmp_path / "out" / "a.csv.out").is_file()
    assert not (tmp_path / "out" / "b.csv.out").exists()


def test_one_bad_record_means_no_out_for_its_file_and_the_job_fails(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "1.csv", ["1,1", "2,2"])
    write_lines(tmp_path / "in" / "2.csv", ["1,1", "BAD,2", "3,3"])
    write_lines(tmp_path / "in" / "3.csv", ["1,1"])
    run = transform(
        echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE, "--strategy", "SingleRecord"
    )
    assert run.returncode == 1
    files = {f["File"]: f for f in run.summary["Files"]}
    assert files["2.csv"]["Status"] == "Failed"
    assert files["2.csv"]["FailureReason"] == "record 2: the container answered 400: this record is BAD"
    assert {files["1.csv"]["Status"], files["3.csv"]["Status"]} == {"Completed"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1.csv.out", "3.csv.out"]
    assert "Failed 1 of 3 files; first: 2.csv: record 2" in run.stderr


@pytest.mark.parametrize(("split", "frame"), [("RecordIO", recordio), ("TFRecord", tfrecord)])
def test_binary_record_formats_are_split_on_record_boundaries(tmp_path, echo_model, split, frame):
    payloads = [f"record-{i}".encode() * (1 + i % 5) for i in range(40)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.bin").write_bytes(frame(payloads))
    run = transform(
        echo_model,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--split-type",
        split,
        "--content-type",
        "application/octet-stream",
        "--env",
        f"ECHO_SPLIT={split}",
    )
    assert run.returncode == 0, run.stderr
    assert [record.encode() for *_, record in echo_lines(tmp_path / "out" / "data.bin.out")] == payloads


def test_split_none_sends_each_object_whole_and_never_combines_files(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "a.csv", ["1,1", "2,2"])
    write_lines(tmp_path / "in" / "b.csv", ["3,3"])
    run = transform(
        echo_model,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--content-type",
        "text/csv",
        "--env",
        "ECHO_SPLIT=None",
    )
    assert run.returncode == 0, run.stderr
    size, count, _, record = (tmp_path / "out" / "a.csv.out").read_text().split(" ", 3)
    assert (size, count, record) == ("8", "1", "1,1\n2,2\n\n")  # the whole object in one request
    assert (tmp_path / "out" / "b.csv.out").read_text().split(" ")[:2] == ["4", "1"]


def test_gzip_and_manifest_inputs_give_the_same_outputs_as_plain_files(tmp_path, classifier, abalone_rows):
    write_lines(tmp_path / "plain" / "x" / "a.csv", abalone_rows[:300])
    write_lines(tmp_path / "plain" / "b.csv", abalone_rows[300:600])
    for path in (tmp_path / "plain").rglob("*.csv"):
        target = tmp_path / "gz" / path.relative_to(tmp_path / "plain")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(path.read_bytes()))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([{"prefix": f"{(tmp_path / 'plain').as_uri()}/"}, "x/a.csv", "b.csv"]))
    assert transform(classifier, "--input", tmp_path / "plain", "--output", tmp_path / "o1", *CSV_LINE).returncode == 0
    gz = transform(
        classifier, "--input", tmp_path / "gz", "--output", tmp_path / "o2", *CSV_LINE, "--compression", "Gzip"
    )
    assert gz.returncode == 0, gz.stderr
    listed = transform(
        classifier, "--input", manifest.as_uri(), "--data-type", "ManifestFile", "--output", tmp_path / "o3", *CSV_LINE
    )
    assert listed.returncode == 0, listed.stderr
    for name in ("x/a.csv.out", "b.csv.out"):
        plain = (tmp_path / "o1" / name).read_bytes()
        assert plain and (tmp_path / "o2" / name).read_bytes() == plain == (tmp_path / "o3" / name).read_bytes()


def test_csv_input_filter_join_and_output_filter(tmp_path, classifier, abalone_rows):
    rows = [f"id-{i},{row}" for i, row in enumerate(abalone_rows[:200])]
    write_lines(tmp_path / "in" / "a.csv", rows)
    run = transform(
        classifier,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        *CSV_LINE,
        "--assemble-with",
        "Line",
        "--input-filter",
        "$[1:]",
        "--join-source",
        "Input",
        "--output-filter",
        "$[0,-1]",
    )
    assert run.returncode == 0, run.stderr
    labels = expected_labels(classifier, abalone_rows[:200])
    assert (tmp_path / "out" / "a.csv.out").read_text().splitlines() == [
        f"id-{i},{lab}" for i, lab in enumerate(labels)
    ]


def test_json_lines_input_filter_join_and_output_filter(tmp_path, classifier, abalone_rows):
    records = [{"id": i, "features": [float(v) for v in row.split(",")]} for i, row in enumerate(abalone_rows[:100])]
    write_lines(tmp_path / "in" / "a.jsonl", [json.dumps(r) for r in records])
    jsonl = "application/jsonlines"
    run = transform(
        classifier,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        "--content-type",
        jsonl,
        "--accept",
        jsonl,
        "--split-type",
        "Line",
        "--assemble-with",
        "Line",
        "--input-filter",
        "$.features",
        "--join-source",
        "Input",
        "--output-filter",
        "$['id','SageMakerOutput']",
    )
    assert run.returncode == 0, run.stderr
    labels = expected_labels(classifier, abalone_rows[:100])
    assert [json.loads(line) for line in (tmp_path / "out" / "a.jsonl.out").read_text().splitlines()] == [
        {"id": i, "SageMakerOutput": label} for i, label in enumerate(labels)
    ]


def test_execution_parameters_job_then_container_then_defaults(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "a.csv", ["1,1"])
    args = ["--input", tmp_path / "in", *CSV_LINE]
    from_container = transform(
        echo_model,
        *args,
        "--output",
        tmp_path / "o1",
        "--env",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=3",
        "--env",
        "SAGEMAKER_BATCH_STRATEGY=SINGLE_RECORD",
    )
    assert from_container.summary["Parameters"] == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 6,
    }
    from_job = transform(
        echo_model,
        *args,
        "--output",
        tmp_path / "o2",
        "--max-concurrent",
        "2",
        "--strategy",
        "MultiRecord",
        "--max-payload",
        "40",
        "--env",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=3",
    )
    assert from_job.summary["Parameters"] == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 40,
    }
    too_much = transform(echo_model, *args, "--output", tmp_path / "o3", "--max-concurrent", "3", "--max-payload", "40")
    assert too_much.returncode == 2
    assert "MaxConcurrentTransforms (3) x MaxPayloadInMB (40) = 120 exceeds 100" in too_much.stderr


def test_instance_count_runs_that_many_servers(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "a.csv", [f"{i},1" for i in range(200)])
    run = transform(
        echo_model,
        "--input",
        tmp_path / "in",
        "--output",
        tmp_path / "out",
        *CSV_LINE,
        "--strategy",
        "SingleRecord",
        "--instance-count",
        "2",
        "--max-concurrent",
        "2",
    )
    assert run.returncode == 0, run.stderr
    lines = echo_lines(tmp_path / "out" / "a.csv.out")
    assert len({server for _, _, server, _ in lines}) == 2
    assert [record for *_, record in lines] == [f"{i},1" for i in range(200)]


def test_a_bad_job_file_is_explained(tmp_path, echo_model):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"TransformInput": {"SplitType": "Lines"}}))
    run = transform(echo_model, "--job", job)
    assert run.returncode == 2
    assert "is not a valid transform job" in run.stderr
    assert "TransformInput.SplitType: Input should be 'None', 'Line', 'RecordIO' or 'TFRecord'" in run.stderr
    assert "TransformOutput: Field required" in run.stderr


def test_a_job_file_in_the_create_transform_job_shape(tmp_path, classifier, abalone_rows):
    write_lines(tmp_path / "in" / "a.csv", abalone_rows[:10])
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "TransformJobName": "abalone-sex",
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(tmp_path / "in")}},
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                    "CompressionType": "None",
                },
                "TransformOutput": {
                    "S3OutputPath": str(tmp_path / "out"),
                    "Accept": "text/csv",
                    "AssembleWith": "Line",
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            }
        )
    )
    run = transform(classifier, "--job", job)
    assert run.returncode == 0, run.stderr
    assert run.summary["TransformJobName"] == "abalone-sex"
    assert (tmp_path / "out" / "a.csv.out").read_text().splitlines() == expected_labels(classifier, abalone_rows[:10])


def test_struct_helpers_frame_like_the_formats():
    assert struct.unpack_from("<I", recordio([b"abc"]))[0] == 0xCED7230A


def test_max_payload_zero_streams_each_whole_object_chunked(tmp_path, echo_model):
    rows = [f"{i},{'5' * 100}" for i in range(80_000)]  # 8.6 MB: more than a default 6 MB request
    write_lines(tmp_path / "in" / "big.csv", rows)
    run = transform(
        echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out", *CSV_LINE, "--max-payload", "0"
    )
    assert run.returncode == 0, run.stderr
    lines = echo_lines(tmp_path / "out" / "big.csv.out")
    assert {(size, count) for size, count, _, _ in lines} == {(len("".join(r + "\n" for r in rows)), 80_000)}
    assert [record for *_, record in lines] == rows


def test_without_content_type_the_inputs_extension_gives_it(tmp_path, classifier, abalone_rows):
    write_lines(tmp_path / "in" / "a.csv", abalone_rows[:10])
    write_lines(tmp_path / "in" / "b.csv", abalone_rows[10:20])
    common = ["--split-type", "Line", "--accept", "text/csv"]
    run = transform(classifier, "--input", tmp_path / "in", "--output", tmp_path / "out", *common)
    assert run.returncode == 0, run.stderr
    assert "content type text/csv, inferred from the input files' extension" in run.stderr
    assert "Completed 2 files, 20 records in" in run.stderr
    assert (tmp_path / "out" / "a.csv.out").read_text().splitlines() == expected_labels(classifier, abalone_rows[:10])


def test_mixed_input_extensions_without_content_type_stop_before_any_work(tmp_path, echo_model):
    write_lines(tmp_path / "in" / "a.csv", ["1,1"])
    write_lines(tmp_path / "in" / "b.json", ['{"a": 1}'])
    run = transform(echo_model, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert run.returncode == 2 and run.summary is None
    assert run.stderr.count("\n") == 1 and "give --content-type" in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()
