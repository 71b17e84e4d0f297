"""Run a job on the chosen engine: start the target's servers, settle the batch parameters, transform."""

from __future__ import annotations

import os

from modelcrate.transform.engine import JobSummary, LocalEngine, Progress
from modelcrate.transform.job import TransformJob, resolve_parameters
from modelcrate.transform.storage import InputObject
from modelcrate.transform.targets import Target, running_target


def server_workers(instances: int, workers: int | None) -> int:
    """Worker processes per server: the machine's cores shared by the servers running on it."""
    return workers or max(1, (os.cpu_count() or 1) // instances)


def run_job(
    job: TransformJob,
    target: Target,
    items: list[InputObject],
    engine: str = "local",
    ray_address: str | None = None,
    in_process: bool = False,
    workers: int | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    instances = job.TransformResources.InstanceCount
    if engine == "ray":
        from modelcrate.transform.ray_engine import run_on_ray

        return run_on_ray(job, target, items, ray_address, in_process, workers, resume, progress)
    with running_target(target, job, instances, server_workers(instances, workers)) as (invokers, answer):
        parameters = resolve_parameters(job, answer)
        return LocalEngine(job, invokers, parameters, progress).run(items, resume)
