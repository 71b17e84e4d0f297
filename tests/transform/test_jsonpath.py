"""The JSONPath subset of DataProcessing filters, with SageMaker's result shapes."""

import pytest

from modelcrate.transform.jsonpath import JsonPathError, compile_path, select

ROW = ["id-7", "0.5", "0.4", "0.1", "9"]
OBJECT = {"id": 7, "features": [1, 2, 3], "meta": {"source": "a"}}


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("$", ROW, ROW),
        ("$[0]", ROW, "id-7"),
        ("$[-1]", ROW, "9"),
        ("$[1:]", ROW, ROW[1:]),
        ("$[:2]", ROW, ROW[:2]),
        ("$[0,-1]", ROW, ["id-7", "9"]),
        ("$[0,2:4]", ROW, ["id-7", "0.4", "0.1"]),
        ("$[*]", ROW, ROW),
        ("$.features", OBJECT, [1, 2, 3]),
        ("$.features[1:]", OBJECT, [2, 3]),
        ("$.meta.source", OBJECT, "a"),
        ("$['id','features']", OBJECT, {"id": 7, "features": [1, 2, 3]}),
        ('$["id"]', OBJECT, 7),
        ("$.*", {"a": 1, "b": 2}, [1, 2]),
        ("$[*].x", [{"x": 1}, {"x": 2}], [1, 2]),
    ],
)
def test_selects_like_sagemaker(expression, value, expected):
    assert select(expression, value) == expected


@pytest.mark.parametrize(
    ("expression", "value", "message"),
    [
        ("$.missing", OBJECT, "no field 'missing'"),
        ("$[9]", ROW, "index 9 is outside a record of 5 values"),
        ("$.id", ROW, "selects names from an object, found list"),
        ("$[0]", OBJECT, "selects indexes from an array, found dict"),
    ],
)
def test_a_record_it_cannot_select_from_is_explained(expression, value, message):
    with pytest.raises(JsonPathError, match=message.replace("[", r"\[")):
        select(expression, value)


@pytest.mark.parametrize("expression", ["features", "$..a", "$[a b]", "$[1;2]", "$.a[", "$[?(@.a)]"])
def test_expressions_outside_the_subset_are_refused(expression):
    with pytest.raises(JsonPathError):
        compile_path(expression)
