"""Records of a transform job: split an object (SplitType), filter and pack them into requests (BatchStrategy,
MaxPayloadInMB), and turn responses back into output (DataProcessing joins and filters, AssembleWith)."""

from __future__ import annotations

import csv
import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from modelcrate.transform.job import TransformJob
from modelcrate.transform.jsonpath import JsonPathError, select

MIB = 1024 * 1024
RECORDIO_MAGIC = 0xCED7230A
CSV_TYPE = "text/csv"
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines", "application/json-lines")


class RecordError(ValueError):
    """A record (or the way the object splits into records) makes the file fail; the message says where."""


@dataclass
class Batch:
    """One request: its body, the 1-based numbers of the records it carries, and those records (kept only when
    a join or an output filter needs them per record)."""

    body: bytes
    first: int
    count: int
    records: list[bytes] | None = None

    @property
    def where(self) -> str:
        return f"record {self.first}" if self.count == 1 else f"records {self.first}-{self.first + self.count - 1}"


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


# ---------------------------------------------------------------- splitting


def _line_records(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return [line.rstrip(b"\r") for line in lines if line.strip()]


def _recordio_records(data: bytes) -> list[bytes]:
    """MXNet RecordIO: magic, uint32 (3-bit continuation flag, 29-bit length), payload padded to 4 bytes. Each
    record is kept with its framing, so a request body is itself valid RecordIO."""
    records, position = [], 0
    while position < len(data):
        if len(data) - position < 8:
            raise RecordError(f"RecordIO: {len(data) - position} stray bytes at offset {position}")
        magic, header = struct.unpack_from("<II", data, position)
        if magic != RECORDIO_MAGIC:
            raise RecordError(f"RecordIO: no record magic at offset {position}; is SplitType right?")
        length = header & ((1 << 29) - 1)
        end = position + 8 + length + (-length % 4)
        if end > len(data):
            raise RecordError(f"RecordIO: the record at offset {position} runs past the end of the object")
        records.append(data[position:end])
        position = end
    return records


def _tfrecord_records(data: bytes) -> list[bytes]:
    """TFRecord: uint64 length, uint32 CRC of the length, payload, uint32 CRC of the payload; kept framed."""
    records, position = [], 0
    while position < len(data):
        if len(data) - position < 12:
            raise RecordError(f"TFRecord: {len(data) - position} stray bytes at offset {position}")
        (length,) = struct.unpack_from("<Q", data, position)
        end = position + 12 + length + 4
        if end > len(data):
            raise RecordError(f"TFRecord: the record at offset {position} runs past the end of the object")
        records.append(data[position:end])
        position = end
    return records


def split_records(data: bytes, split_type: str) -> list[bytes]:
    if split_type == "Line":
        return _line_records(data)
    if split_type == "RecordIO":
        return _recordio_records(data)
    if split_type == "TFRecord":
        return _tfrecord_records(data)
    return [data] if data else []


# ---------------------------------------------------------------- parsing one record


def _csv_row(record: bytes) -> list[str]:
    rows = list(csv.reader([record.decode("utf-8")]))
    return rows[0] if rows else []


def _csv_line(values) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values if isinstance(values, list) else [values])
    return buffer.getvalue().encode()


class RecordFormat:
    """How records of one content type parse and serialise for filters and joins (CSV rows are arrays)."""

    def __init__(self, content_type: str | None, what: str):
        media = _media_type(content_type)
        if media == CSV_TYPE:
            self.kind = "csv"
        elif media in JSON_TYPES:
            self.kind = "json"
        else:
            raise RecordError(
                f"DataProcessing filters and joins read CSV or JSON records; {what} is {content_type or 'not set'}"
            )

    def parse(self, record: bytes, where: str):
        try:
            return _csv_row(record) if self.kind == "csv" else json.loads(record)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"{where} is not valid {self.kind.upper()}: {exc}") from None

    def dump(self, value) -> bytes:
        return _csv_line(value) if self.kind == "csv" else json.dumps(value).encode()


# ---------------------------------------------------------------- packing into requests


class Processor:
    """Everything per-record that a job asks for, decided once per job."""

    def __init__(self, job: TransformJob, strategy: str, max_payload_mb: int):
        self.split_type = job.TransformInput.SplitType
        self.content_type = job.TransformInput.ContentType
        self.accept = job.TransformOutput.Accept
        self.assemble_lines = job.TransformOutput.AssembleWith == "Line"
        processing = job.DataProcessing
        self.input_filter = processing.InputFilter
        self.output_filter = processing.OutputFilter
        self.join = processing.JoinSource == "Input"
        self.single = strategy == "SingleRecord"
        self.limit = max_payload_mb * MIB if max_payload_mb else None  # 0: whole objects, streamed
        self.input_format = (
            RecordFormat(self.content_type, "TransformInput.ContentType")
            if (self.input_filter != "$" or self.join)
            else None
        )
        self.per_record_output = self.join or self.output_filter != "$"
        self.output_format = RecordFormat(self.accept, "TransformOutput.Accept") if self.per_record_output else None
        self.separator = b"\n" if self.split_type == "Line" else b""

    def _filtered(self, record: bytes, number: int) -> bytes:
        if self.input_filter == "$":
            return record
        where = f"record {number}"
        try:
            return self.input_format.dump(select(self.input_filter, self.input_format.parse(record, where)))
        except JsonPathError as exc:
            raise RecordError(f"{where}: InputFilter {exc}") from None

    def _too_large(self, size: int, number: int) -> RecordError:
        return RecordError(
            f"record {number} is {size / MIB:.2f} MB, more than MaxPayloadInMB={self.limit // MIB}; raise "
            "MaxPayloadInMB (up to 100) or split the object into smaller records (SplitType)"
        )

    def _fast_line_batches(self, data: bytes) -> Iterator[Batch] | None:
        """Plain lines packed by cutting the object at its last newline under the limit: no per-record work.
        Only when nothing needs records one by one and the lines are clean (no blank lines, no CR)."""
        if (
            self.split_type != "Line"
            or self.single
            or self.input_filter != "$"
            or self.per_record_output
            or b"\r" in data
            or b"\n\n" in data
            or data.startswith(b"\n")
        ):
            return None
        if data and not data.endswith(b"\n"):
            data += b"\n"

        def batches() -> Iterator[Batch]:
            position, number = 0, 1
            while position < len(data):
                end = len(data) if self.limit is None else min(position + self.limit, len(data))
                if end < len(data):
                    cut = data.rfind(b"\n", position, end)
                    if cut < position:
                        size = data.find(b"\n", position) + 1 - position
                        raise self._too_large(size, number)
                    end = cut + 1
                body = data[position:end]
                count = body.count(b"\n")
                yield Batch(body, number, count)
                position, number = end, number + count

        return batches()

    def batch_ends(self, data: bytes) -> list[int] | None:
        """Where each request of the plain-lines case ends in the object (byte offsets), or None when records
        must be read one by one. Packing restarted at any of these offsets yields the same requests, so an
        object can be cut there and transformed in pieces with identical output."""
        fast = self._fast_line_batches(data)
        if fast is None:
            return None
        ends, position = [], 0
        for batch in fast:
            position += len(batch.body)
            ends.append(position)
        return ends

    def batches(self, data: bytes) -> Iterator[Batch]:
        """The requests for one (decompressed) object, in order; files are never combined."""
        fast = self._fast_line_batches(data)
        if fast is not None:
            yield from fast
            return
        records = split_records(data, self.split_type)
        keep = self.per_record_output
        current: list[bytes] = []
        originals: list[bytes] = []
        size, first = 0, 1
        for number, record in enumerate(records, 1):
            payload = self._filtered(record, number) + self.separator
            if self.limit is not None and len(payload) > self.limit:
                raise self._too_large(len(payload), number)
            if current and (self.single or (self.limit is not None and size + len(payload) > self.limit)):
                yield Batch(b"".join(current), first, len(current), originals if keep else None)
                current, originals, size, first = [], [], 0, number
            current.append(payload)
            originals.append(record)
            size += len(payload)
        if current:
            yield Batch(b"".join(current), first, len(current), originals if keep else None)

    # ---------------------------------------------------------------- responses into output

    def _split_response(self, body: bytes, batch: Batch) -> list[bytes] | list:
        if self.output_format.kind == "csv" or _media_type(self.accept) != "application/json":
            outputs = [line.rstrip(b"\r") for line in body.split(b"\n") if line.strip()]
        else:
            try:
                value = json.loads(body)
            except ValueError:
                outputs = [line for line in body.split(b"\n") if line.strip()]
            else:
                if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
                    value = next(iter(value.values()))  # {"predictions": [...]}
                outputs = value if isinstance(value, list) and batch.count > 1 else [value]
                outputs = [json.dumps(v).encode() for v in outputs]
        if len(outputs) != batch.count:
            raise RecordError(
                f"{batch.where}: the container answered {len(outputs)} output records for {batch.count} input "
                "records, so outputs cannot be matched to inputs for the join or output filter"
            )
        return outputs

    def _joined(self, original: bytes, output: bytes, number: int):
        where = f"record {number}"
        out_value = self.output_format.parse(output, f"the output of {where}")
        if not self.join:
            return out_value
        in_value = self.input_format.parse(original, where)
        if self.output_format.kind == "csv":
            return in_value + (out_value if isinstance(out_value, list) else [out_value])
        if isinstance(in_value, dict):
            return {**in_value, "SageMakerOutput": out_value}
        return {"SageMakerInput": in_value, "SageMakerOutput": out_value}

    def output(self, body: bytes, batch: Batch) -> bytes:
        """What this request contributes to the ``.out`` file."""
        if not self.per_record_output:
            if self.assemble_lines and not body.endswith(b"\n"):
                return body + b"\n"
            return body
        pieces = []
        for offset, (original, output) in enumerate(zip(batch.records, self._split_response(body, batch), strict=True)):
            number = batch.first + offset
            try:
                value = select(self.output_filter, self._joined(original, output, number))
            except JsonPathError as exc:
                raise RecordError(f"record {number}: OutputFilter {exc}") from None
            pieces.append(self.output_format.dump(value) + (b"\n" if self.assemble_lines else b""))
        return b"".join(pieces)
