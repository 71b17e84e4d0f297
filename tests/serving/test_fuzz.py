"""Random and adversarial bodies: decoders either decode or raise a client error; the live server never 5xxs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcrate.serving.codecs import DECODERS, Schema, decode
from modelcrate.serving.errors import HttpError

SCHEMA = Schema(tuple(f"f{i}" for i in range(8)), 8)
CONTENT_TYPES = [*DECODERS, "application/xml", "text/csv; charset=latin-1", "", "text/csv; charset=utf-8"]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30), st.none(), st.booleans()
)
json_values = st.recursive(
    st.one_of(numbers, st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=9),
        st.dictionaries(st.sampled_from([*SCHEMA.feature_names, "features", "instances", "x"]), children, max_size=9),
    ),
    max_leaves=40,
)
csv_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.just(""),
    st.text(alphabet=' ,"\n\r-+.eE0123456789abc', max_size=6),
)
csv_bodies = st.lists(st.lists(csv_cells, min_size=1, max_size=10), max_size=6).map(
    lambda rows: "\n".join(",".join(r) for r in rows).encode()
)
bodies = st.one_of(
    st.binary(max_size=300),
    csv_bodies,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(json_values, max_size=5).map(lambda vs: "\n".join(json.dumps(v) for v in vs).encode()),
)


def check_decoded(result):
    if isinstance(result, np.ndarray):
        assert result.ndim == 2 and result.shape[0] >= 1 and result.dtype == np.float64


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, content_type=st.sampled_from(list(DECODERS)))
def test_decoders_decode_or_refuse_cleanly(body, content_type):
    try:
        check_decoded(decode(body, content_type, SCHEMA))
    except HttpError as exc:
        assert 400 <= exc.status < 500 and exc.message and len(exc.message) < 400


@pytest.fixture(scope="module")
def live(session_server):
    return session_server("xgboost", "json", "classification")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    accept=st.sampled_from(
        [None, "*/*", "text/csv", "application/x-npy", "image/png", "text/*;q=0.1, application/jsonlines"]
    ),
    attributes=st.sampled_from(
        [None, "inference_output=predicted_label,probabilities", "inference_output=bogus", "x" * 1024]
    ),
)
def test_live_server_never_answers_5xx(live, body, content_type, accept, attributes):
    headers = {"X-Amzn-SageMaker-Custom-Attributes": attributes} if attributes else {}
    resp = live.invoke(body, content_type or None, accept, **headers)
    assert resp.status == 200 or 400 <= resp.status < 500, (resp.status, resp.text)
    assert b"Traceback" not in resp.body
