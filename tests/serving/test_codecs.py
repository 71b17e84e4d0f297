"""Decoders and encoders in-process: every shape the contract accepts, every error it names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from modelcrate.predictors import Prediction
from modelcrate.serving import codecs
from modelcrate.serving.codecs import (
    KeyedRecords,
    Schema,
    decode,
    decode_keyed,
    decode_keyed_csv,
    encode,
    encode_features,
    media_type,
    negotiate,
)
from modelcrate.serving.errors import BadRequest, NotAcceptable, UnsupportedMediaType

THREE = Schema(("a", "b", "c"), 3)


def test_csv_one_row_is_one_2d_record():
    assert decode(b"1,2,3", "text/csv", THREE).tolist() == [[1.0, 2.0, 3.0]]


def test_csv_single_column_is_n_records():
    assert decode(b"1\n2\n3\n", "text/csv", Schema(None, 1)).tolist() == [[1.0], [2.0], [3.0]]


def test_csv_trailing_newline_is_irrelevant():
    assert decode(b"1,2\n3,4", "text/csv", Schema()).tolist() == decode(b"1,2\n3,4\n", "text/csv", Schema()).tolist()


def test_csv_empty_field_is_missing():
    got = decode(b"1,,3\n4,5,6\n", "text/csv", THREE)
    assert np.isnan(got[0, 1]) and got[1].tolist() == [4.0, 5.0, 6.0]


def test_csv_quoted_numbers_are_numbers():
    assert decode(b'"1","2.5",3\n', "text/csv", THREE).tolist() == [[1.0, 2.5, 3.0]]


@pytest.mark.parametrize(
    "body,message",
    [
        (b"a,b,c\n1,2,3\n", "CSV line 1, column 1: 'a' is not a number (a header row? send records only)"),
        (b"1,2,3\n4,x5,6\n", "CSV line 2, column 2: 'x5' is not a number"),
        (b"1,2,3\n4,5\n", "CSV line 2 has 2 fields but line 1 has 3"),
        (b"1,2,1_000\n", "CSV line 1, column 3: '1_000' is not a number"),
        (b"\n\n", "CSV body has no records"),
        (b'1,"2\n', "malformed CSV"),
        (b"\xff\xfe1,2", "not UTF-8 text (invalid byte at offset 0)"),
    ],
)
def test_csv_errors_name_line_and_column(body, message):
    with pytest.raises(BadRequest) as err:
        decode(body, "text/csv", THREE)
    assert message in err.value.message


def test_empty_body_and_unsupported_type():
    with pytest.raises(BadRequest, match="empty request body"):
        decode(b"", "text/csv", THREE)
    with pytest.raises(UnsupportedMediaType, match="image/png"):
        decode(b"x", "image/png", THREE)


@pytest.mark.parametrize(
    "body,expected",
    [
        ([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6]]),
        ([1, 2, 3], [[1, 2, 3]]),
        ({"instances": [[1, 2, 3]]}, [[1, 2, 3]]),
        ({"instances": [{"a": 1, "b": 2, "c": 3}, {"c": 6, "b": 5, "a": 4}]}, [[1, 2, 3], [4, 5, 6]]),
        ({"inputs": [[1, 2, 3]]}, [[1, 2, 3]]),
        ({"features": [1, 2, 3]}, [[1, 2, 3]]),
        ({"instances": [{"features": [1, 2, 3]}]}, [[1, 2, 3]]),
        ({"a": 1, "b": 2, "c": None}, [[1, 2, np.nan]]),
    ],
)
def test_json_shapes(body, expected):
    got = decode(json.dumps(body).encode(), "application/json", THREE)
    np.testing.assert_array_equal(got, np.array(expected, dtype=float))


def test_json_flat_list_is_n_records_for_a_single_feature_model():
    assert decode(b"[1, 2, 3]", "application/json", Schema(None, 1)).tolist() == [[1.0], [2.0], [3.0]]


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"instances": [1, 2', "invalid JSON: Expecting ',' delimiter at line 1, column 20"),
        (b"[]", "empty list"),
        (b'{"instances": [{"a": 1, "b": 2}]}', "missing 'c'"),
        (b'{"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}', "unknown 'd'"),
        (b"[[1, 2, 3], [1, 2]]", "JSON record 1 has 2 values but record 0 has 3"),
        (b'[[1, "x", 3]]', "JSON record 0, value 1: 'x' is not a number"),
        (b"[[1, [2], 3]]", "JSON record 0, value 1: [2] is not a number"),
        (b'"text"', "must be a list or an object"),
        (b"[" * 100000, "nested too deeply"),
    ],
)
def test_json_errors(body, message):
    with pytest.raises(BadRequest) as err:
        decode(body, "application/json", THREE)
    assert message in err.value.message


def test_json_objects_need_feature_names():
    with pytest.raises(BadRequest, match="no feature names"):
        decode(b'{"instances": [{"a": 1}]}', "application/json", Schema(None, 3))


def test_jsonlines():
    body = b'[1, 2, 3]\n{"a": 4, "b": 5, "c": 6}\n\n{"features": [7, 8, 9]}\n'
    assert decode(body, "application/jsonlines", THREE).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(BadRequest, match="line 2"):
        decode(b"[1, 2, 3]\n[1, 2\n", "application/jsonlines", THREE)


def npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_npy():
    assert decode(npy(np.arange(6).reshape(2, 3)), "application/x-npy", THREE).tolist() == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    assert decode(npy(np.arange(3.0)), "application/x-npy", THREE).tolist() == [[0, 1, 2]]
    for body, message in [
        (npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "pickles"),
        (npy(np.array(["a", "b"])), "must be numeric"),
        (npy(np.zeros((2, 2, 2))), "shape (2, 2, 2)"),
        (b"not an npy file", "not a valid NPY"),
    ]:
        with pytest.raises(BadRequest) as err:
            decode(body, "application/x-npy", THREE)
        assert message in err.value.message


def test_libsvm_reads_sparse_rows_with_missing_values():
    got = decode(b"1 0:1.5 2:3\n0 1:2\n", "text/libsvm", THREE)
    np.testing.assert_array_equal(got, [[1.5, np.nan, 3.0], [np.nan, 2.0, np.nan]])
    with pytest.raises(BadRequest, match="feature index 5"):
        decode(b"0:1 5:2\n", "text/libsvm", THREE)
    with pytest.raises(BadRequest, match="'oops' is not index:value"):
        decode(b"1 0:1 oops\n", "text/libsvm", THREE)


def test_media_type_parameters_and_aliases():
    assert media_type("Text/CSV; charset=UTF-8") == "text/csv"
    assert media_type("application/x-jsonlines") == "application/jsonlines"
    with pytest.raises(UnsupportedMediaType, match="latin-1"):
        media_type("text/csv; charset=latin-1")


@pytest.mark.parametrize(
    "accept,expected",
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("application/xml, application/jsonlines", "application/jsonlines"),
        ("text/csv;q=0.2, application/x-npy;q=0.8", "application/x-npy"),
        ("text/csv;q=0, application/*", "application/json"),
        ("text/*", "text/csv"),
    ],
)
def test_negotiate(accept, expected):
    assert negotiate(accept, "application/json") == expected


def test_negotiate_refuses_what_it_cannot_send():
    with pytest.raises(NotAcceptable, match="image/png"):
        negotiate("image/png", "application/json")


CLASSIFIED = Prediction(
    values=np.array(["dog", "cat"], dtype=object),
    probabilities=np.array([[0.2, 0.8], [0.9, 0.1]]),
    labels=["cat", "dog"],
)


def test_encode_plain_forms():
    regression = Prediction(values=np.array([1.5, 2.0]))
    assert encode(regression, "application/json") == b'{"predictions": [1.5, 2.0]}'
    assert encode(regression, "text/csv") == b"1.5\n2.0\n"
    assert encode(regression, "application/jsonlines") == b"1.5\n2.0\n"
    assert np.load(io.BytesIO(encode(regression, "application/x-npy"))).tolist() == [1.5, 2.0]
    assert encode(CLASSIFIED, "text/csv") == b"dog\ncat\n"
    assert np.load(io.BytesIO(encode(CLASSIFIED, "application/x-npy"))).tolist() == ["dog", "cat"]
    assert encode(np.array([[1, 2], [3, 4]]), "text/csv") == b"1,2\n3,4\n"


def test_encode_inference_keys_the_way_aws_containers_do():
    keys = ("predicted_label", "probability", "probabilities", "labels")
    assert encode(CLASSIFIED, "text/csv", keys) == (
        b"dog,0.8,\"[0.2, 0.8]\",\"['cat', 'dog']\"\ncat,0.1,\"[0.9, 0.1]\",\"['cat', 'dog']\"\n"
    )
    assert json.loads(encode(CLASSIFIED, "application/json", ("predicted_label", "probabilities"))) == {
        "predictions": [
            {"predicted_label": "dog", "probabilities": [0.2, 0.8]},
            {"predicted_label": "cat", "probabilities": [0.9, 0.1]},
        ]
    }
    lines = encode(CLASSIFIED, "application/jsonlines", ("predicted_label",)).decode().splitlines()
    assert [json.loads(x) for x in lines] == [{"predicted_label": "dog"}, {"predicted_label": "cat"}]
    with pytest.raises(NotAcceptable):
        encode(CLASSIFIED, "application/x-npy", keys)


def test_binary_probability_is_that_of_the_positive_class_and_multiclass_that_of_the_label():
    assert json.loads(encode(CLASSIFIED, "application/json", ("probability",)))["predictions"] == [
        {"probability": 0.8},
        {"probability": 0.1},
    ]
    multi = Prediction(np.array([2]), np.array([[0.1, 0.3, 0.6]]), [0, 1, 2])
    assert json.loads(encode(multi, "application/json", ("probability",)))["predictions"] == [{"probability": 0.6}]


def test_keyed_csv_reads_back_what_encode_writes():
    keys = ("predicted_label", "probability", "probabilities", "labels")
    rows = decode_keyed_csv(encode(CLASSIFIED, "text/csv", keys), keys)
    assert rows == [
        {"predicted_label": "dog", "probability": 0.8, "probabilities": [0.2, 0.8], "labels": ["cat", "dog"]},
        {"predicted_label": "cat", "probability": 0.1, "probabilities": [0.9, 0.1], "labels": ["cat", "dog"]},
    ]
    numeric = decode_keyed_csv(b'1,"[0.2, 0.8]"\n', ("predicted_label", "probabilities"))
    assert numeric == [{"predicted_label": 1, "probabilities": [0.2, 0.8]}]
    with pytest.raises(BadRequest, match="names 2"):
        decode_keyed_csv(b"1,2,3\n", ("predicted_label", "probabilities"))


def test_every_decoder_is_registered():
    assert set(codecs.DECODERS) == {
        "text/csv",
        "application/json",
        "application/jsonlines",
        "application/x-npy",
        "text/libsvm",
    }


def test_keyed_json_and_jsonlines_read_back_what_encode_writes():
    keys = ("predicted_label", "probabilities")
    want = [
        {"predicted_label": "dog", "probabilities": [0.2, 0.8]},
        {"predicted_label": "cat", "probabilities": [0.9, 0.1]},
    ]
    assert decode_keyed(encode(CLASSIFIED, "application/json", keys), "application/json", keys) == want
    assert decode_keyed(encode(CLASSIFIED, "application/jsonlines", keys), "application/jsonlines", keys) == want
    assert decode_keyed(json.dumps(want).encode(), "application/json", keys) == want
    assert decode_keyed(json.dumps(want[0]).encode(), "application/json", ("predicted_label",)) == [
        {"predicted_label": "dog"}
    ]
    for body, content_type, message in [
        (b'{"predictions": [{"predicted_label": 1}]}', "application/json", "['predictions'][0] has no probabilities"),
        (b"[1, 2]", "application/json", "JSON body[0] must be an object with predicted_label, probabilities"),
        (b'{"predicted_label": 1}\n[1]\n', "application/jsonlines", "line 1 has no probabilities"),
        (b"", "text/csv", "empty request body"),
        (b"\n", "application/jsonlines", "application/jsonlines body has no records"),
    ]:
        with pytest.raises(BadRequest) as err:
            decode_keyed(body, content_type, keys)
        assert message in err.value.message


def test_keyed_records_encode_in_the_plain_form_or_by_keys():
    records = KeyedRecords([{"predicted_label": "M", "probabilities": [0.1, 0.9], "labels": ["F", "M"]}])
    assert encode(records, "text/csv") == b"M\n"
    assert json.loads(encode(records, "application/json")) == {"predictions": ["M"]}
    assert encode(records, "text/csv", ("predicted_label", "probabilities")) == b'M,"[0.1, 0.9]"\n'
    assert json.loads(encode(records, "application/jsonlines", ("labels",))) == {"labels": ["F", "M"]}
    with pytest.raises(NotAcceptable):
        encode(records, "application/x-npy", ("predicted_label",))


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/jsonlines", "application/x-npy"])
def test_transformed_features_encode_as_the_next_container_decodes_them(content_type):
    features = np.array([[0.1, 1 / 3, -2.5e-300], [np.nan, 1e300, 7.0]])
    encoded = encode_features(features, content_type)
    np.testing.assert_array_equal(decode(encoded, content_type, Schema(None, 3)), features)
    if content_type == "application/json":
        assert encoded.startswith(b'{"instances": [[0.1, 0.3333333333333333, ')


def test_unique_long_header_values_are_parsed_but_not_kept():
    """A client sending unique long Content-Type, Accept or custom attributes must not fill the parsers' caches."""
    import tracemalloc

    from modelcrate.serving.service import keys_from_custom_attributes

    filler = "z" * 65536
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            assert media_type(f"text/csv; note={i}{filler}") == "text/csv"
            assert negotiate(f"application/json, application/x-{i}{filler}", "text/csv") == "application/json"
            assert keys_from_custom_attributes(f"note={i}{filler}") is None
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1024 * 1024


@pytest.mark.parametrize(
    "body, phrase",
    [
        (b"[[" + b"7" * 5000 + b", 1, 2]]", "more than 4300 digits"),
        (b"[[1" + b"0" * 400 + b", 1, 2]]", "record 0, value 0: 1000000000"),
        (b'{"instances": [[1, 2, -1' + b"0" * 400 + b"]]}", "beyond the float64 range"),
    ],
)
def test_json_numbers_too_large_are_named(body, phrase):
    with pytest.raises(BadRequest) as err:
        decode(body, "application/json", THREE)
    assert phrase in err.value.message and len(err.value.message) < 200


def _npy_with_shape(shape: tuple, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


@pytest.mark.parametrize("shape", [(10**12, 3), (2**62, 2**62), (4, 3)])
def test_npy_headers_declaring_more_data_than_sent_are_refused(shape):
    with pytest.raises(BadRequest) as err:
        decode(_npy_with_shape(shape, np.zeros(3).tobytes()), "application/x-npy", THREE)
    assert f"shape {shape}" in err.value.message and "24 bytes" in err.value.message


def test_npy_with_exactly_the_declared_data_decodes():
    assert decode(_npy_with_shape((1, 3), np.ones(3).tobytes()), "application/x-npy", THREE).tolist() == [[1, 1, 1]]
