"""Start a pipeline's containers and its front server; stop them all on exit."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelcrate.containers.endpoint import Endpoint, ServerSpec, running_server
from modelcrate.containers.image_test import unpacked_model
from modelcrate.pipeline.definition import RESERVED_ENVIRONMENT, PipelineDefinition, load_definition
from modelcrate.pipeline.front import FrontServer
from modelcrate.predictors import LABEL_DECODING
from modelcrate.serving.config import drain_timeout
from modelcrate.serving.draining import cut_off_message
from modelcrate.serving.errors import ConfigError
from modelcrate.serving.hints import INFERENCE_SUPPORTED, before_label_decoder, hint, keys_of_task, model_task

DEFAULT_INVOCATION_TIMEOUT_S = 60.0  # SageMaker's limit for one realtime invocation, all containers included


class PipelineError(RuntimeError):
    """The pipeline could not start (or, stopping, answer all it received); the message says why and what to do."""


class DrainCutOff(PipelineError):
    """Stopping, the front server's drain deadline passed before it had answered every request it received."""


@dataclass
class PipelineEndpoint:
    """A running pipeline: send requests to ``url`` (or 127.0.0.1:``port``) exactly as to one container."""

    definition: PipelineDefinition
    host: str
    port: int
    containers: list[Endpoint]  # in definition order

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def logs(self) -> str:
        """What every container logged, each under its hostname."""
        return "\n".join(f"==> {endpoint.spec.name} <==\n{endpoint.logs()}" for endpoint in self.containers)


def _unstarted_listener(host: str, port: int) -> socket.socket:
    """Bound now, so that a taken port fails before any container starts; listening only once the front
    server runs, so that clients are refused (as by a container still starting) rather than left waiting."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PipelineError(
                f"port {port} on {host} is already in use; choose another port or stop what uses it"
            ) from None
        raise PipelineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@contextmanager
def _serving_in_background(front: FrontServer, sock: socket.socket) -> Iterator[None]:
    """The front server's event loop on one thread of its own, so that callers (a CLI waiting for Ctrl-C, a
    transform job sending requests) keep theirs."""
    loop = _new_event_loop()
    started: Future = Future()
    cut_off = 0

    def run() -> None:
        nonlocal cut_off
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(front.start(sock))
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
            cut_off = loop.run_until_complete(front.close())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="modelcrate-pipeline-front", daemon=True)
    thread.start()
    try:
        started.result()
    except OSError as exc:
        thread.join()
        raise PipelineError(f"the pipeline's front server cannot listen: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        if cut_off:
            raise DrainCutOff(cut_off_message(front.drain_timeout, cut_off))


def _inference_hints(definition: PipelineDefinition, model_dirs: list[Path | None]) -> list[dict[str, str]]:
    """SAGEMAKER_INFERENCE_SUPPORTED for each container served by this machine's runtime whose Environment does
    not set it, from its model (an image publishes its own). In a serial pipeline, a container followed by a label
    decoder does not list labels."""
    tasks = [
        model_task(model_dir) if model_dir is not None and container.image is None else None
        for container, model_dir in zip(definition.containers, model_dirs, strict=True)
    ]
    hints = []
    for position, (container, task) in enumerate(zip(definition.containers, tasks, strict=True)):
        if task is None or INFERENCE_SUPPORTED in container.environment:
            hints.append({})
            continue
        keys = keys_of_task(*task)
        following = tasks[position + 1] if position + 1 < len(tasks) else None
        if definition.mode == "Serial" and following and following[0] == LABEL_DECODING:
            keys = before_label_decoder(keys)
        hints.append({INFERENCE_SUPPORTED: hint(keys)} if keys else {})
    return hints


@contextmanager
def running_pipeline(
    definition: PipelineDefinition | str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    invocation_timeout: float = DEFAULT_INVOCATION_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> Iterator[PipelineEndpoint]:
    """Start every container (each on its own ``SAGEMAKER_BIND_TO_PORT``), wait until each answers /ping,
    then serve the pipeline on ``host:port`` (a free port when None). On exit the front server stops accepting and
    answers the requests it received (within MODELCRATE_DRAIN_TIMEOUT, else :class:`DrainCutOff`), then every
    container is stopped, even when one failed to start.

    ``definition`` is a validated definition or the path of PIPELINE.json. ``workers`` sets each container's
    SAGEMAKER_MODEL_SERVER_WORKERS unless its Environment does. ``extra_env`` is set in every container over
    its own Environment (a transform job's settings, e.g. SAGEMAKER_BATCH). ``invocation_timeout`` bounds one
    invocation through all containers. ``progress`` receives a line as each container starts.
    """
    if not isinstance(definition, PipelineDefinition):
        definition = load_definition(Path(definition))
    extra_env = dict(extra_env or {})
    for name in RESERVED_ENVIRONMENT:
        if name in extra_env:
            raise PipelineError(f"{name} is set by the pipeline for each container; remove it from extra_env")
    try:
        front_drain_timeout = drain_timeout(os.environ)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    count = len(definition.containers)
    with ExitStack() as stack:
        listener = stack.enter_context(_unstarted_listener(host, port or 0))
        bound_port = listener.getsockname()[1]
        model_dirs = []
        for container in definition.containers:
            model_dir = container.model_source
            if model_dir is not None and model_dir.is_file():
                model_dir = stack.enter_context(unpacked_model(model_dir))  # as SageMaker unpacks ModelDataUrl
            model_dirs.append(model_dir)
        hints = _inference_hints(definition, model_dirs)
        endpoints = []
        containers = zip(definition.containers, model_dirs, hints, strict=True)
        for position, (container, model_dir, inference_hint) in enumerate(containers, start=1):
            if progress:
                what = container.image or str(container.model_source)
                progress(f"starting {container.hostname} ({position} of {count}): {what}")
            spec = ServerSpec(
                model_dir=model_dir,
                image=container.image,
                env={**inference_hint, **container.environment, **extra_env},
                hostname=container.hostname,
            )
            endpoints.append(stack.enter_context(running_server(spec, workers=workers)))
        front = FrontServer(
            [(endpoint.spec.hostname, endpoint.port) for endpoint in endpoints],
            definition.mode,
            invocation_timeout,
            front_drain_timeout,
        )
        stack.enter_context(_serving_in_background(front, listener))
        yield PipelineEndpoint(definition, host, bound_port, endpoints)
