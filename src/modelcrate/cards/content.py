"""A card's Content: parsed, checked against the model card schema, filled from a package, compared."""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources

from modelcrate.registry.service import RegistryError

MAX_CONTENT_CHARS = 100_000
# The sections a card for a new package version keeps from the card it is cloned from.
CARRIED_OVER_SECTIONS = ("business_details", "intended_uses", "additional_information")
TRAINING_METRIC_PREFIX = "training."


class ContentError(RegistryError):
    """Content that breaks the schema; ``violations`` lists each one as {"Path": "$...", "Message": ...}."""

    def __init__(self, violations: list[dict]):
        self.violations = violations
        listed = "; ".join(f"{v['Path']}: {v['Message']}" for v in violations)
        super().__init__(f"Content does not follow the model card schema ({len(violations)} violation(s)): {listed}")


@functools.cache
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(resources.files("modelcrate.cards").joinpath("schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _path_key(parts) -> tuple:
    # Indexes sort numerically ([2] before [10]); a key and an index never share a position in one document.
    return tuple((isinstance(part, str), part) for part in parts)


def parse_content(content) -> dict:
    """Content as a dict (given as one, or as a JSON string), within the size limit and valid."""
    if isinstance(content, str):
        size = len(content)
        try:
            content = json.loads(content)
        except ValueError as exc:
            raise RegistryError(f"Content is not valid JSON: {exc}") from None
    else:
        size = len(json.dumps(content, separators=(",", ":"), ensure_ascii=False, default=str))
    if not isinstance(content, dict):
        raise RegistryError(f"Content must be a JSON object (the card's sections), not {type(content).__name__}")
    if size > MAX_CONTENT_CHARS:
        raise RegistryError(f"Content is {size:,} characters of JSON; a card holds at most {MAX_CONTENT_CHARS:,}")
    violations = sorted(
        (violation for error in _validator().iter_errors(content) for violation in _violations(error)),
        key=lambda v: (_path_key(v[0]), v[1]),
    )
    if violations:
        raise ContentError([{"Path": json_path(parts), "Message": message} for parts, message in violations])
    return content


def _violations(error) -> list[tuple[tuple, str]]:
    """(path, message) of a schema error; an unexpected field is reported at its own path, one by one."""
    parts = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        return [
            (
                (*parts, key),
                f"{key!r} is not a field here (the fields are: {', '.join(known)})",
            )
            for key in error.instance
            if key not in known
        ]
    return [(parts, error.message)]


def model_id_of(content: dict) -> str | None:
    """The model a card documents: model_overview.model_id, else the linked package version's ARN."""
    return content.get("model_overview", {}).get("model_id") or content.get("model_package_details", {}).get(
        "model_package_arn"
    )


def _number(text: str) -> int | float | None:
    """A metric recorded as text ("0.93", "12") as a JSON number; None when it is not a finite number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def content_from_package(package: dict) -> dict:
    """model_overview, model_package_details and the training metrics of a DescribeModelPackage answer."""
    specification = package.get("InferenceSpecification", {})
    containers = specification.get("Containers", [])
    metadata = package.get("CustomerMetadataProperties", {})
    overview: dict = {"model_name": package.get("ModelPackageGroupName") or package["ModelPackageName"]}
    if package.get("ModelPackageVersion") is not None:
        overview["model_version"] = package["ModelPackageVersion"]
    if package.get("ModelPackageDescription"):
        overview["model_description"] = package["ModelPackageDescription"]
    if metadata.get("task") or package.get("Task"):
        overview["problem_type"] = metadata.get("task") or package["Task"]
    artifacts = [c["ModelDataUrl"] for c in containers if c.get("ModelDataUrl")]
    if artifacts:
        overview["model_artifact"] = artifacts
    if containers:
        overview["inference_environment"] = {"container_image": [c["Image"] for c in containers]}

    details: dict = {"model_package_arn": package["ModelPackageArn"], "model_package_name": package["ModelPackageName"]}
    for card_key, package_key in (
        ("model_package_group_name", "ModelPackageGroupName"),
        ("model_package_version", "ModelPackageVersion"),
        ("model_package_description", "ModelPackageDescription"),
        ("model_approval_status", "ModelApprovalStatus"),
        ("approval_description", "ApprovalDescription"),
        ("model_package_status", "ModelPackageStatus"),
        ("domain", "Domain"),
        ("task", "Task"),
    ):
        if package.get(package_key) is not None:
            details[card_key] = package[package_key]
    if package.get("CreatedBy", {}).get("UserProfileName"):
        details["created_by"] = {"user_profile_name": package["CreatedBy"]["UserProfileName"]}
    if containers:
        details["inference_specification"] = {"containers": [_container(c) for c in containers]}

    content = {"model_overview": overview, "model_package_details": details}
    metrics = []
    for key, text in sorted(metadata.items()):
        value = _number(text)
        # Only numbers fit training_metrics; other values stay on the package's metadata.
        if key.startswith(TRAINING_METRIC_PREFIX) and value is not None:
            metrics.append({"name": key[len(TRAINING_METRIC_PREFIX) :], "value": value})
    if metrics:
        content["training_details"] = {"training_job_details": {"training_metrics": metrics}}
    return content


def _container(container: dict) -> dict:
    described = {"container_image": container["Image"]}
    for card_key, package_key in (
        ("model_data_url", "ModelDataUrl"),
        ("nearest_model_name", "NearestModelName"),
        ("framework", "Framework"),
        ("framework_version", "FrameworkVersion"),
    ):
        if container.get(package_key):
            described[card_key] = container[package_key]
    return described


def carried_over(content: dict) -> dict:
    return {section: copy.deepcopy(content[section]) for section in CARRIED_OVER_SECTIONS if section in content}


def _leaves(value, parts: tuple = ()) -> dict[tuple, object]:
    """Every leaf of a document by its path; an empty object or list (below the root) is a leaf itself."""
    if isinstance(value, dict) and (value or not parts):
        return {path: leaf for key, item in value.items() for path, leaf in _leaves(item, (*parts, key)).items()}
    if isinstance(value, list) and value:
        return {path: leaf for index, item in enumerate(value) for path, leaf in _leaves(item, (*parts, index)).items()}
    return {parts: value}


def diff_contents(old: dict, new: dict) -> list[dict]:
    """Each changed leaf as {"Path", "Old", "New"}; an added or removed field has None on its missing side."""
    before, after = _leaves(old), _leaves(new)
    changed = [
        path
        for path in before.keys() | after.keys()
        if path not in before or path not in after or not _same(before[path], after[path])
    ]
    return [
        {"Path": json_path(path), "Old": before.get(path), "New": after.get(path)}
        for path in sorted(changed, key=_path_key)
    ]


def _same(old, new) -> bool:
    # true == 1 in Python, not in a card: a boolean and a number always differ.
    return isinstance(old, bool) == isinstance(new, bool) and old == new
