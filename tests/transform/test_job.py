"""The job's shape and the /execution-parameters precedence and limits."""

import pytest

from modelcrate.transform.job import JobError, TransformJob, resolve_parameters


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
