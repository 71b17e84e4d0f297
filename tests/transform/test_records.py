"""Splitting objects into records and packing records into requests, without a server."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcrate.transform.job import TransformJob
from modelcrate.transform.records import MIB, RECORDIO_MAGIC, Processor, RecordError, split_records


def job(split="Line", content_type="text/csv", accept="text/csv", assemble="None", **processing) -> TransformJob:
    return TransformJob.parse(
        {
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3Uri": "in/"}},
                "ContentType": content_type,
                "SplitType": split,
            },
            "TransformOutput": {"S3OutputPath": "out/", "Accept": accept, "AssembleWith": assemble},
            "DataProcessing": processing,
        }
    )


def recordio(payloads: list[bytes]) -> bytes:
    return b"".join(struct.pack("<II", RECORDIO_MAGIC, len(p)) + p + b"\0" * (-len(p) % 4) for p in payloads)


def tfrecord(payloads: list[bytes]) -> bytes:
    # the CRC fields are carried, not checked: the model reading the records owns their integrity
    return b"".join(struct.pack("<Q", len(p)) + b"\0" * 4 + p + b"\0" * 4 for p in payloads)


def test_line_records_skip_blank_lines_and_carriage_returns():
    assert split_records(b"a,1\r\n\nb,2\n  \nc,3", "Line") == [b"a,1", b"b,2", b"c,3"]


def test_recordio_and_tfrecord_records_keep_their_framing():
    payloads = [b"x", b"hello", b"", b"abcd" * 3]
    framed = recordio(payloads)
    assert b"".join(split_records(framed, "RecordIO")) == framed
    assert len(split_records(framed, "RecordIO")) == 4
    framed = tfrecord(payloads)
    assert [r[12:-4] for r in split_records(framed, "TFRecord")] == payloads


@pytest.mark.parametrize(
    ("split", "data", "message"),
    [
        ("RecordIO", b"not recordio at all", "no record magic at offset 0"),
        ("RecordIO", recordio([b"abcdef"])[:-3], "runs past the end"),
        ("TFRecord", tfrecord([b"abc"])[:-2], "runs past the end"),
    ],
)
def test_broken_framing_is_reported_with_its_offset(split, data, message):
    with pytest.raises(RecordError, match=message):
        split_records(data, split)


def test_split_none_sends_the_whole_object_as_one_record():
    processor = Processor(job(split="None"), "MultiRecord", 6)
    batches = list(processor.batches(b"a,1\nb,2\n"))
    assert [(b.body, b.count) for b in batches] == [(b"a,1\nb,2\n", 1)]


def test_single_record_sends_one_record_per_request():
    processor = Processor(job(), "SingleRecord", 6)
    assert [b.body for b in processor.batches(b"1,2\n3,4\n5,6")] == [b"1,2\n", b"3,4\n", b"5,6\n"]


lines = st.lists(
    st.binary(min_size=1, max_size=300).map(lambda b: b.replace(b"\n", b"x").replace(b"\r", b"y")), min_size=1
)


@settings(max_examples=60, deadline=None)
@given(records=lines, limit_kb=st.integers(1, 4), messy=st.booleans())
def test_packing_never_splits_a_record_nor_exceeds_the_limit(records, limit_kb, messy):
    """The fast path (clean lines) and the record-by-record path (blank lines) pack the same way."""
    records = [r for r in records if r.strip()] or [b"1"]
    data = (b"\n\n" if messy else b"\n").join(records) + b"\n"
    processor = Processor(job(), "MultiRecord", 1)
    processor.limit = limit_kb * 1024  # whole MB in a job; smaller here so records pack many ways
    batches = list(processor.batches(data))
    assert all(len(b.body) <= processor.limit for b in batches)
    assert b"".join(b.body for b in batches).split(b"\n")[:-1] == records
    assert [b.first for b in batches] == [1 + sum(x.count for x in batches[:i]) for i in range(len(batches))]
    assert sum(b.count for b in batches) == len(records)


def test_a_record_larger_than_the_limit_fails_with_the_reason():
    processor = Processor(job(), "MultiRecord", 1)
    data = b"1,2\n" + b"9" * (MIB + 1) + b"\n3,4\n"
    with pytest.raises(RecordError, match=r"record 2 is 1\.00 MB, more than MaxPayloadInMB=1"):
        list(processor.batches(data))


def test_batch_ends_let_an_object_be_cut_without_changing_the_requests():
    processor = Processor(job(), "MultiRecord", 1)
    processor.limit = 1000
    data = b"".join(b"%d,0.5,0.25\n" % i for i in range(2000))
    whole = [b.body for b in processor.batches(data)]
    ends = processor.batch_ends(data)
    cut = ends[len(ends) // 2]
    assert [b.body for b in processor.batches(data[:cut])] + [b.body for b in processor.batches(data[cut:])] == whole


def test_csv_join_appends_the_output_columns_and_filters_select_from_the_joined_row():
    processor = Processor(
        job(assemble="Line", InputFilter="$[1:]", JoinSource="Input", OutputFilter="$[0,-1]"), "MultiRecord", 6
    )
    batches = list(processor.batches(b"id-1,0.5,0.25\nid-2,0.75,0.5\n"))
    assert batches[0].body == b"0.5,0.25\n0.75,0.5\n"  # the input filter dropped the id column
    assert processor.output(b"10.5\n11.25\n", batches[0]) == b"id-1,10.5\nid-2,11.25\n"


def test_json_join_adds_sagemaker_output_and_wraps_non_objects():
    processor = Processor(
        job(
            content_type="application/jsonlines",
            accept="application/jsonlines",
            split="Line",
            assemble="Line",
            JoinSource="Input",
        ),
        "MultiRecord",
        6,
    )
    batches = list(processor.batches(b'{"id": 1, "features": [1, 2]}\n[3, 4]\n'))
    output = processor.output(b"5\n6\n", batches[0])
    assert output.splitlines() == [
        b'{"id": 1, "features": [1, 2], "SageMakerOutput": 5}',
        b'{"SageMakerInput": [3, 4], "SageMakerOutput": 6}',
    ]


def test_a_json_array_response_is_matched_to_its_records():
    processor = Processor(
        job(
            content_type="application/jsonlines",
            accept="application/json",
            split="Line",
            assemble="Line",
            OutputFilter="$.label",
        ),
        "MultiRecord",
        6,
    )
    batches = list(processor.batches(b"[1]\n[2]\n"))
    assert processor.output(b'{"predictions": [{"label": "a"}, {"label": "b"}]}', batches[0]) == b'"a"\n"b"\n'
    with pytest.raises(RecordError, match="answered 1 output records for 2 input records"):
        processor.output(b'{"predictions": [{"label": "a"}]}', batches[0])


def test_filters_need_csv_or_json_records():
    with pytest.raises(RecordError, match=r"JSON records; TransformInput\.ContentType is application/x-npy"):
        Processor(job(content_type="application/x-npy", InputFilter="$[1:]"), "MultiRecord", 6)
