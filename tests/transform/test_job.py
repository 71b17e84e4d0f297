"""The job's shape and the /execution-parameters precedence and limits."""

import pytest

from modelcrate.transform.engine import FileResult, JobSummary, content_type_of_inputs
from modelcrate.transform.job import JobError, TransformJob, resolve_parameters
from modelcrate.transform.storage import InputObject


def shape(**top) -> dict:
    return {
        "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://bucket/in/"}}, "ContentType": "text/csv"},
        "TransformOutput": {"S3OutputPath": "s3://bucket/out/", "Accept": "text/csv"},
        **top,
    }


def test_defaults_when_neither_job_nor_container_says():
    assert resolve_parameters(TransformJob.parse(shape()), None) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
    }


@pytest.mark.parametrize("spelling", ["MULTI_RECORD", "MultiRecord"])
def test_the_container_answer_fills_what_the_job_leaves_out_in_either_spelling(spelling):
    answer = {"MaxConcurrentTransforms": 4, "BatchStrategy": spelling, "MaxPayloadInMB": 20}
    assert resolve_parameters(TransformJob.parse(shape()), answer) == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 20,
    }


def test_the_job_wins_over_the_container():
    job = TransformJob.parse(shape(BatchStrategy="SingleRecord", MaxPayloadInMB=2))
    answer = {"MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 20}
    assert resolve_parameters(job, answer) == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 2,
    }


def test_a_wrongly_typed_answer_is_ignored():
    answer = {"MaxConcurrentTransforms": "8", "BatchStrategy": "SOMETIMES", "MaxPayloadInMB": True}
    assert resolve_parameters(TransformJob.parse(shape()), answer)["MaxPayloadInMB"] == 6


def test_concurrency_times_payload_over_100_is_refused():
    job = TransformJob.parse(shape(MaxConcurrentTransforms=5))
    with pytest.raises(JobError, match=r"MaxConcurrentTransforms \(5\) x MaxPayloadInMB \(30\) = 150 exceeds 100"):
        resolve_parameters(job, {"MaxPayloadInMB": 30})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MaxPayloadInMB": 101}, "MaxPayloadInMB: Input should be less than or equal to 100"),
        ({"BatchStrategy": "Mini"}, "BatchStrategy: Input should be 'MultiRecord' or 'SingleRecord'"),
        ({"DataProcessing": {"InputFilter": "$" + ".a" * 40}}, "at most 63"),
        ({"DataProcessing": {"OutputFilter": "a"}}, "not a JSONPath expression"),
        (
            {
                "DataProcessing": {"JoinSource": "Input"},
                "TransformOutput": {"S3OutputPath": "o", "Accept": "application/json"},
            },
            "JoinSource=Input needs TransformInput.ContentType",
        ),
        ({"Unknown": 1}, "Unknown: Extra inputs are not permitted"),
    ],
)
def test_an_invalid_job_names_the_field(change, message):
    with pytest.raises(JobError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TransformJob.parse(shape(**change), "job.json")


def inputs(*names: str) -> list[InputObject]:
    return [InputObject(uri=f"s3://bucket/in/{name}", relative=name, size=1) for name in names]


@pytest.mark.parametrize(
    "names,compression,content_type",
    [
        (["a.csv", "deeper/b.CSV"], "None", "text/csv"),
        (["a.json"], "None", "application/json"),
        (["a.jsonl", "b.jsonl"], "None", "application/jsonlines"),
        (["a.npy"], "None", "application/x-npy"),
        (["a.csv.gz", "b.csv.gz"], "Gzip", "text/csv"),
    ],
)
def test_the_content_type_is_read_from_the_inputs_one_extension(names, compression, content_type):
    assert content_type_of_inputs(inputs(*names), compression) == content_type


@pytest.mark.parametrize(
    "names,message",
    [
        (["a.csv", "b.json"], "the inputs' extensions are mixed (.csv, .json)"),
        (["a.parquet"], "cannot tell the content type of .parquet inputs"),
        (["a"], "cannot tell the content type of inputs without an extension"),
    ],
)
def test_mixed_or_unknown_extensions_point_at_content_type(names, message):
    with pytest.raises(JobError) as raised:
        content_type_of_inputs(inputs(*names), "None")
    assert message in str(raised.value) and "--content-type" in str(raised.value)
    assert "\n" not in str(raised.value)


def summary_of(*failures: str | None, skipped: int = 0) -> JobSummary:
    files = [FileResult(f"{n}.csv", records_in=4, failure=why) for n, why in enumerate(failures)]
    files += [FileResult(f"done-{n}.csv", skipped=True) for n in range(skipped)]
    return JobSummary("job", files, seconds=2.0)


@pytest.mark.parametrize(
    "summary,line",
    [
        (summary_of(None), "Completed 1 file, 4 records in 2.0 s (2 records/s, 0.0 MB/s)"),
        (
            summary_of(None, None, skipped=1),
            "Completed 2 files, 8 records in 2.0 s (4 records/s, 0.0 MB/s); skipped 1 file already complete",
        ),
        (
            summary_of(None, skipped=2),
            "Completed 1 file, 4 records in 2.0 s (2 records/s, 0.0 MB/s); skipped 2 files already complete",
        ),
        (summary_of("boom", None, None), "Failed 1 of 3 files; first: 0.csv: boom"),
        (summary_of("boom"), "Failed 1 of 1 file; first: 0.csv: boom"),
        (summary_of("boom", "bang"), "Failed 2 of 2 files; first: 0.csv: boom"),
    ],
)
def test_the_summary_line_reads_as_a_sentence(summary, line):
    assert summary.report_line == line
    if summary.failed:
        assert summary.failure_reason == line.replace("Failed ", "", 1).replace(";", " failed;", 1)
