"""The registry's and the model cards' requests, checked against botocore's own ``sagemaker`` service model.

Types, required members, lengths, ranges, enums and patterns are read from the installed botocore, so a newer
botocore brings its new limits and choices with no change here. What modelcrate does differently sits below, in
one place: the members it honours (``HONOURED``), those it refuses and why (``REFUSED``), its own rules for one
member (``MEMBER_RULES``: local paths besides ``s3://``, group, package and card references), members it needs
(``REQUIRED``) or fills in (``DEFAULTS``), and rules across a request (``REQUEST_RULES``). A member that botocore
knows and neither table names is newer than this code: it is refused with a message saying so, never dropped in
silence.

``parse`` reports every problem at once, each as ``Field.Path[0].Sub: what was wrong (what is allowed)``.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import botocore
import botocore.session
import regex
from botocore.model import ServiceModel, Shape, StructureShape

from modelcrate.serving.config import MAX_PAYLOAD_MB

MAX_ENVIRONMENT_VARIABLE = "MODELCRATE_REGISTRY_MAX_ENVIRONMENT"
# 16 is the limit the seed documents give; 100 is AWS's limit today, allowed by the option.
ENVIRONMENT_LIMITS = {"16": 16, "100": 100}
# Enums longer than this (instance types) are described by their shape's name and a few examples.
LISTED_CHOICES = 12


class ShapeError(ValueError):
    """A request does not fit its shape; ``problems`` holds one ``Field.Path: what was wrong (allowed)`` each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source} is not valid:\n" + "\n".join(f"  {problem}" for problem in problems))


@functools.cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def input_shape(operation: str) -> StructureShape:
    return service_model().operation_model(operation).input_shape


# ---------------------------------------------------------------- what modelcrate honours and refuses

_CONTAINER = (
    "ContainerHostname",
    "Image",
    "ImageDigest",
    "ModelDataUrl",
    "ProductId",
    "Environment",
    "ModelInput",
    "Framework",
    "FrameworkVersion",
    "NearestModelName",
)
_INFERENCE = (
    "Containers",
    "SupportedTransformInstanceTypes",
    "SupportedRealtimeInferenceInstanceTypes",
    "SupportedContentTypes",
    "SupportedResponseMIMETypes",
)
_STATISTICS_AND_CONSTRAINTS = ("Statistics", "Constraints")
_LIST_FILTERS = ("CreationTimeAfter", "CreationTimeBefore", "MaxResults", "NameContains", "NextToken")
_SORTING = ("SortBy", "SortOrder")

# Per botocore structure: the members modelcrate stores and acts on.
HONOURED: dict[str, tuple[str, ...]] = {
    "CreateModelPackageGroupInput": ("ModelPackageGroupName", "ModelPackageGroupDescription", "Tags"),
    "CreateModelPackageInput": (
        "ModelPackageName",
        "ModelPackageGroupName",
        "ModelPackageDescription",
        "InferenceSpecification",
        "ValidationSpecification",
        "SourceAlgorithmSpecification",
        "CertifyForMarketplace",
        "Tags",
        "ModelApprovalStatus",
        "MetadataProperties",
        "ModelMetrics",
        "ClientToken",
        "Domain",
        "Task",
        "SamplePayloadUrl",
        "CustomerMetadataProperties",
        "DriftCheckBaselines",
        "AdditionalInferenceSpecifications",
        "SkipModelValidation",
        "SourceUri",
        "ModelLifeCycle",
    ),
    "UpdateModelPackageInput": (
        "ModelPackageArn",
        "ModelApprovalStatus",
        "ApprovalDescription",
        "CustomerMetadataProperties",
        "CustomerMetadataPropertiesToRemove",
        "AdditionalInferenceSpecificationsToAdd",
        "InferenceSpecification",
        "SourceUri",
        "ModelLifeCycle",
        "ClientToken",
    ),
    "ListModelPackagesInput": (
        *_LIST_FILTERS,
        "ModelApprovalStatus",
        "ModelPackageGroupName",
        "ModelPackageType",
        *_SORTING,
    ),
    "ListModelPackageGroupsInput": (*_LIST_FILTERS, *_SORTING),
    "DescribeModelPackageInput": ("ModelPackageName",),
    "DescribeModelPackageGroupInput": ("ModelPackageGroupName",),
    "DeleteModelPackageInput": ("ModelPackageName",),
    "DeleteModelPackageGroupInput": ("ModelPackageGroupName",),
    "AddTagsInput": ("ResourceArn", "Tags"),
    "ListTagsInput": ("ResourceArn", "NextToken", "MaxResults"),
    "DeleteTagsInput": ("ResourceArn", "TagKeys"),
    "CreateModelCardRequest": ("ModelCardName", "Content", "ModelCardStatus", "Tags"),
    "UpdateModelCardRequest": ("ModelCardName", "Content", "ModelCardStatus"),
    "ListModelCardsRequest": (*_LIST_FILTERS, "ModelCardStatus", *_SORTING),
    "Tag": ("Key", "Value"),
    "InferenceSpecification": _INFERENCE,
    "AdditionalInferenceSpecificationDefinition": ("Name", "Description", *_INFERENCE),
    "ModelPackageContainerDefinition": _CONTAINER,
    "ModelInput": ("DataInputConfig",),
    "ModelPackageValidationSpecification": ("ValidationRole", "ValidationProfiles"),
    "ModelPackageValidationProfile": ("ProfileName", "TransformJobDefinition"),
    "TransformJobDefinition": (
        "MaxConcurrentTransforms",
        "MaxPayloadInMB",
        "BatchStrategy",
        "Environment",
        "TransformInput",
        "TransformOutput",
        "TransformResources",
    ),
    "TransformInput": ("DataSource", "ContentType", "CompressionType", "SplitType"),
    "TransformDataSource": ("S3DataSource",),
    "TransformS3DataSource": ("S3DataType", "S3Uri"),
    "TransformOutput": ("S3OutputPath", "Accept", "AssembleWith", "KmsKeyId"),
    "TransformResources": ("InstanceType", "InstanceCount", "VolumeKmsKeyId", "TransformAmiVersion"),
    "SourceAlgorithmSpecification": ("SourceAlgorithms",),
    "SourceAlgorithm": ("ModelDataUrl", "AlgorithmName"),
    "MetadataProperties": ("CommitId", "Repository", "GeneratedBy", "ProjectId"),
    "ModelMetrics": ("ModelQuality", "ModelDataQuality", "Bias", "Explainability"),
    "ModelQuality": _STATISTICS_AND_CONSTRAINTS,
    "ModelDataQuality": _STATISTICS_AND_CONSTRAINTS,
    "DriftCheckModelQuality": _STATISTICS_AND_CONSTRAINTS,
    "DriftCheckModelDataQuality": _STATISTICS_AND_CONSTRAINTS,
    "Bias": ("Report", "PreTrainingReport", "PostTrainingReport"),
    "Explainability": ("Report",),
    "MetricsSource": ("ContentType", "ContentDigest", "S3Uri"),
    "FileSource": ("ContentType", "ContentDigest", "S3Uri"),
    "DriftCheckBaselines": ("Bias", "Explainability", "ModelQuality", "ModelDataQuality"),
    "DriftCheckBias": ("ConfigFile", "PreTrainingConstraints", "PostTrainingConstraints"),
    "DriftCheckExplainability": ("Constraints", "ConfigFile"),
    "ModelLifeCycle": ("Stage", "StageStatus", "StageDescription"),
}

_KMS = "it encrypts with an AWS KMS key, and modelcrate's database and artifact store do not use AWS KMS"
_SINGLE_ARCHIVE = "modelcrate stores one model.tar.gz per container, given as ModelDataUrl"
_CARD_APART = (
    "modelcrate keeps model cards apart from packages: document this version with CreateModelCard "
    "(modelcrate card create-from-package)"
)
# Per botocore structure: the members modelcrate refuses, with the reason its message gives.
REFUSED: dict[str, dict[str, str]] = {
    "CreateModelPackageGroupInput": {
        "ManagedConfiguration": "it chooses AWS-managed storage, and modelcrate keeps artifacts in its own store "
        "(MODELCRATE_ARTIFACT_STORE)",
    },
    "CreateModelPackageInput": {
        "ModelPackageRegistrationType": "modelcrate registers every package; it keeps no Logged (lineage-only) ones",
        "SecurityConfig": _KMS,
        "ModelCard": _CARD_APART,
        "ManagedStorageType": "it chooses AWS-managed storage, and modelcrate keeps artifacts in its own store "
        "(MODELCRATE_ARTIFACT_STORE)",
    },
    "UpdateModelPackageInput": {
        "ModelPackageRegistrationType": "modelcrate registers every package; it keeps no Logged (lineage-only) ones",
        "ModelCard": _CARD_APART,
    },
    "ListModelPackageGroupsInput": {
        "CrossAccountFilterOption": "it lists groups shared by other AWS accounts, and a modelcrate registry has one",
    },
    "ModelPackageContainerDefinition": {
        "ModelDataSource": _SINGLE_ARCHIVE,
        "AdditionalModelDataSources": _SINGLE_ARCHIVE,
        "AdditionalS3DataSource": f"its data is read from S3 by SageMaker at inference; {_SINGLE_ARCHIVE}",
        "ModelDataETag": "modelcrate identifies model data by the sha256 it records itself",
        "IsCheckpoint": "modelcrate serves models, not training checkpoints",
        "BaseModel": "it names a SageMaker JumpStart foundation model, and modelcrate has no model hub",
    },
    "SourceAlgorithm": {
        "ModelDataSource": _SINGLE_ARCHIVE,
        "ModelDataETag": "modelcrate identifies model data by the sha256 it records itself",
    },
    "CreateModelCardRequest": {"SecurityConfig": _KMS},
}

# ---------------------------------------------------------------- modelcrate's own rules

LOCATIONS = "s3://bucket/key, file:///path or a local path"
GROUP_FORMS = "a name, model-package-group/<name> or arn:aws:sagemaker:<region>:<account>:model-package-group/<name>"
PACKAGE_REFERENCE = re.compile(
    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:model-package/)?[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}(/[0-9]+)?"
)
ONE_OF_GROUP_OR_NAME = (
    "(allowed: exactly one of ModelPackageGroupName, for a versioned package, "
    "and ModelPackageName, for an unversioned one)"
)
_GROUP_IDENTIFIER = re.compile(r"(?:arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:)?model-package-group/(.*)", re.S)


def _shown(value: Any) -> str:
    """The offending value for a message, when it is short enough to help."""
    text = repr(value)
    return f"{text} " if len(text) <= 40 else ""


def _location(value: str) -> str:
    """Where modelcrate reads and writes artifacts: S3, or this machine (botocore allows only s3:// and https://)."""
    scheme, separator, rest = value.partition("://")
    bucket, _, key = rest.partition("/")
    if (not separator and value) or (scheme == "s3" and bucket and key) or (scheme == "file" and rest):
        return value
    raise ValueError(f"{_shown(value)}is not a location modelcrate reads (allowed: {LOCATIONS})")


def _archive(value: str) -> str:
    if not _location(value).endswith(".tar.gz"):
        raise ValueError(f"{_shown(value)}is not a .tar.gz file (allowed: a single .tar.gz as {LOCATIONS})")
    return value


def _group_name(value: str) -> str:
    """A group given by ARN or as ``model-package-group/<name>`` is kept by its name."""
    if match := _GROUP_IDENTIFIER.fullmatch(value):
        value = match[1]
    elif value.startswith("arn:") or "/" in value:
        raise ValueError(f"{_shown(value)}is not a model package group (allowed: {GROUP_FORMS})")
    if problem := _scalar_problem(service_model().shape_for("EntityName"), value):
        raise ValueError(problem)
    return value


def _card_name(value: str) -> str:
    """A card given by its ARN is kept by its name."""
    name = value.rsplit(":model-card/", 1)[-1]
    if problem := _scalar_problem(service_model().shape_for("EntityName"), name):
        raise ValueError(problem)
    return name


def _package_reference(value: str) -> str:
    """Packages are named here as SageMaker does, and also as ``<group>/<version>`` or by an unversioned name."""
    if not PACKAGE_REFERENCE.fullmatch(value):
        raise ValueError(
            f"{_shown(value)}has the wrong form (allowed: a model package ARN, a package name, or "
            "<group>/<version> such as churn/3)"
        )
    return value


def _transform_payload(megabytes: int) -> int:
    """botocore sets no maximum; SageMaker's transform jobs, and modelcrate's, take at most 100 MB."""
    if megabytes > MAX_PAYLOAD_MB:
        raise ValueError(f"is {megabytes!r} (allowed: at most {MAX_PAYLOAD_MB})")
    return megabytes


def environment_limit() -> int:
    """How many Environment entries a container may have, read from the environment on every validation."""
    setting = os.environ.get(MAX_ENVIRONMENT_VARIABLE, "16").strip() or "16"
    if setting not in ENVIRONMENT_LIMITS:
        raise ValueError(f"{MAX_ENVIRONMENT_VARIABLE} is {setting!r} (allowed: 16, the default, or 100)")
    return ENVIRONMENT_LIMITS[setting]


def _within_environment_limit(environment: dict) -> dict:
    limit = environment_limit()
    if len(environment) > limit:
        hint = f"; {MAX_ENVIRONMENT_VARIABLE}=100 allows 100" if limit < 100 else ""
        raise ValueError(f"has {len(environment)} entries (allowed: at most {limit}{hint})")
    return environment


# (botocore structure, member) -> a check that returns the value (normalised) or raises ValueError with the problem.
# A member with a rule here is not held to botocore's pattern: the rule is modelcrate's form of that value.
MEMBER_RULES: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("CreateModelPackageInput", "ModelPackageGroupName"): _group_name,
    ("CreateModelPackageInput", "SamplePayloadUrl"): _archive,
    ("ListModelPackagesInput", "ModelPackageGroupName"): _group_name,
    ("UpdateModelPackageInput", "ModelPackageArn"): _package_reference,
    ("UpdateModelCardRequest", "ModelCardName"): _card_name,
    ("ModelPackageContainerDefinition", "ModelDataUrl"): _archive,
    ("ModelPackageContainerDefinition", "Environment"): _within_environment_limit,
    ("TransformJobDefinition", "MaxPayloadInMB"): _transform_payload,
    ("SourceAlgorithm", "ModelDataUrl"): _archive,
    ("TransformS3DataSource", "S3Uri"): _location,
    ("TransformOutput", "S3OutputPath"): _location,
    ("MetricsSource", "S3Uri"): _location,
    ("FileSource", "S3Uri"): _location,
}
# Members botocore leaves optional that modelcrate needs: it validates and serves a package by running its image.
REQUIRED: dict[str, tuple[str, ...]] = {"ModelPackageContainerDefinition": ("Image",)}
# Members botocore requires that modelcrate fills in when they are left out: a new card is a Draft.
DEFAULTS: dict[str, dict[str, Any]] = {"CreateModelCardRequest": {"ModelCardStatus": "Draft"}}


def _versioned_or_unversioned(request: dict) -> list[str]:
    group, name = request.get("ModelPackageGroupName"), request.get("ModelPackageName")
    if group is None and name is None:
        return [f"ModelPackageGroupName: required {ONE_OF_GROUP_OR_NAME}"]
    if group is not None and name is not None:
        return [f"ModelPackageName: given with ModelPackageGroupName {ONE_OF_GROUP_OR_NAME}"]
    if group is not None:
        if "CertifyForMarketplace" in request:
            return ["CertifyForMarketplace: is for unversioned packages (allowed: only with ModelPackageName)"]
        return []
    problems = []
    if "ModelApprovalStatus" in request:
        problems.append("ModelApprovalStatus: is for versioned packages (allowed: only with ModelPackageGroupName)")
    specification = request.get("InferenceSpecification")
    if specification is not None:
        problems += [
            f"InferenceSpecification.{member}: required for an unversioned package (ModelPackageName)"
            for member in ("SupportedTransformInstanceTypes", "SupportedRealtimeInferenceInstanceTypes")
            if not specification.get(member)
        ]
    return problems


def _unique_names(member: str) -> Callable[[dict], list[str]]:
    def check(request: dict) -> list[str]:
        seen: set[str] = set()
        problems = []
        for index, specification in enumerate(request.get(member, [])):
            if specification["Name"] in seen:
                problems.append(
                    f"{member}[{index}].Name: {specification['Name']!r} is used twice (allowed: a unique Name each)"
                )
            seen.add(specification["Name"])
        return problems

    return check


# Operation -> checks across its (otherwise valid) request, each returning its problems.
REQUEST_RULES: dict[str, tuple[Callable[[dict], list[str]], ...]] = {
    "CreateModelPackage": (_versioned_or_unversioned, _unique_names("AdditionalInferenceSpecifications")),
    "UpdateModelPackage": (_unique_names("AdditionalInferenceSpecificationsToAdd"),),
}

# ---------------------------------------------------------------- botocore's rules, in words

NAME_RULE = "letters, digits and hyphens, starting and ending with a letter or digit"
TAG_RULE = "letters, digits, spaces and _ . : / = + - @"
ENVIRONMENT_RULE = "letters, digits and underscores, not starting with a digit"
# botocore's patterns as messages say them; any other pattern is shown as it is.
PATTERN_WORDS = {
    r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}": NAME_RULE,
    r"[a-zA-Z0-9](-*[a-zA-Z0-9])*": NAME_RULE,
    r"[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*": "printable text: no tabs, newlines or other control characters",
    r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)": TAG_RULE,
    r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,128}": TAG_RULE,
    r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}": TAG_RULE,
    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*\/)?([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)": (
        "a name (letters, digits and hyphens, not ending with a hyphen) or its ARN"
    ),
    r"[\S]+": "no spaces",
    r"[Ss][Hh][Aa]256:[0-9a-fA-F]{64}": "sha256: and 64 hexadecimal digits",
    r"[a-zA-Z_][a-zA-Z0-9_]*": ENVIRONMENT_RULE,
    r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}": ENVIRONMENT_RULE,
    r"[0-9]\.[A-Za-z0-9.-]+": "a digit, a dot, then letters, digits, dots or hyphens, e.g. 1.7.1",
    r"[-\w]+\/.+": "a MIME type such as text/csv",
    r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+": (
        "an IAM role ARN such as arn:aws:iam::123456789012:role/ModelValidation"
    ),
    r"[a-zA-Z0-9:/_-]*": "a KMS key id, alias or ARN: letters, digits and : / _ -",
    r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*": "letters and digits in hyphen-separated parts",
    r"[a-zA-Z0-9-]+": "letters, digits and hyphens",
    r"[a-zA-Z0-9\-]+": "letters, digits and hyphens",
    r"[\p{L}\p{M}\p{Z}\p{N}\p{P}]{0,1024}": "letters, digits, spaces and punctuation, no symbols such as = + $ | ~",
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:.+": "a SageMaker ARN such as "
    "arn:aws:sagemaker:local:000000000000:model-package-group/churn",
}
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string"),
    "integer": ((int,), "an integer"),
    "long": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "double": ((int, float), "a number"),
    "boolean": ((bool,), "true or false"),
    "list": ((list,), "a list"),
    "map": ((dict,), "an object"),
    "structure": ((dict,), "an object"),
    "blob": ((bytes, str), "bytes or base64 text"),
}
TIMESTAMP = "a date and time such as 2024-05-01T12:00:00Z"


@functools.cache
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def _choices(shape: Shape) -> str:
    choices = [repr(choice) for choice in shape.enum]
    if len(choices) > LISTED_CHOICES:
        return f"one of botocore's {len(choices)} {shape.name} values, such as {', '.join(choices[:3])}"
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _scalar_problem(shape: Shape, value: Any, pattern: bool = True) -> str | None:
    """What is wrong with a string or number by botocore's lengths, ranges, enum and (unless told) pattern."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if isinstance(value, str):
        if low is not None and len(value) < low:
            return f"{_shown(value)}has {len(value)} characters (allowed: at least {low})"
        if high is not None and len(value) > high:
            return f"{_shown(value)}has {len(value)} characters (allowed: at most {high})"
        if shape.enum and value not in shape.enum:
            return f"{_shown(value)}is not a choice here (allowed: {_choices(shape)})"
        rule = shape.metadata.get("pattern")
        if pattern and rule and not _compiled(rule).fullmatch(value):
            return f"{_shown(value)}has the wrong form (allowed: {PATTERN_WORDS.get(rule, f'the pattern {rule}')})"
    elif isinstance(value, int | float):
        if low is not None and value < low:
            return f"is {value!r} (allowed: at least {low})"
        if high is not None and value > high:
            return f"is {value!r} (allowed: at most {high})"
    return None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise ValueError(f"is {_shown(value) or type(value).__name__ + ' '}(allowed: {TIMESTAMP})")


def _at(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


def _key_at(path: str, key: Any) -> str:
    text = str(key)
    return f"{path}[{(text if len(text) <= 40 else text[:37] + '...')!r}]"


class _Checker:
    """One request's walk through its botocore shape, collecting every problem."""

    def __init__(self, operation: str):
        self.operation = operation
        self.problems: list[str] = []

    def check(self, shape: Shape, value: Any, path: str, rule: Callable[[Any], Any] | None = None) -> Any:
        kind = shape.type_name
        if kind == "timestamp":
            try:
                return _timestamp(value)
            except ValueError as exc:
                return self._problem(path, str(exc), value)
        types, words = _TYPES[kind]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return self._problem(path, f"is {_shown(value) or type(value).__name__ + ' '}(allowed: {words})", value)
        if kind == "structure":
            return self._structure(shape, value, path)
        if kind == "list":
            value = [self.check(shape.member, item, f"{path}[{index}]") for index, item in enumerate(value)]
            problem = self._size(shape, value, "items")
        elif kind == "map":
            value = self._map(shape, value, path)
            problem = self._size(shape, value, "entries")
        else:
            problem = _scalar_problem(shape, value, pattern=rule is None)
        if problem:
            return self._problem(path, problem, value)
        if rule is not None:
            try:
                return rule(value)
            except ValueError as exc:
                return self._problem(path, str(exc), value)
        return value

    def _problem(self, path: str, message: str, value: Any) -> Any:
        self.problems.append(f"{path or '(top level)'}: {message}")
        return value

    @staticmethod
    def _size(shape: Shape, value: list | dict, unit: str) -> str | None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and len(value) < low:
            return f"has {len(value)} {unit} (allowed: at least {low})"
        if high is not None and len(value) > high:
            return f"has {len(value)} {unit} (allowed: at most {high})"
        return None

    def _map(self, shape: Shape, value: dict, path: str) -> dict:
        checked = {}
        for key, item in value.items():
            at = _key_at(path, key)
            if not isinstance(key, str):
                self._problem(at, "key is not a string", key)
            elif problem := _scalar_problem(shape.key, key):
                self._problem(at, f"key {problem}", key)
            checked[key] = self.check(shape.value, item, at)
        return checked

    def _structure(self, shape: StructureShape, value: dict, path: str) -> dict:
        honoured = HONOURED.get(shape.name, ())
        required = {*shape.required_members, *REQUIRED.get(shape.name, ())}
        checked = {}
        for name, member in shape.members.items():
            if name not in value:
                if name in DEFAULTS.get(shape.name, {}):
                    checked[name] = DEFAULTS[shape.name][name]
                elif name in required:
                    self._problem(_at(path, name), "required", None)
            elif name in honoured:
                checked[name] = self.check(member, value[name], _at(path, name), MEMBER_RULES.get((shape.name, name)))
        for name in value:
            if name not in honoured:
                self._problem(_at(path, name), self._not_taken(shape, name, honoured), value[name])
        return checked

    def _not_taken(self, shape: StructureShape, name: str, honoured: tuple[str, ...]) -> str:
        reason = REFUSED.get(shape.name, {}).get(name)
        if reason:
            return f"is not supported by modelcrate: {reason}"
        if name in shape.members:
            return (
                f"is new in botocore {botocore.__version__} and modelcrate does not handle it yet "
                f"(allowed here: {', '.join(honoured)})"
            )
        if shape.name == "UpdateModelPackageInput" and name in HONOURED["CreateModelPackageInput"]:
            return f"is immutable after creation (allowed here: {', '.join(honoured)})"
        close = difflib.get_close_matches(name, honoured, n=1)
        allowed = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(honoured)}"
        return f"is not a field modelcrate accepts here ({allowed})"


def parse(operation: str, request: Any, source: str | None = None) -> dict:
    """The request of ``operation`` as modelcrate keeps it (groups by name, timestamps as datetimes), or a
    ShapeError listing every problem with its field path."""
    checker = _Checker(operation)
    checked = checker.check(input_shape(operation), request, "")
    if not checker.problems:
        for rule in REQUEST_RULES.get(operation, ()):
            checker.problems += rule(checked)
    if checker.problems:
        raise ShapeError(source or operation, checker.problems)
    return checked
