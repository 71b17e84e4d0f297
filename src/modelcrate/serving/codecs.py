"""Request decoders and response encoders, chosen by MIME type.

Decoders turn a body into a 2-D float64 array of records (or, with ``SAGEMAKER_INFERENCE_INPUT``, a list
of keyed records from the previous container of a pipeline). Every malformed body becomes a
:class:`BadRequest` whose message says what is wrong and where. Encoders write predictions, inference
keys, and a feature transformer's records in the shapes the decoders of the next container read.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, wraps

import numpy as np

from modelcrate.predictors import Prediction
from modelcrate.serving.errors import BadRequest, NotAcceptable, UnsupportedMediaType

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
LIBSVM = "text/libsvm"
_ALIASES = {
    "application/x-jsonlines": JSONLINES,
    "application/json-lines": JSONLINES,
    "application/jsonl": JSONLINES,
    "text/x-libsvm": LIBSVM,
}
OUTPUT_TYPES = (JSON, CSV, JSONLINES, NPY)
_TEXT_CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}
_SHOWN = 40  # longest excerpt of client input quoted back in an error
_LARGEST_FLOAT = int(np.finfo(np.float64).max)
_CACHED_HEADER_CHARS = 256  # header values up to this long are cached; longer ones are parsed each time


@dataclass(frozen=True)
class Schema:
    """What decoders know of the model: feature names map JSON objects to columns."""

    feature_names: tuple[str, ...] | None = None
    n_features: int | None = None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def cache_short_headers(maxsize: int):
    """``lru_cache`` for a parser of a header value (its first argument), skipped for long values: a client
    sending unique long values would otherwise keep up to ``maxsize`` of them in the worker for good."""

    def decorate(parse):
        cached = lru_cache(maxsize=maxsize)(parse)

        @wraps(parse)
        def parse_header(header, *args):
            if header is not None and len(header) > _CACHED_HEADER_CHARS:
                return parse(header, *args)
            return cached(header, *args)

        return parse_header

    return decorate


@cache_short_headers(maxsize=256)
def media_type(header: str) -> str:
    """The lower-case ``type/subtype`` of a Content-Type header; a charset other than UTF-8 is refused."""
    base, _, params = header.partition(";")
    base = base.strip().lower()
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _TEXT_CHARSETS:
            raise UnsupportedMediaType(f"charset {_show(value.strip())} is not supported; send UTF-8")
    return _ALIASES.get(base, base)


@cache_short_headers(maxsize=256)
def negotiate(accept: str | None, default: str) -> str:
    """The response type for an Accept header: highest q-value first, then the order given."""
    if not accept or not accept.strip():
        return default
    offers = []
    for position, item in enumerate(accept.split(",")):
        base, _, params = item.partition(";")
        base = base.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if base and quality > 0:
            offers.append((-quality, position, _ALIASES.get(base, base)))
    for _, _, base in sorted(offers):
        if base == "*/*":
            return default
        if base in OUTPUT_TYPES:
            return base
        if base.endswith("/*"):
            family = base[:-1]
            match = (
                default if default.startswith(family) else next((t for t in OUTPUT_TYPES if t.startswith(family)), None)
            )
            if match:
                return match
    raise NotAcceptable(f"cannot answer with {_show(accept.strip())}; supported: {', '.join(OUTPUT_TYPES)}")


def _text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} body is not UTF-8 text (invalid byte at offset {exc.start})") from None


def _number(cell: str, line: int, column: int) -> float:
    text = cell.strip()
    if not text:
        return math.nan
    try:
        if "_" in text:  # float() accepts 1_000; a CSV number never has underscores
            raise ValueError(text)
        return float(text)
    except ValueError:
        hint = " (a header row? send records only)" if line == 1 else ""
        raise BadRequest(f"CSV line {line}, column {column}: {_show(cell)} is not a number{hint}") from None


def _csv_rows(text: str) -> list[list[str]]:
    if '"' in text:
        try:
            return [row for row in csv.reader(io.StringIO(text), strict=True)]
        except csv.Error as exc:
            raise BadRequest(f"malformed CSV: {exc}") from None
    return [line.split(",") for line in text.splitlines()]


def _csv_slow(text: str) -> np.ndarray:
    """Cell by cell, to find the line and column of what is wrong, and to read empty fields as NaN."""
    rows = _csv_rows(text)
    while rows and rows[-1] in ([], [""]):
        rows.pop()
    if not rows:
        raise BadRequest("CSV body has no records")
    width = len(rows[0])
    values = []
    for line, row in enumerate(rows, start=1):
        if len(row) != width:
            raise BadRequest(f"CSV line {line} has {len(row)} fields but line 1 has {width}")
        values.append([_number(cell, line, column) for column, cell in enumerate(row, start=1)])
    return np.array(values, dtype=np.float64)


def decode_csv(body: bytes, schema: Schema) -> np.ndarray:
    text = _text(body, "CSV")
    if '"' not in text and text.strip():
        try:
            # numpy's C reader; anything unusual (empty fields, errors) goes the slow, precise way.
            records = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, comments=None, dtype=np.float64)
            if records.size:
                return records
        except ValueError:
            pass
    return _csv_slow(text)


def _record(item, schema: Schema, where: str) -> list:
    if isinstance(item, dict):
        if "features" in item:
            return _record(item["features"], schema, where)
        names = schema.feature_names
        if not names:
            raise BadRequest(
                f"{where} is an object, but this model has no feature names to map its keys to; send a list"
            )
        missing = [n for n in names if n not in item]
        unknown = [k for k in item if k not in names]
        if missing or unknown:
            parts = ([f"missing {', '.join(map(_show, missing[:5]))}"] if missing else []) + (
                [f"unknown {', '.join(map(_show, unknown[:5]))}"] if unknown else []
            )
            raise BadRequest(f"{where} does not match the model's features: {'; '.join(parts)}")
        return [item[n] for n in names]
    if isinstance(item, list):
        return item
    raise BadRequest(f"{where} must be a list of numbers or an object, not {type(item).__name__}")


def _records_of(value, schema: Schema, where: str) -> list[list]:
    """Records from a decoded JSON value: a 2-D list, one record, or a list of objects."""
    if isinstance(value, dict):
        for key in ("instances", "inputs"):
            if key in value:
                return _records_of(value[key], schema, f"{where}[{key!r}]")
        return [_record(value, schema, where)]
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a list or an object, not {type(value).__name__}")
    if not value:
        raise BadRequest(f"{where} is an empty list: no records to predict")
    if all(isinstance(v, (list, dict)) for v in value):
        return [_record(v, schema, f"{where}[{i}]") for i, v in enumerate(value)]
    if schema.n_features == 1 and len(value) > 1:
        return [[v] for v in value]  # a single-feature model: each scalar is a record
    return [value]


def _matrix(records: Sequence[list], what: str) -> np.ndarray:
    try:
        return np.array(records, dtype=np.float64, ndmin=2)
    except (ValueError, TypeError, OverflowError):
        pass
    width = len(records[0])
    for r, row in enumerate(records):
        if len(row) != width:
            raise BadRequest(f"{what} record {r} has {len(row)} values but record 0 has {width}")
        for c, v in enumerate(row):
            if v is not None and (isinstance(v, (list, dict, str)) or not isinstance(v, (int, float))):
                raise BadRequest(f"{what} record {r}, value {c}: {_show(v)} is not a number")
            if isinstance(v, int) and abs(v) > _LARGEST_FLOAT:
                raise BadRequest(f"{what} record {r}, value {c}: {_show(v)} is beyond the float64 range")
    raise BadRequest(f"{what} records are not numeric")


def _json_value(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid {what}: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise BadRequest(f"invalid {what}: nested too deeply") from None
    except ValueError:  # Python's guard against quadratic int parsing (sys.set_int_max_str_digits)
        raise BadRequest(
            f"invalid {what}: an integer has more than {sys.get_int_max_str_digits()} digits; no feature needs that"
        ) from None


def decode_json(body: bytes, schema: Schema) -> np.ndarray:
    value = _json_value(_text(body, "JSON"), "JSON")
    return _matrix(_records_of(value, schema, "JSON body"), "JSON")


def decode_jsonlines(body: bytes, schema: Schema) -> np.ndarray:
    records = []
    for number, line in enumerate(_text(body, "JSON Lines").splitlines(), start=1):
        if line.strip():
            value = _json_value(line, f"JSON Lines (line {number})")
            records.extend(_records_of(value, schema, f"JSON Lines line {number}"))
    if not records:
        raise BadRequest("JSON Lines body has no records")
    return _matrix(records, "JSON Lines")


def _check_npy_size(body: bytes) -> None:
    """Refuse a header declaring more data than the body carries, before numpy allocates what it declares."""
    stream = io.BytesIO(body)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    if dtype.hasobject:
        return  # np.load refuses pickles
    declared = math.prod(shape) * dtype.itemsize
    sent = len(body) - stream.tell()
    if declared != sent:
        raise BadRequest(f"NPY header declares shape {shape} of {dtype} ({declared} bytes), but {sent} bytes follow it")


def decode_npy(body: bytes, schema: Schema) -> np.ndarray:
    if not body.startswith(b"\x93NUMPY"):
        raise BadRequest("body is not a valid NPY array (write it with numpy.save)")
    try:
        _check_npy_size(body)
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise BadRequest("NPY object arrays (pickles) are refused; send a numeric array") from None
        raise BadRequest("body is not a valid NPY array (write it with numpy.save)") from None
    except (OSError, EOFError):
        raise BadRequest("body is not a valid NPY array (write it with numpy.save)") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise BadRequest(f"NPY array must be numeric, not {getattr(array, 'dtype', type(array))}")
    if array.ndim == 1:
        array = array.reshape(-1, 1) if schema.n_features == 1 else array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] == 0:
        raise BadRequest(f"NPY array must be 1-D (one record) or 2-D (records), not shape {array.shape}")
    return array.astype(np.float64, copy=False)


def decode_libsvm(body: bytes, schema: Schema) -> np.ndarray:
    """``[label] index:value ...`` per line; absent features are missing (NaN), as XGBoost reads them."""
    rows: list[dict[int, float]] = []
    for number, line in enumerate(_text(body, "libsvm").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if ":" not in tokens[0]:
            tokens = tokens[1:]  # the label column is ignored
        row = {}
        for token in tokens:
            index, _, value = token.partition(":")
            try:
                row[int(index)] = float(value)
            except ValueError:
                raise BadRequest(f"libsvm line {number}: {_show(token)} is not index:value") from None
            if int(index) < 0:
                raise BadRequest(f"libsvm line {number}: negative feature index {index}")
        rows.append(row)
    if not rows:
        raise BadRequest("libsvm body has no records")
    width = schema.n_features or max((max(r) + 1 for r in rows if r), default=1)
    records = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        for index, value in row.items():
            if index >= width:
                raise BadRequest(f"libsvm line {i + 1}: feature index {index} but the model has {width} features")
            records[i, index] = value
    return records


class KeyedRecords(list):
    """Records from a previous pipeline container: one dict of inference keys per record."""


def decode_keyed_csv(body: bytes, keys: Sequence[str]) -> KeyedRecords:
    """Rows written by a previous container's inference keys, e.g. ``1,"[0.2, 0.8]"``."""
    rows = _csv_rows(_text(body, "CSV"))
    records = KeyedRecords()
    for line, row in enumerate(rows, start=1):
        if not row or row == [""]:
            continue
        if len(row) != len(keys):
            raise BadRequest(f"CSV line {line} has {len(row)} fields; SAGEMAKER_INFERENCE_INPUT names {len(keys)}")
        record = {}
        for key, cell in zip(keys, row, strict=True):
            try:
                record[key] = ast.literal_eval(cell) if cell.startswith("[") else _scalar(cell)
            except (ValueError, SyntaxError):
                raise BadRequest(f"CSV line {line}: {key} {_show(cell)} is not a list") from None
        records.append(record)
    return records


def _scalar(cell: str):
    try:
        number = float(cell)
    except ValueError:
        return cell
    return int(number) if number.is_integer() and "." not in cell and "e" not in cell.lower() else number


def _keyed(value, keys: Sequence[str], where: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object with {', '.join(keys)}, not {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise BadRequest(f"{where} has no {', '.join(missing)}; SAGEMAKER_INFERENCE_INPUT names {', '.join(keys)}")
    return {k: value[k] for k in keys}


def decode_keyed_json(body: bytes, keys: Sequence[str]) -> KeyedRecords:
    """What a previous container answered as JSON: ``{"predictions": [{"predicted_label": 1, ...}, ...]}``,
    a list of such objects, or one object."""
    value = _json_value(_text(body, "JSON"), "JSON")
    where = "JSON body"
    if isinstance(value, dict) and "predictions" in value:
        value, where = value["predictions"], "JSON body['predictions']"
    if not isinstance(value, list):
        return KeyedRecords([_keyed(value, keys, where)])
    return KeyedRecords(_keyed(v, keys, f"{where}[{i}]") for i, v in enumerate(value))


def decode_keyed_jsonlines(body: bytes, keys: Sequence[str]) -> KeyedRecords:
    """One object of inference keys per line."""
    records = KeyedRecords()
    for number, line in enumerate(_text(body, "JSON Lines").splitlines(), start=1):
        if line.strip():
            value = _json_value(line, f"JSON Lines (line {number})")
            records.append(_keyed(value, keys, f"JSON Lines line {number}"))
    return records


KEYED_DECODERS: dict[str, Callable[[bytes, Sequence[str]], KeyedRecords]] = {
    CSV: decode_keyed_csv,
    JSON: decode_keyed_json,
    JSONLINES: decode_keyed_jsonlines,
}


def decode_keyed(body: bytes, content_type: str, keys: Sequence[str]) -> KeyedRecords:
    """Keyed records in one of the types :data:`KEYED_DECODERS` reads."""
    if not body:
        raise BadRequest("empty request body: send at least one record")
    records = KEYED_DECODERS[content_type](body, keys)
    if not records:
        raise BadRequest(f"{content_type} body has no records")
    return records


DECODERS: dict[str, Callable[[bytes, Schema], np.ndarray]] = {
    CSV: decode_csv,
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    NPY: decode_npy,
    LIBSVM: decode_libsvm,
}


def decode(body: bytes, content_type: str, schema: Schema, supported: Sequence[str] = tuple(DECODERS)):
    if not body:
        raise BadRequest("empty request body: send at least one record")
    if content_type not in supported:
        raise UnsupportedMediaType(
            f"Content-Type {_show(content_type)} is not supported; send one of {', '.join(supported)}"
        )
    return DECODERS[content_type](body, schema)


# ---- encoders -------------------------------------------------------------------------------------


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def _csv_field(value) -> str:
    return str(value)  # lists too, as AWS's containers write them: "[0.2, 0.8]", "['cat', 'dog']"


def _csv_lines(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[_csv_field(v) for v in row] for row in rows])
    return buffer.getvalue().encode()


def keyed_records(prediction: Prediction, keys: Sequence[str]) -> list[dict]:
    values = prediction.values.tolist()
    columns: dict[str, list] = {}
    for key in keys:
        if key == "predicted_label":
            columns[key] = values
        elif key == "probabilities":
            columns[key] = prediction.probabilities.tolist()
        elif key == "probability":
            proba = prediction.probabilities
            columns[key] = (proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)).tolist()
        elif key == "labels":
            columns[key] = [list(prediction.labels)] * len(values)
    return [{key: columns[key][i] for key in keys} for i in range(len(values))]


def _encode_keyed(rows: Sequence[dict], accept: str, keys: Sequence[str]) -> bytes:
    if accept == NPY:
        raise NotAcceptable("application/x-npy cannot carry inference keys; ask for CSV, JSON or JSON Lines")
    if accept == CSV:
        return _csv_lines([[row[k] for k in keys] for row in rows])
    if accept == JSONLINES:
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    return json.dumps({"predictions": rows}).encode()


def _npy(result) -> bytes:
    array = np.asarray(result)
    buffer = io.BytesIO()
    np.save(buffer, array.astype(str) if array.dtype == object else array, allow_pickle=False)
    return buffer.getvalue()


def encode(result, accept: str, keys: Sequence[str] | None = None) -> bytes:
    """Encode a :class:`Prediction` or :class:`KeyedRecords` (with inference ``keys``) or any array-like
    result as ``accept``. Without keys, keyed records are sent in the plain form: each record's label."""
    if isinstance(result, Prediction):
        if keys:
            return _encode_keyed(keyed_records(result, keys), accept, keys)
        result = result.values
    elif isinstance(result, KeyedRecords):
        if keys:
            return _encode_keyed([{k: record[k] for k in keys} for record in result], accept, keys)
        result = [record["predicted_label"] for record in result]
    if accept == NPY:
        return _npy(result)
    if isinstance(result, dict):
        if accept == JSON:
            return json.dumps(_jsonable(result)).encode()
        raise NotAcceptable(f"this result is an object and can be sent as {JSON} only")
    values = _plain(result)
    if not isinstance(values, list):
        values = [values]
    if accept == JSON:
        return json.dumps({"predictions": values}).encode()
    if accept == JSONLINES:
        return "".join(json.dumps(v) + "\n" for v in values).encode()
    if values and not isinstance(values[0], list | str) and all(isinstance(v, int | float) for v in values):
        return ("\n".join(map(str, values)) + "\n").encode()  # the common case, without the csv module
    if values and isinstance(values[0], str) and all(isinstance(v, str) and v for v in values):
        text = "\n".join(values)  # class labels: plain unless one needs CSV quoting
        if text.count("\n") == len(values) - 1 and not any(c in text for c in ',"\r'):
            return (text + "\n").encode()
    return _csv_lines([v if isinstance(v, list) else [v] for v in values])


def encode_features(features, accept: str) -> bytes:
    """A feature transformer's records, as the next container of a pipeline reads them: CSV rows of
    shortest round-trip reprs (parsed back to the very same float64), ``{"instances": [[...], ...]}``,
    one list per JSON line, or the NPY matrix."""
    if accept == NPY:
        return _npy(features)
    rows = np.asarray(features).tolist()
    if accept == JSON:
        return json.dumps({"instances": rows}).encode()
    if accept == JSONLINES:
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    return "".join(",".join(map(repr, row)) + "\n" for row in rows).encode()


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return _plain(value)
