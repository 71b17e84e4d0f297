"""A pipeline definition: the JSON of SageMaker's CreateModel with ``Containers``, checked as a whole.

Every problem is reported at once, each with its JSON path (``$.Containers[1].ContainerHostname``), so a
definition is fixed in one round. Model data is local: ``ModelDataUrl`` is a path or ``file://`` URI of a
model directory or ``model.tar.gz`` (relative paths are relative to the definition file), and
``ModelDirectory`` is modelcrate's plainer spelling for a directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

MIN_CONTAINERS, MAX_CONTAINERS = 2, 15
# SageMaker's pattern for ContainerHostname.
HOSTNAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ENVIRONMENT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
# The pipeline gives each container its own port; a definition setting it would break the wiring.
RESERVED_ENVIRONMENT = ("SAGEMAKER_BIND_TO_PORT",)
# CreateModel keys that only mean something on AWS: accepted, so a CreateModel request can be used as is.
AWS_ONLY_KEYS = ("ExecutionRoleArn", "Tags", "VpcConfig", "EnableNetworkIsolation")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
CONTAINER_KEYS = "Image, ModelDataUrl, ModelDirectory, Environment, ContainerHostname"


class PipelineDefinitionError(ValueError):
    """The definition is not usable; ``problems`` lists each one as ``$.json.path: what is wrong``."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(f"{source} has {count}:\n{listed}")


class ContainerDefinition(BaseModel):
    """One container: an image, a model, or both (the image serves the model mounted at /opt/ml/model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image: str | None = Field(None, alias="Image", min_length=1)
    # Both hold the resolved absolute local path once validated.
    model_data_url: str | None = Field(None, alias="ModelDataUrl", min_length=1)
    model_directory: str | None = Field(None, alias="ModelDirectory", min_length=1)
    environment: dict[str, str] = Field(default_factory=dict, alias="Environment")
    hostname: str | None = Field(None, alias="ContainerHostname")

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not HOSTNAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a hostname: use 1 to 63 letters, digits and hyphens, "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not ENVIRONMENT_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: environment variable names are letters, digits and _")
        reserved = [name for name in RESERVED_ENVIRONMENT if name in value]
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by the pipeline for each container; remove it")
        return value

    @field_validator("model_data_url")
    @classmethod
    def _model_data_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        url = urlparse(value)
        if url.scheme == "file":
            if url.netloc not in ("", "localhost"):
                raise ValueError(f"{value!r} names host {url.netloc!r}; a file:// URI here must be on this machine")
            path = Path(unquote(url.path))
        elif len(url.scheme) > 1:  # one letter is a Windows drive, not a scheme
            raise ValueError(
                f"{value!r}: {url.scheme}:// model data is not fetched by modelcrate; download it "
                "(e.g. aws s3 cp) and give the local model.tar.gz or directory"
            )
        else:
            path = Path(value)
        path = _resolve(path, info)
        if path.is_dir():
            return str(path)
        if not path.exists():
            raise ValueError(f"{path} does not exist; give a model directory or a model.tar.gz")
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            raise ValueError(f"{path} is a file but not a model.tar.gz; give a model directory or a .tar.gz")
        return str(path)

    @field_validator("model_directory")
    @classmethod
    def _model_directory(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = _resolve(Path(value), info)
        if not path.is_dir():
            problem = "is not a directory" if path.exists() else "does not exist"
            raise ValueError(f"{path} {problem}; ModelDirectory is a model directory (use ModelDataUrl for a .tar.gz)")
        return str(path)

    @model_validator(mode="after")
    def _has_something_to_serve(self) -> ContainerDefinition:
        if self.model_data_url and self.model_directory:
            raise ValueError("give ModelDataUrl or ModelDirectory, not both")
        if not (self.image or self.model_data_url or self.model_directory):
            raise ValueError(
                "nothing to serve: give an Image, a model (ModelDataUrl: directory or model.tar.gz; or "
                "ModelDirectory), or both"
            )
        return self

    @property
    def model_source(self) -> Path | None:
        """The local model directory or model.tar.gz, absolute; None when the image holds the model."""
        source = self.model_data_url or self.model_directory
        return Path(source) if source else None


class InferenceExecutionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    mode: Literal["Serial", "Direct"] = Field("Serial", alias="Mode")


class PipelineDefinition(BaseModel):
    """Containers called in order (Serial) or one at a time by hostname (Direct). Every container has a
    hostname once validated: SageMaker's, or ``container-<position>`` when none is given."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_name: str | None = Field(None, alias="ModelName")
    containers: list[ContainerDefinition] = Field(alias="Containers")
    execution: InferenceExecutionConfig = Field(
        default_factory=InferenceExecutionConfig, alias="InferenceExecutionConfig"
    )

    @property
    def mode(self) -> str:
        return self.execution.mode

    @property
    def name(self) -> str:
        return self.model_name or "pipeline"

    @model_validator(mode="wrap")
    @classmethod
    def _whole_pipeline(cls, data: Any, handler) -> PipelineDefinition:
        """Field errors and the rules across containers, reported together rather than one round each."""
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key not in AWS_ONLY_KEYS}
        errors = [_custom_error(loc, message) for loc, message in _pipeline_problems(data)]
        try:
            definition = handler(data)
        except ValidationError as exc:
            errors = [_custom_error(e["loc"], _describe(e)) for e in exc.errors()] + errors
            definition = None
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for position, container in enumerate(definition.containers, start=1):
            container.hostname = container.hostname or f"container-{position}"
        return definition


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = Path((info.context or {}).get("base_dir") or ".")
    return (base / path.expanduser()).resolve()


def _pipeline_problems(data: Any) -> list[tuple[tuple, str]]:
    """The rules across containers, read from the raw JSON (shape errors are the field checks' to report)."""
    if not isinstance(data, dict):
        return []
    containers = data.get("Containers")
    if not isinstance(containers, list):
        return []
    problems: list[tuple[tuple, str]] = []
    if not MIN_CONTAINERS <= len(containers) <= MAX_CONTAINERS:
        problems.append(
            (
                ("Containers",),
                f"has {len(containers)} container(s); a pipeline has {MIN_CONTAINERS} to {MAX_CONTAINERS}"
                + (" (serve a single model with modelcrate serve)" if len(containers) == 1 else ""),
            )
        )
    hostnames = [c.get("ContainerHostname") if isinstance(c, dict) else None for c in containers]
    config = data.get("InferenceExecutionConfig")
    direct = isinstance(config, dict) and config.get("Mode") == "Direct"
    named = [h for h in hostnames if h is not None]
    if named or direct:
        why = (
            "Direct mode selects containers by hostname, so each needs a ContainerHostname"
            if direct
            else "when one container has a ContainerHostname, every container needs one (as in SageMaker)"
        )
        problems += [
            (("Containers", i, "ContainerHostname"), f"missing; {why}")
            for i, (container, hostname) in enumerate(zip(containers, hostnames, strict=True))
            if isinstance(container, dict) and hostname is None
        ]
    first_of: dict[str, int] = {}
    for i, hostname in enumerate(hostnames):
        if not isinstance(hostname, str):
            continue
        if hostname in first_of:
            problems.append(
                (
                    ("Containers", i, "ContainerHostname"),
                    f"{hostname!r} is already the hostname of $.Containers[{first_of[hostname]}]; hostnames are unique",
                )
            )
        first_of.setdefault(hostname, i)
    return problems


_TOP_LEVEL_HINTS = {
    "PrimaryContainer": "describes a single-container model; a pipeline lists 2 to 15 containers under "
    "Containers (serve a single model with modelcrate serve)",
}


def _describe(error: dict) -> str:
    """Pydantic's message, reworded where it would not tell a person what to write instead."""
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        key = loc[-1]
        if len(loc) == 1:
            return _TOP_LEVEL_HINTS.get(
                key, "unknown key; a pipeline takes Containers, InferenceExecutionConfig and ModelName"
            )
        if loc[0] == "Containers":
            return f"unknown key; a container takes {CONTAINER_KEYS}"
        return "unknown key; InferenceExecutionConfig takes Mode"
    if kind == "missing":
        return "missing; a pipeline lists its containers here" if loc == ("Containers",) else "missing"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "string_type" and len(loc) == 4 and loc[2] == "Environment":
        return f"must be a string (write {json.dumps(str(error['input']))}, not {json.dumps(error['input'])})"
    if kind == "literal_error" and loc[-1] == "Mode":
        return f"{error['input']!r} is not a mode; use Serial or Direct"
    if kind == "list_type":
        return "must be a list of container definitions"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a JSON object"
    return error["msg"]


def _custom_error(loc: tuple, message: str) -> dict:
    # "{message}" as the template: a message with braces in it must not be read as a format string.
    return {"type": PydanticCustomError("pipeline", "{message}", {"message": message}), "loc": loc, "input": None}


def json_path(loc: tuple) -> str:
    """``("Containers", 1, "Image")`` -> ``$.Containers[1].Image``."""
    path = "$"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


def parse_definition(
    raw: Any, base_dir: Path | str = ".", source: str = "the pipeline definition"
) -> PipelineDefinition:
    """Validate a definition already read from JSON; relative model paths are taken from ``base_dir``."""
    try:
        return PipelineDefinition.model_validate(raw, context={"base_dir": Path(base_dir)})
    except ValidationError as exc:
        # In document order, so that each container's problems read together.
        errors = sorted(exc.errors(), key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e["loc"]])
        problems = [f"{json_path(e['loc'])}: {e['msg']}" for e in errors]
        raise PipelineDefinitionError(source, problems) from None


def load_definition(path: Path | str) -> PipelineDefinition:
    """Read and validate ``PIPELINE.json``; model paths in it are relative to its directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineDefinitionError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineDefinitionError(str(path), [f"line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    return parse_definition(raw, path.parent, str(path))
