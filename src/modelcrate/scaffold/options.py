"""Options of a generated project: one typed model, its validation, and where each value came from.

Precedence: flags > environment (``MODELCRATE_<OPTION>``) > config file (YAML or JSON) > defaults > prompts.
Prompts ask only for what no other source gave, and only on a terminal without ``--yes``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from modelcrate.predictors import FORMATS_OF_FRAMEWORK
from modelcrate.predictors.formats import FRAMEWORK_OF_FORMAT, format_of

FRAMEWORKS = tuple(FORMATS_OF_FRAMEWORK)
# How CreateModelPackage's ModelPackageContainerDefinition.Framework names each framework.
SAGEMAKER_FRAMEWORKS = {"sklearn": "SKLEARN", "xgboost": "XGBOOST", "tensorflow": "TENSORFLOW"}
TRAINING_FRAMEWORKS = ("sklearn", "xgboost")  # what `modelcrate.training` can train inside an image
MODEL_SOURCES = ("local", "sample", "s3", "registry")
DEPLOY_TARGETS = ("sagemaker", "codebuild")
INSTANCE_PRESETS = {"cpu": "ml.m5.xlarge", "gpu": "ml.g5.xlarge"}
# The seed system's pins; a model file that records another version wins (with a warning).
DEFAULT_FRAMEWORK_VERSIONS = {"sklearn": "1.7.1", "xgboost": "2.1.3", "tensorflow": "2.20.0"}
DEFAULT_BASE_IMAGE = "python:3.11-slim"
GRAVITON_FAMILIES = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")
GPU_FAMILIES = re.compile(r"^ml\.[gp]\d")  # ml.g4dn, ml.g5, ml.p3, ml.p4d...: NVIDIA GPUs

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_INSTANCE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(medium|large|small|\d*xlarge)$")
_REGION = re.compile(
    r"^(us|eu|ap|sa|ca|me|af|il|mx|cn)(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|southeast|northwest"
    r"|southwest)-\d$"
)
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


class OptionsError(ValueError):
    """One clear line about what is wrong with an option."""


class ProjectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_name: str
    framework: Literal["sklearn", "xgboost", "tensorflow"]
    model_format: str
    model_source: Literal["local", "sample", "s3", "registry"] = "sample"
    model_path: Path | None = None
    sample_task: Literal["regression", "classification"] = "regression"
    registry_package: str | None = None
    include_tests: bool = True
    # Compile tree models (scikit-learn ensembles, XGBoost) to ONNX for faster serving: `modelcrate optimize`.
    optimize: bool = False
    # Also an algorithm: `docker run IMAGE train` follows SageMaker's training contract (modelcrate.training).
    with_training: bool = False
    deploy_target: Literal["sagemaker", "codebuild"] = "sagemaker"
    instance_type: str = "cpu"
    region: str = "us-east-1"
    role_arn: str | None = None
    destination: Path | None = None
    base_image: str = DEFAULT_BASE_IMAGE

    @field_validator("project_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-63 lower-case letters, digits and hyphens, starting with a letter")
        return value

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        value = INSTANCE_PRESETS.get(value, value)
        if not _INSTANCE.match(value):
            raise ValueError("use cpu, gpu or ml.<family>.<size> such as ml.m5.xlarge")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError("not an AWS region name such as us-east-1 or eu-west-2")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value and not _ROLE_ARN.match(value):
            raise ValueError("not an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> ProjectOptions:
        # Each message begins with the option it blames: a prompt re-asks only the option its answer broke.
        if self.model_source == "local":
            self._check_model_path()
        formats = FORMATS_OF_FRAMEWORK[self.framework]
        if self.model_format not in formats:
            raise ValueError(
                f"model_format {self.model_format!r} is not a {self.framework} format; use one of {', '.join(formats)}"
            )
        if self.model_source == "registry" and not self.registry_package:
            raise ValueError(
                "registry_package is needed for model_source registry: GROUP (its latest Approved version) or GROUP/N"
            )
        if self.with_training and self.framework not in TRAINING_FRAMEWORKS:
            raise ValueError(
                f"with_training: {self.framework} images cannot train yet; "
                f"use framework {' or '.join(TRAINING_FRAMEWORKS)}, or leave out --with-training"
            )
        return self

    def _check_model_path(self) -> None:
        if self.model_path is None:
            raise ValueError("model_path is needed for model_source local: the model file or directory to copy")
        if not self.model_path.exists():
            raise ValueError(f"model_path {self.model_path} does not exist")
        found = format_of(self.model_path)
        if found is None:
            raise ValueError(
                f"model_path {self.model_path}: its name tells no model format; name the file *.pkl, *.joblib, "
                "*.json, *.ubj, *.model, *.keras or *.h5, or give a SavedModel directory"
            )
        if FRAMEWORK_OF_FORMAT[found] != self.framework:
            raise ValueError(
                f"model_path {self.model_path} is a {found} model file, which is {FRAMEWORK_OF_FORMAT[found]}'s, "
                f"not {self.framework}'s: give framework {FRAMEWORK_OF_FORMAT[found]}"
            )
        if found != self.model_format:
            raise ValueError(
                f"model_format {self.model_format!r} contradicts model_path {self.model_path}, a {found} file: "
                f"leave model_format out (the file's name tells it) or give {found}"
            )

    @property
    def target_dir(self) -> Path:
        return self.destination or Path(self.project_name)

    @property
    def gpu(self) -> bool:
        return bool(GPU_FAMILIES.match(self.instance_type))

    @property
    def platform(self) -> str:
        """Graviton instance families run arm64 images; every other family runs amd64."""
        return "linux/arm64" if GRAVITON_FAMILIES.match(self.instance_type) else "linux/amd64"


FIELDS = tuple(ProjectOptions.model_fields)
ENV_PREFIX = "MODELCRATE_"


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise OptionsError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # json and yaml errors both derive from ValueError
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise OptionsError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise OptionsError(f"config file {path} must hold a mapping of option names to values")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise OptionsError(f"config file {path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[ENV_PREFIX + name.upper()] for name in FIELDS if env.get(ENV_PREFIX + name.upper())}


def default_values(chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults that depend on what was already chosen."""
    defaults = {name: field.default for name, field in ProjectOptions.model_fields.items() if not field.is_required()}
    framework = chosen.get("framework")
    if file_format := _model_file_format(chosen):
        defaults["model_format"] = file_format
    elif framework in FORMATS_OF_FRAMEWORK:
        defaults["model_format"] = FORMATS_OF_FRAMEWORK[framework][0]
    return {k: v for k, v in defaults.items() if v is not None}


def _model_file_format(chosen: Mapping[str, Any]) -> str | None:
    """The format a local model's file name tells, or None."""
    if chosen.get("model_source") != "local" or not chosen.get("model_path"):
        return None
    return format_of(Path(chosen["model_path"]))


Prompter = Callable[[str, Mapping[str, Any]], Any]


def resolve(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    prompt: Prompter | None = None,
) -> tuple[ProjectOptions, dict[str, str]]:
    """Merge the sources; returns the options and, for each option, where its value came from."""
    env = os.environ if env is None else env
    layers = [
        ("flag", {k: v for k, v in flags.items() if v is not None}),
        ("environment", _from_env(env)),
        ("config file", read_config_file(config_file) if config_file else {}),
    ]
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, layer in layers:
        for name, value in layer.items():
            if name not in values:
                values[name], origin[name] = value, source
    if prompt is not None:
        # Prompts come before defaults only in being asked; a default is offered as the answer.
        for name in (
            "project_name",
            "framework",
            "model_source",
            "model_path",
            "registry_package",
            "model_format",
            "sample_task",
            "include_tests",
            "optimize",
            "with_training",
            "deploy_target",
            "instance_type",
            "region",
            "role_arn",
            "base_image",
        ):
            if name in values or not _asked(name, values):
                continue
            answer = prompt(name, {**default_values(values), **values})
            if answer not in (None, ""):
                values[name], origin[name] = answer, "prompt"
    for name, value in default_values(values).items():
        if name not in values:
            from_file = name == "model_format" and _model_file_format(values)
            values[name], origin[name] = value, "model file name" if from_file else "default"
    try:
        options = ProjectOptions(**values)
    except ValidationError as exc:
        raise OptionsError(_one_line(exc)) from None
    return options, origin


def _asked(name: str, values: Mapping[str, Any]) -> bool:
    source = values.get("model_source", "sample")
    if name == "model_path":
        return source == "local"
    if name == "registry_package":
        return source == "registry"
    if name == "model_format":
        return source != "local"  # a local model's file name tells its format
    if name == "sample_task":
        return source == "sample"
    if name == "with_training":
        return values.get("framework") in TRAINING_FRAMEWORKS
    return True


def _one_line(exc: ValidationError) -> str:
    return _describe(exc.errors()[0])


def _describe(error) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "options"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        flag = where.replace("_", "-")
        return f"{where} is required: give --{flag}, {ENV_PREFIX}{where.upper()} or set it in --config"
    if error["type"] == "literal_error":
        return f"{where}: {error['input']!r} is not allowed; {message.lower()}"
    if where == "options":
        return message
    return f"{where} {error['input']!r}: {message}"


def answer_problem(name: str, value: Any, known: Mapping[str, Any]) -> str | None:
    """What is wrong with a prompted answer, judged with what is known so far (None: nothing)."""
    values = {**default_values({**known, name: value}), **known, name: value}
    try:
        ProjectOptions(**values)
    except ValidationError as exc:
        for error in exc.errors():
            location = error["loc"]
            blames_name = re.match(rf"(Value error, )?{name}\b", error["msg"])
            if (location and location[0] == name) or (not location and blames_name):
                return _describe(error)
    return None
