"""Validation runs: each ValidationProfile is a real transform job against the package's own containers.

An application step, not part of the registry: the command line creates a package (status Pending while it
has profiles to run), then runs them here and records the result in the registry.

A container whose image is built here runs in Docker with the package's model mounted; without a Docker
engine (or without the image) the model is served by this machine's runtime, and the status says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelcrate.containers.docker import DockerError, docker, require_engine
from modelcrate.containers.endpoint import ServerError
from modelcrate.registry.artifacts import ArtifactError
from modelcrate.registry.service import Registry
from modelcrate.transform.engine import list_inputs
from modelcrate.transform.job import JobError, TransformJob
from modelcrate.transform.run import run_job
from modelcrate.transform.storage import StorageError
from modelcrate.transform.targets import Target


def _docker_image_ready(image: str | None) -> tuple[bool, str]:
    if not image:
        return False, "the local runtime (the container names no image)"
    try:
        require_engine()
    except DockerError:
        return False, f"the local runtime (no Docker engine here to run {image})"
    if docker("image", "inspect", image, check=False).strip() in ("", "[]"):
        return False, f"the local runtime ({image} is not built here)"
    return True, f"the image {image} (Docker)"


def package_target(registry: Registry, arn: str, scratch: Path) -> tuple[Target, str]:
    """The package's containers as a transform target (one server, or a serial pipeline of them), its
    models unpacked into ``scratch``; and how it will run, in words."""
    containers = registry.describe_model_package(arn)["InferenceSpecification"]["Containers"]
    models, described = [], []
    for index, container in enumerate(containers):
        model_dir = registry.model_directory(arn, scratch / f"model-{index}", container=index)
        in_docker, how = _docker_image_ready(container.get("Image"))
        described.append(how)
        models.append((container, model_dir, in_docker))
    if len(models) == 1:
        container, model_dir, in_docker = models[0]
        env = tuple(sorted(container.get("Environment", {}).items()))
        if in_docker:
            return Target("image", container["Image"], model_dir=str(model_dir), env=env), described[0]
        return Target("model", str(model_dir), env=env), described[0]
    definition = {
        "Containers": [
            {
                **({"Image": c["Image"], "ModelDataUrl": str(d)} if docker else {"ModelDirectory": str(d)}),
                "Environment": c.get("Environment", {}),
                **({"ContainerHostname": c["ContainerHostname"]} if c.get("ContainerHostname") else {}),
            }
            for c, d, docker in models
        ]
    }
    path = scratch / "pipeline.json"
    path.write_text(json.dumps(definition))
    return Target("pipeline", str(path)), "a serial pipeline of " + "; ".join(described)


def _run_profile(registry: Registry, arn: str, profile: dict) -> dict:
    name = profile["ProfileName"]
    status = {"Name": name}
    with registry.store.staging() as scratch:  # not /tmp: recovery removes what a killed validation left
        try:
            target, how = package_target(registry, arn, scratch)
            status["ValidatedWith"] = how
            job = TransformJob.parse(
                {"TransformJobName": f"validate-{name}", **profile["TransformJobDefinition"]},
                f"ValidationProfiles {name} TransformJobDefinition",
            )
            summary = run_job(job, target, list_inputs(job))
        except (JobError, StorageError, ServerError, ArtifactError, OSError) as exc:
            return {**status, "Status": "Failed", "FailureReason": str(exc)}
    if summary.status != "Completed":
        return {**status, "Status": "Failed", "FailureReason": f"the transform job failed: {summary.failure_reason}"}
    return {**status, "Status": "Completed"}


def validate_package(registry: Registry, arn: str) -> None:
    """Run the profiles of a Pending package; its status becomes Completed only if every one succeeds. A package
    run already (a ClientToken retry returns it) or with nothing to run is left as it is."""
    description = registry.describe_model_package(arn)
    profiles = description.get("ValidationSpecification", {}).get("ValidationProfiles", [])
    if description["ModelPackageStatus"] != "Pending" or not profiles:
        return
    registry.set_validation(arn, "InProgress", [{"Name": p["ProfileName"], "Status": "InProgress"} for p in profiles])
    statuses = [_run_profile(registry, arn, profile) for profile in profiles]
    outcome = "Completed" if all(s["Status"] == "Completed" for s in statuses) else "Failed"
    registry.set_validation(arn, outcome, statuses)


def create_validated_package(registry: Registry, request: dict) -> dict:
    """CreateModelPackage, then the package's validation run (its status goes Pending -> Completed or Failed)."""
    answer = registry.create_model_package(request)
    validate_package(registry, answer["ModelPackageArn"])
    return answer
