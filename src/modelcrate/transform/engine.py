"""The local engine: a job's files through one or more model servers, concurrently, outputs in input order.

Each file is read, split and packed into requests; up to MaxConcurrentTransforms requests per server are in
flight at once (over keep-alive connections). A file's output is written only once every one of its requests
succeeded, atomically; a failed request fails its file (no ``.out``) and the other files go on.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from modelcrate.transform import storage
from modelcrate.transform.job import JobError, TransformJob
from modelcrate.transform.records import Batch, Processor, RecordError
from modelcrate.transform.storage import InputObject, StorageError

DEFAULT_INVOCATION_TIMEOUT_S = 600.0
_SHOWN = 300  # longest excerpt of a container's error body quoted in a reason
# The ContentType an input's extension tells, for jobs that do not give one (the container answers 415 without).
CONTENT_TYPE_OF_EXTENSION = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".npy": "application/x-npy",
}


class InvocationError(RuntimeError):
    """A request the container refused or could not answer."""


@dataclass
class Response:
    status: int
    content_type: str | None
    body: bytes


class HttpInvoker:
    """``POST /invocations`` to a server on 127.0.0.1, one keep-alive connection per calling thread."""

    def __init__(self, port: int, timeout: float = DEFAULT_INVOCATION_TIMEOUT_S):
        self.port = port
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def invoke(self, body: bytes, headers: dict[str, str], chunked: bool = False) -> Response:
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile is retried once, fresh
            connection = self._connection()
            try:
                if chunked:
                    connection.request("POST", "/invocations", body=iter([body]), headers=headers, encode_chunked=True)
                else:
                    connection.request("POST", "/invocations", body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.will_close:
                    self.close_thread_connection()
                return Response(response.status, response.getheader("Content-Type"), payload)
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as exc:
                self.close_thread_connection()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise InvocationError(f"no answer from the model server on port {self.port}: {exc}") from None
        raise AssertionError("unreachable")

    def close_thread_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


@dataclass
class FileResult:
    relative: str
    records_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    records_out: int = 0
    skipped: bool = False
    failure: str | None = None


@dataclass
class JobSummary:
    name: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    parameters: dict = field(default_factory=dict)
    stale_partials_removed: int = 0

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.failure]

    @property
    def status(self) -> str:
        return "Failed" if self.failed else "Completed"

    @property
    def records_in(self) -> int:
        return sum(f.records_in for f in self.files if not f.skipped)

    @property
    def bytes_in(self) -> int:
        return sum(f.bytes_in for f in self.files if not f.skipped)

    @property
    def records_per_second(self) -> int | None:
        return round(self.records_in / self.seconds) if self.seconds else None

    @property
    def megabytes_per_second(self) -> float | None:
        return round(self.bytes_in / 1e6 / self.seconds, 2) if self.seconds else None

    @property
    def _failed_of_all(self) -> str:
        return f"{len(self.failed)} of {counted(len(self.files), 'file')}"

    @property
    def _first_failure(self) -> str:
        first = self.failed[0]
        return f"first: {first.relative}: {first.failure}"

    @property
    def failure_reason(self) -> str | None:
        return f"{self._failed_of_all} failed; {self._first_failure}" if self.failed else None

    @property
    def report_line(self) -> str:
        """The outcome as one sentence for people; as_dict() is the record for programs."""
        if self.failed:
            return f"Failed {self._failed_of_all}; {self._first_failure}"
        done = sum(not f.skipped for f in self.files)
        skipped = len(self.files) - done
        line = (
            f"Completed {counted(done, 'file')}, {counted(self.records_in, 'record')} in {self.seconds:.1f} s "
            f"({self.records_per_second:,} records/s, {self.megabytes_per_second} MB/s)"
        )
        return line + (f"; skipped {counted(skipped, 'file')} already complete" if skipped else "")

    def as_dict(self) -> dict:
        return {
            "TransformJobName": self.name,
            "TransformJobStatus": self.status,
            **({"FailureReason": self.failure_reason} if self.failure_reason else {}),
            "Parameters": self.parameters,
            "RecordsIn": self.records_in,
            "RecordsOut": sum(f.records_out for f in self.files if not f.skipped),
            "Seconds": round(self.seconds, 3),
            "RecordsPerSecond": self.records_per_second,
            "MegabytesPerSecond": self.megabytes_per_second,
            "Files": [
                {
                    "File": f.relative,
                    "Status": "Skipped" if f.skipped else ("Failed" if f.failure else "Completed"),
                    "RecordsIn": f.records_in,
                    "RecordsOut": f.records_out,
                    **({"FailureReason": f.failure} if f.failure else {}),
                }
                for f in self.files
            ],
        }


Progress = Callable[[int, int], None]  # (records done, bytes done) since the last call


def output_uri(job: TransformJob, item: InputObject) -> str:
    return storage.output_location(job.TransformOutput.S3OutputPath, item.relative + ".out")


def output_problem(job: TransformJob, item: InputObject) -> str | None:
    """Why the item's output cannot be written (it would land outside the output path), checked before reading it."""
    try:
        output_uri(job, item)
    except StorageError as exc:
        return f"writing the output failed: {exc}"
    return None


def counted(count: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def content_type_of_inputs(items: list[InputObject], compression: str) -> str:
    """The ContentType the inputs' one extension tells (a Gzip job's inputs are named by what they compress)."""
    extensions = set()
    for item in items:
        name = PurePosixPath(item.relative.lower())
        extensions.add(name.with_suffix("").suffix if compression == "Gzip" and name.suffix == ".gz" else name.suffix)
    fix = "give --content-type (TransformInput.ContentType)"
    if len(extensions) > 1:
        shown = ", ".join(sorted(e or "(none)" for e in extensions))
        raise JobError(f"the inputs' extensions are mixed ({shown}), so their content type is unclear: {fix}")
    (extension,) = extensions
    if extension not in CONTENT_TYPE_OF_EXTENSION:
        inputs = f"{extension} inputs" if extension else "inputs without an extension"
        raise JobError(f"cannot tell the content type of {inputs}: {fix}")
    return CONTENT_TYPE_OF_EXTENSION[extension]


def fill_content_type(job: TransformJob, items: list[InputObject]) -> str | None:
    """A job that names no ContentType takes the one its inputs' extension tells: returned, to be shown; None
    when the job named one."""
    if job.TransformInput.ContentType:
        return None
    job.TransformInput.ContentType = content_type_of_inputs(items, job.TransformInput.CompressionType)
    return job.TransformInput.ContentType


def list_inputs(job: TransformJob) -> list[InputObject]:
    source = job.TransformInput.DataSource.S3DataSource
    manifest = source.S3DataType == "ManifestFile"
    objects = storage.list_manifest(source.S3Uri) if manifest else storage.list_prefix(source.S3Uri)
    if not objects:
        raise StorageError(f"no input objects at {source.S3Uri} ({source.S3DataType})")
    return objects


class LocalEngine:
    """Run a job's files through ``invokers`` (one per server; InstanceCount servers)."""

    def __init__(self, job: TransformJob, invokers: list, parameters: dict, progress: Progress | None = None):
        self.job = job
        self.invokers = invokers
        self.parameters = parameters
        self.processor = Processor(job, parameters["BatchStrategy"], parameters["MaxPayloadInMB"])
        self.progress = progress or (lambda records, nbytes: None)
        self.headers = {
            **({"Content-Type": job.TransformInput.ContentType} if job.TransformInput.ContentType else {}),
            **({"Accept": job.TransformOutput.Accept} if job.TransformOutput.Accept else {}),
        }
        self.chunked = parameters["MaxPayloadInMB"] == 0
        self._slots = threading.local()
        self._next_slot = iter(range(1 << 62))
        self._slot_lock = threading.Lock()

    def decompress(self, data: bytes, uri: str) -> bytes:
        return storage.decompress(data, self.job.TransformInput.CompressionType, uri, self.parameters["MaxPayloadInMB"])

    def _invoker(self):
        """Threads are spread evenly over the servers, each thread keeping to one."""
        slot = getattr(self._slots, "index", None)
        if slot is None:
            with self._slot_lock:
                slot = self._slots.index = next(self._next_slot)
        return self.invokers[slot % len(self.invokers)]

    def _send(self, batch: Batch) -> bytes:
        response = self._invoker().invoke(batch.body, self.headers, self.chunked)
        if response.status != 200:
            detail = response.body[:_SHOWN].decode("utf-8", "replace").strip()
            raise InvocationError(f"{batch.where}: the container answered {response.status}: {detail}")
        output = self.processor.output(response.body, batch)
        self.progress(batch.count, len(batch.body))
        return output

    def submit_batches(self, data: bytes, pool: ThreadPoolExecutor) -> Iterator[tuple[Future, Batch]]:
        for batch in self.processor.batches(data):
            yield pool.submit(self._send, batch), batch

    def transform_data(self, data: bytes, pool: ThreadPoolExecutor) -> tuple[list[bytes], int]:
        """One object's (or byte range's) output parts and record count; raises on the first failed request."""
        futures = list(self.submit_batches(data, pool))
        try:
            return [future.result() for future, _ in futures], sum(batch.count for _, batch in futures)
        except BaseException:
            for future, _ in futures:
                future.cancel()
            raise

    def run(self, items: list[InputObject], resume: bool = False) -> JobSummary:
        job = self.job
        summary = JobSummary(job.TransformJobName, parameters=dict(self.parameters))
        summary.stale_partials_removed = storage.remove_stale_partials(job.TransformOutput.S3OutputPath)
        workers = self.parameters["MaxConcurrentTransforms"] * len(self.invokers)
        started = time.perf_counter()
        pending: deque = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="transform") as pool:
            for item in items:
                result = FileResult(item.relative)
                summary.files.append(result)
                result.failure = item.refusal or output_problem(job, item)
                if result.failure:
                    continue
                if resume and storage.exists(output_uri(job, item)):
                    result.skipped = True
                    continue
                pending.append((item, result, self._submit(item, result, pool)))
                # Finish files in order while enough work is queued behind them: memory stays bounded.
                while len(pending) > 1 and sum(len(p[2]) for p in pending) > 4 * workers:
                    self._finish(*pending.popleft())
            while pending:
                self._finish(*pending.popleft())
        summary.seconds = time.perf_counter() - started
        return summary

    def _submit(self, item: InputObject, result: FileResult, pool: ThreadPoolExecutor) -> list:
        futures = []
        try:
            data = self.decompress(storage.read_bytes(item.uri), item.uri)
            result.bytes_in = len(data)
            for future, batch in self.submit_batches(data, pool):
                futures.append((future, batch))
                result.records_in += batch.count
            return futures
        except (StorageError, RecordError, UnicodeDecodeError) as exc:
            result.failure = str(exc)
            for future, _ in futures:
                future.cancel()
            return []

    def _finish(self, item: InputObject, result: FileResult, futures: list) -> None:
        parts = []
        for future, _ in futures:
            if result.failure:
                future.cancel()
                continue
            try:
                parts.append(future.result())
            except (InvocationError, RecordError) as exc:
                result.failure = str(exc)
        if result.failure:
            return
        try:
            storage.write_atomically(output_uri(self.job, item), parts)
        except (StorageError, OSError) as exc:
            result.failure = f"writing the output failed: {exc}"
            return
        result.bytes_out = sum(map(len, parts))
        result.records_out = result.records_in
