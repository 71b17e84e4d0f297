"""What a transform job runs against: a model directory (this machine's runtime), a built image, a generated
project (its image), or a serial inference pipeline; InstanceCount servers of it, each on its own port."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelcrate.containers.endpoint import ServerSpec, execution_parameters, running_server
from modelcrate.transform.engine import HttpInvoker, Response
from modelcrate.transform.job import TransformJob


class TargetError(ValueError):
    """The target cannot be used; the message says why and what to pass instead."""


@dataclass(frozen=True)
class Target:
    kind: str  # "model", "image", "project" or "pipeline"
    location: str
    model_dir: str | None = None  # an image's /opt/ml/model, as SageMaker unpacks ModelDataUrl there
    env: tuple[tuple[str, str], ...] = ()  # the container's own Environment (the job's wins)

    def describe(self) -> str:
        return f"{self.kind} {self.location}"


def resolve_target(target: str) -> Target:
    """A pipeline definition (``*.json``), a project (has modelcrate-project.json), a model directory, or an
    image reference."""
    from modelcrate.scaffold.generate import PROJECT_FILE

    path = Path(target)
    if path.is_file() and path.suffix == ".json":
        return Target("pipeline", str(path))
    if (path / PROJECT_FILE).is_file():
        return Target("project", str(path))
    if path.is_dir():
        return Target("model", str(path))
    if "/" in target and target.startswith((".", "/")):
        raise TargetError(f"{target} does not exist; pass a model directory, a project, a pipeline .json or an image")
    return Target("image", target)


def job_environment(job: TransformJob) -> dict[str, str]:
    """What SageMaker sets in a transform container: the job's Environment plus the batch settings it names."""
    env = {"SAGEMAKER_BATCH": "true", **job.Environment}
    if job.MaxPayloadInMB is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job.MaxPayloadInMB)
    if job.BatchStrategy:
        env["SAGEMAKER_BATCH_STRATEGY"] = "MULTI_RECORD" if job.BatchStrategy == "MultiRecord" else "SINGLE_RECORD"
    if job.MaxConcurrentTransforms:
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job.MaxConcurrentTransforms)
    return env


def _image_of_project(location: str) -> str:
    from modelcrate.containers.docker import Project, docker

    project = Project.load(Path(location))
    if docker("image", "inspect", project.image, check=False).strip() in ("", "[]"):
        raise TargetError(f"{project.image} (project {location}) is not built: modelcrate build {location}")
    return project.image


@contextmanager
def running_target(
    target: Target, job: TransformJob, instances: int, workers: int | None = None
) -> Iterator[tuple[list[HttpInvoker], dict | None]]:
    """Start ``instances`` servers of the target; yields their invokers and the first one's
    /execution-parameters answer (None when it has none)."""
    env = job_environment(job)
    timeout = float((job.ModelClientConfig or {}).get("InvocationsTimeoutInSeconds", 600))
    with ExitStack() as stack:
        ports = []
        for _ in range(instances):
            if target.kind == "pipeline":
                from modelcrate.pipeline import running_pipeline

                pipeline = running_pipeline(target.location, workers=workers, extra_env=env, invocation_timeout=timeout)
                endpoint = stack.enter_context(pipeline)
            else:
                image = _image_of_project(target.location) if target.kind == "project" else None
                container_env = {**dict(target.env), **env}
                spec = (
                    ServerSpec(model_dir=Path(target.location), env=container_env)
                    if target.kind == "model"
                    else ServerSpec(
                        image=image or target.location,
                        model_dir=Path(target.model_dir) if target.model_dir else None,
                        env=container_env,
                    )
                )
                endpoint = stack.enter_context(running_server(spec, workers=workers))
            ports.append(endpoint.port)
        yield [HttpInvoker(port, timeout) for port in ports], execution_parameters(ports[0])


class InProcessInvoker:
    """The runtime's decode -> predict -> encode called directly, without HTTP: the Ray engine's in-process
    mode and the benchmark's floor. Thread-safe: the predictors are."""

    def __init__(self, model_dir: Path, env: Mapping[str, str]):
        from modelcrate.serving.config import ServingConfig
        from modelcrate.serving.service import InferenceService

        config = ServingConfig.from_env({**env, "SM_MODEL_DIR": str(model_dir)}, workers=1)
        self.service = InferenceService.load(config)
        self.service.warm_up()
        self.parameters = config.execution_parameters

    def invoke(self, body: bytes, headers: dict[str, str], chunked: bool = False) -> Response:
        from modelcrate.serving.errors import HttpError

        try:
            payload, content_type = self.service.invoke(body, headers.get("Content-Type"), headers.get("Accept"))
        except HttpError as exc:
            return Response(exc.status, "text/plain", exc.message.encode())
        return Response(200, content_type, payload)
