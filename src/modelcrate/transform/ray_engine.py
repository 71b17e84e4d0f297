"""The Ray engine: a job's files, and large files in byte ranges, spread over the actors of a Ray cluster.

Each actor is one transform instance (InstanceCount actors): it runs its own model server, or with
``in_process`` the runtime's predictor inside the actor, and transforms whole objects or byte ranges that
the driver cut where the local engine's requests end, so that the concatenated parts are byte-identical to
the local engine's output. Actors read their own data (local paths shared by the cluster's machines, or S3);
the driver writes each file's output once all of its parts arrived, atomically, in order.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.transform import storage
from modelcrate.transform.engine import (
    FileResult,
    InvocationError,
    JobSummary,
    LocalEngine,
    Progress,
    output_problem,
    output_uri,
)
from modelcrate.transform.job import TransformJob, resolve_parameters
from modelcrate.transform.records import Processor, RecordError
from modelcrate.transform.storage import InputObject, StorageError
from modelcrate.transform.targets import InProcessInvoker, Target, TargetError, job_environment, running_target

RANGES_PER_ACTOR = 4  # enough pieces per actor to keep every actor busy until the end of a large file


class TransformActor:
    """One transform instance inside a Ray worker process."""

    def __init__(self, job_json: str, target: Target, in_process: bool, workers: int | None):
        self.job = TransformJob.model_validate_json(job_json)
        self._stack = ExitStack()
        if in_process:
            self.invoker = InProcessInvoker(Path(target.location), job_environment(self.job))
            self.answer = self.invoker.parameters
        else:
            invokers, self.answer = self._stack.enter_context(running_target(target, self.job, 1, workers))
            self.invoker = invokers[0]
        self.engine: LocalEngine | None = None
        self.pool: ThreadPoolExecutor | None = None

    def execution_parameters(self) -> dict | None:
        return self.answer

    def configure(self, parameters: dict) -> None:
        self.engine = LocalEngine(self.job, [self.invoker], parameters)
        self.pool = ThreadPoolExecutor(parameters["MaxConcurrentTransforms"], thread_name_prefix="transform")

    def transform(self, uri: str, start: int | None, end: int | None) -> tuple[bytes | None, int, int, str | None]:
        """(output, records, bytes read, failure reason) for the object at ``uri`` or its range [start, end)."""
        try:
            data = self.engine.decompress(storage.read_bytes(uri, start, end), uri)
            parts, records = self.engine.transform_data(data, self.pool)
            return b"".join(parts), records, len(data), None
        except (StorageError, RecordError, InvocationError, UnicodeDecodeError) as exc:
            where = f"bytes {start}-{end}: " if start is not None else ""
            return None, 0, 0, where + str(exc)

    def close(self) -> None:
        self._stack.close()


@dataclass
class _FilePlan:
    item: InputObject
    result: FileResult
    ranges: list[tuple[int | None, int | None]]
    parts: dict[int, bytes] = field(default_factory=dict)


def plan_ranges(item: InputObject, processor: Processor, compression: str, chunk: int) -> list[tuple]:
    """Byte ranges cut where requests end; the whole object when it is small, compressed or not plain lines."""
    if compression != "None" or item.size <= chunk:
        return [(None, None)]
    data = storage.read_bytes(item.uri)
    ends = processor.batch_ends(data)
    if not ends:
        return [(None, None)]
    ranges, start = [], 0
    for end in ends:
        end = min(end, len(data))
        if end - start >= chunk or end == len(data):
            ranges.append((start, end))
            start = end
    return ranges


def run_on_ray(
    job: TransformJob,
    target: Target,
    items: list[InputObject],
    ray_address: str | None,
    in_process: bool,
    workers: int | None,
    resume: bool,
    progress: Progress | None,
) -> JobSummary:
    import ray  # the ray extra; without it, the command line says to install it

    if in_process and target.kind != "model":
        raise TargetError(f"--in-process predicts with a model directory's runtime; {target.describe()} is not one")
    progress = progress or (lambda records, nbytes: None)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return _run(ray, job, target, items, in_process, workers, resume, progress)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray, job, target, items, in_process, workers, resume, progress) -> JobSummary:
    import time

    from modelcrate.transform.run import server_workers

    instances = job.TransformResources.InstanceCount
    actor_class = ray.remote(max_concurrency=2)(TransformActor)  # reads the next range while one is predicting
    actors = [
        actor_class.remote(job.model_dump_json(), target, in_process, server_workers(instances, workers))
        for _ in range(instances)
    ]
    try:
        parameters = resolve_parameters(job, ray.get(actors[0].execution_parameters.remote()))
        ray.get([actor.configure.remote(parameters) for actor in actors])
        processor = Processor(job, parameters["BatchStrategy"], parameters["MaxPayloadInMB"])
        summary = JobSummary(job.TransformJobName, parameters=dict(parameters))
        summary.stale_partials_removed = storage.remove_stale_partials(job.TransformOutput.S3OutputPath)
        started = time.perf_counter()
        total = sum(i.size for i in items)
        chunk = max(parameters["MaxPayloadInMB"] * 1024 * 1024, math.ceil(total / (instances * RANGES_PER_ACTOR)))
        plans: list[_FilePlan] = []
        work: deque = deque()
        for item in items:
            result = FileResult(item.relative)
            summary.files.append(result)
            result.failure = item.refusal or output_problem(job, item)
            if result.failure:
                continue
            if resume and storage.exists(output_uri(job, item)):
                result.skipped = True
                continue
            try:
                ranges = plan_ranges(item, processor, job.TransformInput.CompressionType, chunk)
            except (StorageError, RecordError) as exc:
                result.failure = str(exc)
                continue
            plan = _FilePlan(item, result, ranges)
            plans.append(plan)
            work.extend((plan, index) for index in range(len(ranges)))
        _dispatch(ray, job, actors, work, progress)
        summary.seconds = time.perf_counter() - started
        return summary
    finally:
        ray.get([actor.close.remote() for actor in actors])
        for actor in actors:
            ray.kill(actor)


def _dispatch(ray, job: TransformJob, actors: list, work: deque, progress: Progress) -> None:
    """Keep two ranges in flight per actor until all work is done; write each file once its parts are in."""
    in_flight: dict = {}
    idle = [actor for actor in actors for _ in range(2)]
    while work or in_flight:
        while work and idle:
            plan, index = work.popleft()
            if plan.result.failure:
                continue  # the file already failed: no need to transform the rest of it
            actor = idle.pop()
            start, end = plan.ranges[index]
            in_flight[actor.transform.remote(plan.item.uri, start, end)] = (actor, plan, index)
        if not in_flight:
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        actor, plan, index = in_flight.pop(ready[0])
        idle.append(actor)
        output, records, nbytes, failure = ray.get(ready[0])
        if failure:
            plan.result.failure = plan.result.failure or failure
            continue
        plan.parts[index] = output
        plan.result.records_in += records
        plan.result.bytes_in += nbytes
        progress(records, nbytes)
        if len(plan.parts) == len(plan.ranges):
            _write(job, plan)


def _write(job: TransformJob, plan: _FilePlan) -> None:
    parts = [plan.parts.pop(i) for i in range(len(plan.ranges))]
    try:
        storage.write_atomically(output_uri(job, plan.item), parts)
    except (StorageError, OSError) as exc:
        plan.result.failure = f"writing the output failed: {exc}"
        return
    plan.result.bytes_out = sum(map(len, parts))
    plan.result.records_out = plan.result.records_in
