"""``registry register``: a model directory or a generated project as a CreateModelPackage request, registered
(and validated) as the group's next version, with a card carried over from the version before it.

An application step over the registry: it reads projects (scaffold, containers) and drafts cards, which the
registry never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import modelcrate
from modelcrate.archives import pack_directory
from modelcrate.cards.service import Cards
from modelcrate.containers.docker import Project
from modelcrate.predictors import METADATA_FILE, ModelLoadError, ModelMetadata, find_model_file
from modelcrate.predictors.trust import record_model_files, recorded_file_problems
from modelcrate.registry.db import registry_home
from modelcrate.registry.service import Registry, RegistryError
from modelcrate.scaffold.generate import PROJECT_FILE
from modelcrate.scaffold.options import INSTANCE_PRESETS, SAGEMAKER_FRAMEWORKS
from modelcrate.serving.hints import INFERENCE_SUPPORTED, hint_of_model
from modelcrate.validation import create_validated_package

CONTENT_TYPES = ["text/csv", "application/json", "application/jsonlines", "application/x-npy"]
RESPONSE_TYPES = ["application/json", "text/csv", "application/jsonlines"]
DEFAULT_INSTANCE = "ml.m5.large"
# A model directory registered without an image is served by this machine's runtime (validation says so).
LOCAL_RUNTIME_IMAGE = f"modelcrate-local-runtime:{modelcrate.__version__}"


def _model_and_image(source: Path, image: str | None) -> tuple[Path, str, str]:
    """(model directory, image, instance type) of a project or a bare model directory."""
    if (source / PROJECT_FILE).is_file():
        project = Project.load(source)
        model_dir = source / "model"
        if not model_dir.is_dir():
            raise RegistryError(
                f"project {source} bakes no model (model source {project.options.model_source}); register the "
                "model directory itself"
            )
        instance = INSTANCE_PRESETS.get(project.options.instance_type, project.options.instance_type)
        return model_dir, image or project.image, instance
    if not source.is_dir():
        raise RegistryError(f"{source} is neither a model directory nor a project made by modelcrate init")
    return source, image or LOCAL_RUNTIME_IMAGE, DEFAULT_INSTANCE


def _pack_with_digests(model_dir: Path, metadata: ModelMetadata, scratch: Path) -> Path:
    """The archive of ``model_dir``, whose modelcrate.json records the sha256 of the model files: checked when
    recorded already (a changed file is refused), else recorded in the packed copy only (the user's directory is
    left as it is). The framework version is not compared: this machine need not have the one that serves."""
    problems = recorded_file_problems(model_dir, metadata)
    if problems:
        raise RegistryError(f"cannot register {model_dir}: {problems[0]}")
    if metadata.sha256_of_files:
        return pack_directory(model_dir, scratch)
    try:
        found = find_model_file(model_dir, metadata.model_format)
    except ModelLoadError:
        return pack_directory(model_dir, scratch)  # a model only the user's model_fn loads: no file to record
    record_model_files(model_dir, found, metadata)
    return pack_directory(model_dir, scratch, replaced={METADATA_FILE: metadata.to_json().encode()})


def registration_request(
    source: Path,
    group: str,
    description: str | None = None,
    approval_status: str | None = None,
    image: str | None = None,
    validation_input: str | None = None,
    *,
    scratch: Path,
) -> dict:
    """The CreateModelPackage request; the model is packed as ``scratch/model.tar.gz``, which must outlive the
    registration."""
    model_dir, image, instance = _model_and_image(Path(source), image)
    metadata = ModelMetadata.read(model_dir)
    container: dict = {"Image": image, "ModelDataUrl": str(_pack_with_digests(model_dir, metadata, scratch))}
    if metadata.framework in SAGEMAKER_FRAMEWORKS:
        container["Framework"] = SAGEMAKER_FRAMEWORKS[metadata.framework]
    if metadata.framework_version:
        container["FrameworkVersion"] = metadata.framework_version
    supported = hint_of_model(model_dir)
    if supported:
        container["Environment"] = {INFERENCE_SUPPORTED: supported}
    request: dict = {
        "ModelPackageGroupName": group,
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": RESPONSE_TYPES,
            "SupportedTransformInstanceTypes": [instance],
            "SupportedRealtimeInferenceInstanceTypes": [instance],
        },
        "CustomerMetadataProperties": {
            **{f"training.{name}": str(value) for name, value in metadata.metrics.items()},
            **({"task": metadata.task} if metadata.task else {}),
        },
    }
    if not request["CustomerMetadataProperties"]:
        del request["CustomerMetadataProperties"]
    if description:
        request["ModelPackageDescription"] = description
    if approval_status:
        request["ModelApprovalStatus"] = approval_status
    if validation_input:
        output = registry_home() / "validation-output" / group
        request["ValidationSpecification"] = {
            "ValidationRole": "arn:aws:iam::000000000000:role/modelcrate-local-validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "validation",
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": validation_input}},
                            "ContentType": "text/csv",
                            "SplitType": "Line",
                        },
                        "TransformOutput": {"S3OutputPath": str(output), "Accept": "text/csv"},
                        "TransformResources": {"InstanceType": instance, "InstanceCount": 1},
                    },
                }
            ],
        }
    return request


@dataclass(frozen=True)
class Registered:
    package: dict  # DescribeModelPackage of the new version
    card: dict | None  # DescribeModelCard of the card carried over to it, if one was


def register(registry: Registry, request: dict, *, carry_card: bool = True) -> Registered:
    """Register a versioned CreateModelPackage request as its group's next version (the group is created when
    missing) and run its validation; then, unless ``carry_card`` is False, draft the new version's card from the
    card of the version before it (Cards.carry_forward)."""
    registry.ensure_model_package_group(request["ModelPackageGroupName"])
    arn = create_validated_package(registry, request)["ModelPackageArn"]
    try:
        card = Cards(registry).carry_forward(arn) if carry_card else None
    except RegistryError as exc:
        # The package stays registered: say so, and how to make its card by hand.
        raise type(exc)(
            f"{arn} is registered, but no card was carried over to it: {exc} (modelcrate card clone makes one)"
        ) from None
    return Registered(registry.describe_model_package(arn), card)
