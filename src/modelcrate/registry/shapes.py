"""The model registry's requests in SageMaker's own shapes (CreateModelPackage, UpdateModelPackage, ...).

Field names, nesting and limits are those of botocore's ``sagemaker`` service model, so a request moves
unchanged between modelcrate and ``aws sagemaker ... --cli-input-json``; modelcrate is stricter where its
spec says so (``registry-and-cards.md``) and accepts local artifacts (``file://`` and paths) besides ``s3://``.

``parse`` checks a request and reports every problem at once, each as ``Field.Path[0].Sub: what was wrong
(what is allowed)``; ``skeleton`` is the ``--generate-cli-skeleton`` template; ``to_request`` gives a parsed
request back as the dict that is stored and that botocore takes.
"""

import difflib
import os
import re
import types
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

MAX_ENVIRONMENT_VARIABLE = "MODELCRATE_REGISTRY_MAX_ENVIRONMENT"
# 16 is the limit the seed documents give; 100 is AWS's limit today, allowed by the option.
ENVIRONMENT_LIMITS = {"16": 16, "100": 100}
DEFAULT_APPROVAL_STATUS = "PendingManualApproval"

ShapeT = TypeVar("ShapeT", bound=BaseModel)
T = TypeVar("T")
# A member that may be omitted. The default sits in the annotation so that a member may share its type's
# name (``ModelInput: Opt[ModelInput]``): a class-body ``= None`` would rebind that name before it is read.
Opt = Annotated[T | None, Field(default=None)]


class ShapeError(ValueError):
    """A request does not fit its shape; ``problems`` holds one ``Field.Path: what was wrong (allowed)`` each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source} is not valid:\n" + "\n".join(f"  {problem}" for problem in problems))


class _Violations(ValueError):
    """Rules across fields, raised by validators: (path below the validated value, message) each."""

    def __init__(self, violations: list[tuple[tuple[str | int, ...], str]]):
        super().__init__("; ".join(message for _, message in violations))
        self.violations = violations


def _shown(value: Any) -> str:
    """The offending value for a message, when it is short enough to help."""
    text = repr(value)
    return f"{text} " if len(text) <= 40 else ""


# Patterns use the rust-regex engine (pydantic's default), which knows the \p{..} classes AWS patterns use.
# Each is registered with the words a message uses for it.
_PATTERN_WORDS: dict[str, str] = {}


def _pattern(regex: str, words: str) -> str:
    _PATTERN_WORDS[regex] = words
    return regex


NAME = _pattern(
    r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", "letters, digits and hyphens, starting and ending with a letter or digit"
)
PRINTABLE = _pattern(
    r"^[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*$", "printable text: no tabs, newlines or other control characters"
)
NO_SPACES = _pattern(r"^\S+$", "no spaces")
IMAGE_DIGEST = _pattern(r"^sha256:[0-9a-f]{64}$", "sha256: and 64 lowercase hexadecimal digits")
CONTENT_DIGEST = _pattern(r"^[Ss][Hh][Aa]256:[0-9a-fA-F]{64}$", "sha256: and 64 hexadecimal digits")
ENVIRONMENT_NAME = _pattern(r"^[a-zA-Z_][a-zA-Z0-9_]*$", "letters, digits and underscores, not starting with a digit")
FRAMEWORK_VERSION = _pattern(
    r"^[0-9]\.[A-Za-z0-9.-]+$", "a digit, a dot, then letters, digits, dots or hyphens, e.g. 1.7.1"
)
PRODUCT_ID = _pattern(
    r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", "letters, digits and hyphens, starting and ending with a letter or digit"
)
# A pattern rather than botocore's enums of instance types, which grow with every release.
INSTANCE_TYPE = _pattern(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$", "an instance type such as ml.m5.xlarge")
MIME_TYPE = _pattern(r"^[-\w]+/.+$", "a MIME type such as text/csv")
ROLE_ARN = _pattern(
    r"^arn:aws[a-z\-]*:iam::[0-9]{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$",
    "an IAM role ARN such as arn:aws:iam::123456789012:role/ModelValidation",
)
# botocore's ArnOrName without its look-behind (rust-regex has none): the name may not end with a hyphen.
ALGORITHM = _pattern(
    r"^(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*/)?[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$",
    "an algorithm name (letters, digits and hyphens, not ending with a hyphen) or its ARN",
)
TAG_TEXT = _pattern(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$", "letters, digits, spaces and _ . : / = + - @")
LETTERS_DIGITS_HYPHENS = _pattern(r"^[a-zA-Z0-9-]+$", "letters, digits and hyphens")
SOURCE_URI = _pattern(
    r"^[\p{L}\p{M}\p{Z}\p{N}\p{P}]*$", "letters, digits, spaces and punctuation, no symbols such as = + $ | ~"
)
KMS_KEY = _pattern(r"^[a-zA-Z0-9:/_-]*$", "a KMS key id, alias or ARN: letters, digits and : / _ -")
AMI_VERSION = _pattern(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$", "letters and digits in hyphen-separated parts")
PACKAGE_REFERENCE = _pattern(
    r"^(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:model-package/)?[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}(/[0-9]+)?$",
    "a model package ARN, a package name, or <group>/<version> such as churn/3",
)

LOCATIONS = "s3://bucket/key, file:///path or a local path"
GROUP_FORMS = "a name, model-package-group/<name> or arn:aws:sagemaker:<region>:<account>:model-package-group/<name>"
ONE_OF_GROUP_OR_NAME = (
    "(allowed: exactly one of ModelPackageGroupName, for a versioned package, "
    "and ModelPackageName, for an unversioned one)"
)
_GROUP_IDENTIFIER = re.compile(r"(?:arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:)?model-package-group/(.*)", re.S)


def _location(value: str) -> str:
    """Where modelcrate reads and writes artifacts: S3, or this machine."""
    scheme, separator, rest = value.partition("://")
    bucket, _, key = rest.partition("/")
    if (not separator and value) or (scheme == "s3" and bucket and key) or (scheme == "file" and rest):
        return value
    raise ValueError(f"{_shown(value)}is not a location modelcrate reads (allowed: {LOCATIONS})")


def _archive(value: str) -> str:
    if not _location(value).endswith(".tar.gz"):
        raise ValueError(f"{_shown(value)}is not a .tar.gz file (allowed: a single .tar.gz as {LOCATIONS})")
    return value


def _group_name(value: Any) -> Any:
    """A group given by ARN or as ``model-package-group/<name>`` is kept by its name."""
    if not isinstance(value, str):
        return value
    if match := _GROUP_IDENTIFIER.fullmatch(value):
        return match[1]
    if value.startswith("arn:") or "/" in value:
        raise ValueError(f"{_shown(value)}is not a model package group (allowed: {GROUP_FORMS})")
    return value


def _text(max_length: int, min_length: int = 0, pattern: str | None = None) -> Any:
    return Annotated[str, StringConstraints(min_length=min_length or None, max_length=max_length, pattern=pattern)]


Name = _text(63, 1, NAME)
GroupName = Annotated[Name, BeforeValidator(_group_name)]
Description = _text(1024, pattern=PRINTABLE)
Text1024 = _text(1024)
Text256 = _text(256)
Location = Annotated[Text1024, AfterValidator(_location)]
ArchiveLocation = Annotated[Text1024, AfterValidator(_archive)]
EnvironmentName = _text(1024, pattern=ENVIRONMENT_NAME)
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE)]
ContentDigest = _text(72, pattern=CONTENT_DIGEST)
MetadataKey = _text(128, 1, TAG_TEXT)
ClientToken = _text(36, 1, LETTERS_DIGITS_HYPHENS)
KmsKeyId = _text(2048, pattern=KMS_KEY)
SourceUri = _text(1024, pattern=SOURCE_URI)
NameContains = _text(63, 1, LETTERS_DIGITS_HYPHENS)
NextToken = _text(8192)
# JSON gives timestamps as ISO 8601 text, which botocore takes too.
Timestamp = Annotated[datetime, Field(strict=False)]
Count = Annotated[int, Field(ge=0)]
ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]
SortOrder = Literal["Ascending", "Descending"]
CustomerMetadata = Annotated[dict[MetadataKey, _text(256, 1, TAG_TEXT)], Field(min_length=1, max_length=50)]


def environment_limit() -> int:
    """How many Environment entries a container may have, read from the environment on every validation."""
    setting = os.environ.get(MAX_ENVIRONMENT_VARIABLE, "16").strip() or "16"
    if setting not in ENVIRONMENT_LIMITS:
        raise ValueError(f"{MAX_ENVIRONMENT_VARIABLE} is {setting!r} (allowed: 16, the default, or 100)")
    return ENVIRONMENT_LIMITS[setting]


def _within_environment_limit(environment: dict[str, str]) -> dict[str, str]:
    limit = environment_limit()
    if len(environment) > limit:
        hint = f"; {MAX_ENVIRONMENT_VARIABLE}=100 allows 100" if limit < 100 else ""
        raise ValueError(f"has {len(environment)} entries (allowed: at most {limit}{hint})")
    return environment


class _Shape(BaseModel):
    # strict: a JSON "5" is no integer and "yes" no boolean, for AWS either.
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="rust-regex")
    # Members that CreateModelPackage took and this request may not change.
    immutable_fields: ClassVar[frozenset[str]] = frozenset()


class Tag(_Shape):
    Key: _text(128, 1, TAG_TEXT)
    Value: _text(256, pattern=TAG_TEXT)


Tags = Annotated[list[Tag], Field(max_length=50)]


class CreateModelPackageGroupInput(_Shape):
    ModelPackageGroupName: Name
    ModelPackageGroupDescription: Opt[Description]
    Tags: Opt[Tags]


class ModelInput(_Shape):
    DataInputConfig: _text(1024, 1)


class ModelPackageContainerDefinition(_Shape):
    ContainerHostname: Opt[_text(63, pattern=NAME)]
    # Required, unlike in botocore: modelcrate validates and serves a package by running its image.
    Image: _text(255, 1, NO_SPACES)
    ImageDigest: Opt[_text(71, pattern=IMAGE_DIGEST)]
    ModelDataUrl: Opt[ArchiveLocation]
    ProductId: Opt[_text(256, pattern=PRODUCT_ID)]
    # AWS's cap of 100 in the type; the smaller default limit, an option, in the validator.
    Environment: Opt[
        Annotated[dict[EnvironmentName, Text1024], Field(max_length=100), AfterValidator(_within_environment_limit)]
    ]
    ModelInput: Opt[ModelInput]
    Framework: Opt[str]
    FrameworkVersion: Opt[_text(10, 3, FRAMEWORK_VERSION)]
    NearestModelName: Opt[str]


ContainerDefinitions = Annotated[list[ModelPackageContainerDefinition], Field(min_length=1, max_length=15)]
TransformInstanceTypes = Annotated[list[InstanceType], Field(min_length=1)]
ContentTypes = list[_text(256, pattern=MIME_TYPE)]
ResponseMimeTypes = list[_text(1024, pattern=MIME_TYPE)]


class InferenceSpecification(_Shape):
    Containers: ContainerDefinitions
    SupportedTransformInstanceTypes: Opt[TransformInstanceTypes]
    SupportedRealtimeInferenceInstanceTypes: Opt[list[InstanceType]]
    SupportedContentTypes: Opt[ContentTypes]
    SupportedResponseMIMETypes: Opt[ResponseMimeTypes]


class AdditionalInferenceSpecificationDefinition(_Shape):
    Name: Name
    Description: Opt[Description]
    Containers: ContainerDefinitions
    SupportedTransformInstanceTypes: Opt[TransformInstanceTypes]
    SupportedRealtimeInferenceInstanceTypes: Opt[list[InstanceType]]
    SupportedContentTypes: Opt[ContentTypes]
    SupportedResponseMIMETypes: Opt[ResponseMimeTypes]


def _unique_names(specifications: list[AdditionalInferenceSpecificationDefinition]) -> list:
    seen: set[str] = set()
    repeated = []
    for index, specification in enumerate(specifications):
        if specification.Name in seen:
            repeated.append(((index, "Name"), f"{specification.Name!r} is used twice (allowed: a unique Name each)"))
        seen.add(specification.Name)
    if repeated:
        raise _Violations(repeated)
    return specifications


AdditionalInferenceSpecifications = Annotated[
    list[AdditionalInferenceSpecificationDefinition], Field(min_length=1, max_length=15), AfterValidator(_unique_names)
]


class TransformS3DataSource(_Shape):
    S3DataType: Literal["ManifestFile", "S3Prefix", "AugmentedManifestFile", "Converse"]
    S3Uri: Location


class TransformDataSource(_Shape):
    S3DataSource: TransformS3DataSource


class TransformInput(_Shape):
    DataSource: TransformDataSource
    ContentType: Opt[Text256]
    CompressionType: Opt[Literal["None", "Gzip"]]
    SplitType: Opt[Literal["None", "Line", "RecordIO", "TFRecord"]]


class TransformOutput(_Shape):
    S3OutputPath: Location
    Accept: Opt[Text256]
    AssembleWith: Opt[Literal["None", "Line"]]
    KmsKeyId: Opt[KmsKeyId]


class TransformResources(_Shape):
    InstanceType: InstanceType
    InstanceCount: Annotated[int, Field(ge=1)]
    VolumeKmsKeyId: Opt[KmsKeyId]
    TransformAmiVersion: Opt[_text(63, 1, AMI_VERSION)]


class TransformJobDefinition(_Shape):
    MaxConcurrentTransforms: Opt[Count]
    MaxPayloadInMB: Opt[Annotated[int, Field(ge=0, le=100)]]
    BatchStrategy: Opt[Literal["MultiRecord", "SingleRecord"]]
    Environment: Opt[Annotated[dict[EnvironmentName, _text(10240)], Field(max_length=16)]]
    TransformInput: TransformInput
    TransformOutput: TransformOutput
    TransformResources: TransformResources


class ModelPackageValidationProfile(_Shape):
    ProfileName: Name
    TransformJobDefinition: TransformJobDefinition


class ModelPackageValidationSpecification(_Shape):
    ValidationRole: _text(2048, 20, ROLE_ARN)
    ValidationProfiles: Annotated[list[ModelPackageValidationProfile], Field(max_length=1)]


class SourceAlgorithm(_Shape):
    ModelDataUrl: Opt[ArchiveLocation]
    AlgorithmName: _text(170, 1, ALGORITHM)


class SourceAlgorithmSpecification(_Shape):
    SourceAlgorithms: Annotated[list[SourceAlgorithm], Field(min_length=1, max_length=1)]


class MetadataProperties(_Shape):
    CommitId: Opt[Text1024]
    Repository: Opt[Text1024]
    GeneratedBy: Opt[Text1024]
    ProjectId: Opt[Text1024]


class MetricsSource(_Shape):
    ContentType: Text256
    ContentDigest: Opt[ContentDigest]
    S3Uri: Location


class FileSource(_Shape):
    ContentType: Opt[Text256]
    ContentDigest: Opt[ContentDigest]
    S3Uri: Location


class StatisticsAndConstraints(_Shape):
    """botocore's ModelQuality and ModelDataQuality, and their DriftCheck twins: the same two members."""

    Statistics: Opt[MetricsSource]
    Constraints: Opt[MetricsSource]


class Bias(_Shape):
    Report: Opt[MetricsSource]
    PreTrainingReport: Opt[MetricsSource]
    PostTrainingReport: Opt[MetricsSource]


class Explainability(_Shape):
    Report: Opt[MetricsSource]


class ModelMetrics(_Shape):
    ModelQuality: Opt[StatisticsAndConstraints]
    ModelDataQuality: Opt[StatisticsAndConstraints]
    Bias: Opt[Bias]
    Explainability: Opt[Explainability]


class DriftCheckBias(_Shape):
    ConfigFile: Opt[FileSource]
    PreTrainingConstraints: Opt[MetricsSource]
    PostTrainingConstraints: Opt[MetricsSource]


class DriftCheckExplainability(_Shape):
    Constraints: Opt[MetricsSource]
    ConfigFile: Opt[FileSource]


class DriftCheckBaselines(_Shape):
    Bias: Opt[DriftCheckBias]
    Explainability: Opt[DriftCheckExplainability]
    ModelQuality: Opt[StatisticsAndConstraints]
    ModelDataQuality: Opt[StatisticsAndConstraints]


class ModelLifeCycle(_Shape):
    Stage: Name
    StageStatus: Name
    StageDescription: Opt[Text1024]


class CreateModelPackageInput(_Shape):
    """A versioned package (ModelPackageGroupName) or an unversioned one (ModelPackageName)."""

    ModelPackageName: Opt[Name]
    ModelPackageGroupName: Opt[GroupName]
    ModelPackageDescription: Opt[Description]
    InferenceSpecification: Opt[InferenceSpecification]
    ValidationSpecification: Opt[ModelPackageValidationSpecification]
    SourceAlgorithmSpecification: Opt[SourceAlgorithmSpecification]
    CertifyForMarketplace: Opt[bool]
    Tags: Opt[Tags]
    ModelApprovalStatus: Opt[ApprovalStatus]
    MetadataProperties: Opt[MetadataProperties]
    ModelMetrics: Opt[ModelMetrics]
    ClientToken: Opt[ClientToken]
    Domain: Opt[str]
    Task: Opt[str]
    SamplePayloadUrl: Opt[ArchiveLocation]
    CustomerMetadataProperties: Opt[CustomerMetadata]
    DriftCheckBaselines: Opt[DriftCheckBaselines]
    AdditionalInferenceSpecifications: Opt[AdditionalInferenceSpecifications]
    SkipModelValidation: Opt[Literal["All", "None"]]
    SourceUri: Opt[SourceUri]
    ModelLifeCycle: Opt[ModelLifeCycle]

    @property
    def versioned(self) -> bool:
        return self.ModelPackageGroupName is not None

    @property
    def effective_approval_status(self) -> ApprovalStatus | None:
        """The status the package starts in: as given, PendingManualApproval by default; None when unversioned."""
        return (self.ModelApprovalStatus or DEFAULT_APPROVAL_STATUS) if self.versioned else None

    @model_validator(mode="after")
    def _versioned_or_unversioned(self) -> "CreateModelPackageInput":
        group, name = self.ModelPackageGroupName, self.ModelPackageName
        violations: list[tuple[tuple[str | int, ...], str]] = []
        if group is None and name is None:
            violations.append((("ModelPackageGroupName",), f"required {ONE_OF_GROUP_OR_NAME}"))
        elif group is not None and name is not None:
            violations.append((("ModelPackageName",), f"given with ModelPackageGroupName {ONE_OF_GROUP_OR_NAME}"))
        elif group is not None:
            if self.CertifyForMarketplace is not None:
                reason = "is for unversioned packages (allowed: only with ModelPackageName)"
                violations.append((("CertifyForMarketplace",), reason))
        else:
            if self.ModelApprovalStatus is not None:
                reason = "is for versioned packages (allowed: only with ModelPackageGroupName)"
                violations.append((("ModelApprovalStatus",), reason))
            if self.InferenceSpecification is not None:
                violations += [
                    (("InferenceSpecification", member), "required for an unversioned package (ModelPackageName)")
                    for member in ("SupportedTransformInstanceTypes", "SupportedRealtimeInferenceInstanceTypes")
                    if not getattr(self.InferenceSpecification, member)
                ]
        if violations:
            raise _Violations(violations)
        return self


class UpdateModelPackageInput(_Shape):
    ModelPackageArn: _text(2048, 1, PACKAGE_REFERENCE)
    ModelApprovalStatus: Opt[ApprovalStatus]
    ApprovalDescription: Opt[Text1024]
    CustomerMetadataProperties: Opt[CustomerMetadata]
    CustomerMetadataPropertiesToRemove: Opt[Annotated[list[MetadataKey], Field(max_length=50)]]
    AdditionalInferenceSpecificationsToAdd: Opt[AdditionalInferenceSpecifications]
    InferenceSpecification: Opt[InferenceSpecification]
    SourceUri: Opt[SourceUri]
    ModelLifeCycle: Opt[ModelLifeCycle]
    ClientToken: Opt[ClientToken]


UpdateModelPackageInput.immutable_fields = frozenset(CreateModelPackageInput.model_fields) - frozenset(
    UpdateModelPackageInput.model_fields
)


class ListModelPackagesInput(_Shape):
    CreationTimeAfter: Opt[Timestamp]
    CreationTimeBefore: Opt[Timestamp]
    MaxResults: Opt[Annotated[int, Field(ge=1, le=100)]]
    NameContains: Opt[NameContains]
    ModelApprovalStatus: Opt[ApprovalStatus]
    ModelPackageGroupName: Opt[GroupName]
    ModelPackageType: Opt[Literal["Versioned", "Unversioned", "Both"]]
    NextToken: Opt[NextToken]
    SortBy: Opt[Literal["Name", "CreationTime"]]
    SortOrder: Opt[SortOrder]


class ListModelPackageGroupsInput(_Shape):
    CreationTimeAfter: Opt[Timestamp]
    CreationTimeBefore: Opt[Timestamp]
    MaxResults: Opt[Annotated[int, Field(ge=1, le=100)]]
    NameContains: Opt[NameContains]
    NextToken: Opt[NextToken]
    SortBy: Opt[Literal["Name", "CreationTime"]]
    SortOrder: Opt[SortOrder]


def parse(model_class: type[ShapeT], data: Any, source: str = "the request") -> ShapeT:
    """The request as ``model_class``, or a ShapeError listing every problem with its field path."""
    try:
        return model_class.model_validate(data)
    except ValidationError as error:
        problems = [problem for detail in error.errors() for problem in _problems(model_class, detail)]
        raise ShapeError(source, problems) from None


def to_request(model: BaseModel) -> dict[str, Any]:
    """The request as botocore takes it: PascalCase members, omitted ones left out."""
    return model.model_dump(exclude_none=True)


def skeleton(model_class: type[BaseModel]) -> dict[str, Any]:
    """The ``--generate-cli-skeleton`` template: every member with the AWS CLI's placeholder."""
    return {name: _placeholder(field.annotation) for name, field in model_class.model_fields.items()}


_SCALAR_PLACEHOLDERS = {str: "", int: 0, bool: True, datetime: "1970-01-01T00:00:00"}


def _placeholder(annotation: Any) -> Any:
    held = _held_type(annotation)
    origin = get_origin(held)
    if origin is list:
        return [_placeholder(get_args(held)[0])]
    if origin is dict:
        return {"KeyName": _placeholder(get_args(held)[1])}
    if origin is Literal:
        return "|".join(get_args(held))
    if isinstance(held, type) and issubclass(held, BaseModel):
        return skeleton(held)
    return _SCALAR_PLACEHOLDERS[held]


def _held_type(annotation: Any) -> Any:
    """The type of the value itself, without Annotated constraints and without Optional."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation


def _walk(model_class: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, Any]:
    """``loc`` as ``Field.Path[0].Sub`` (map keys as ``['KEY']``), and the type holding its last part."""
    path, holder, annotation = "", model_class, model_class
    for part in loc:
        holder = _held_type(annotation)
        if part == "[key]":  # pydantic's marker for a map key's own error; the key is already in the path
            break
        if get_origin(holder) is list:
            path, annotation = f"{path}[{part}]", get_args(holder)[0]
        elif get_origin(holder) is dict:
            key = part if len(str(part)) <= 40 else f"{str(part)[:37]}..."
            path, annotation = f"{path}[{key!r}]", get_args(holder)[1]
        else:  # a member, or an unknown one (always the last part)
            path = f"{path}.{part}" if path else str(part)
            annotation = holder.model_fields[part].annotation if part in holder.model_fields else None
    return path or "(top level)", holder


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "datetime_type": "a date and time such as 2024-05-01T12:00:00Z",
    "datetime_parsing": "a date and time such as 2024-05-01T12:00:00Z",
    "datetime_from_date_parsing": "a date and time such as 2024-05-01T12:00:00Z",
}


def _problems(model_class: type[BaseModel], detail: Any) -> list[str]:
    loc, ctx = tuple(detail["loc"]), detail.get("ctx", {})
    if isinstance(ctx.get("error"), _Violations):
        return [f"{_walk(model_class, loc + below)[0]}: {message}" for below, message in ctx["error"].violations]
    path, holder = _walk(model_class, loc)
    message = _explain(detail, holder, loc[-1] if loc else "")
    return [f"{path}: key {message}" if loc[-1:] == ("[key]",) else f"{path}: {message}"]


def _explain(detail: Any, holder: Any, member: str | int) -> str:
    """What was wrong and what is allowed, for one pydantic error."""
    kind, value, ctx = detail["type"], detail.get("input"), detail.get("ctx", {})
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_field(holder, str(member))
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "string_too_short":
        return f"{_shown(value)}has {len(value)} characters (allowed: at least {ctx['min_length']})"
    if kind == "string_too_long":
        return f"{_shown(value)}has {len(value)} characters (allowed: at most {ctx['max_length']})"
    if kind == "string_pattern_mismatch":
        rule = _PATTERN_WORDS.get(ctx["pattern"], f"the pattern {ctx['pattern']}")
        return f"{_shown(value)}has the wrong form (allowed: {rule})"
    if kind in ("too_short", "too_long"):
        unit = "entries" if ctx["field_type"] == "Dictionary" else "items"
        bound = f"at least {ctx['min_length']}" if kind == "too_short" else f"at most {ctx['max_length']}"
        return f"has {len(value)} {unit} (allowed: {bound})"
    if kind == "literal_error":
        return f"{_shown(value)}is not a choice here (allowed: {ctx['expected']})"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = f"at least {ctx['ge']}" if kind == "greater_than_equal" else f"at most {ctx['le']}"
        return f"is {value!r} (allowed: {bound})"
    if kind in _EXPECTED:
        return f"is {_shown(value) or type(value).__name__ + ' '}(allowed: {_EXPECTED[kind]})"
    return detail["msg"]


def _unknown_field(holder: type[_Shape], name: str) -> str:
    fields = list(holder.model_fields)
    if name in holder.immutable_fields:
        return f"is immutable after creation (allowed here: {', '.join(fields)})"
    close = difflib.get_close_matches(name, fields, n=1)
    allowed = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(fields)}"
    return f"is not a field modelcrate accepts here ({allowed})"
