"""A transform job in SageMaker's CreateTransformJob shape, validated, with the contract's precedence rules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelcrate.serving.config import MAX_PAYLOAD_MB

DEFAULT_PARAMETERS = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
# A container answering /execution-parameters may use either spelling (the contract documents the first).
_STRATEGY_SPELLINGS = {
    "MULTI_RECORD": "MultiRecord",
    "MULTIRECORD": "MultiRecord",
    "SINGLE_RECORD": "SingleRecord",
    "SINGLERECORD": "SingleRecord",
}
MAX_JSONPATH_CHARS = 63


class JobError(ValueError):
    """The job description is invalid; the message names each field and what to change."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class S3DataSourceSpec(_Shape):
    S3DataType: Literal["S3Prefix", "ManifestFile"] = "S3Prefix"
    S3Uri: str = Field(min_length=1)


class DataSourceSpec(_Shape):
    S3DataSource: S3DataSourceSpec


class InputSpec(_Shape):
    DataSource: DataSourceSpec
    ContentType: str | None = None
    CompressionType: Literal["None", "Gzip"] = "None"
    SplitType: Literal["None", "Line", "RecordIO", "TFRecord"] = "None"


class OutputSpec(_Shape):
    S3OutputPath: str = Field(min_length=1)
    Accept: str | None = None
    AssembleWith: Literal["None", "Line"] = "None"
    KmsKeyId: str | None = None  # accepted for shape compatibility; nothing is encrypted locally


class ProcessingSpec(_Shape):
    InputFilter: str = "$"
    OutputFilter: str = "$"
    JoinSource: Literal["None", "Input"] = "None"

    @field_validator("InputFilter", "OutputFilter")
    @classmethod
    def _short_jsonpath(cls, value: str) -> str:
        if len(value) > MAX_JSONPATH_CHARS:
            raise ValueError(f"is {len(value)} characters; SageMaker allows at most {MAX_JSONPATH_CHARS}")
        if not value.startswith("$"):
            raise ValueError(f"{value!r} is not a JSONPath expression (they start with '$')")
        return value


class ResourcesSpec(_Shape):
    InstanceType: str = "local"
    InstanceCount: int = Field(1, ge=1, le=100)


class TransformJob(_Shape):
    TransformJobName: str = "transform-job"
    ModelName: str | None = None
    TransformInput: InputSpec
    TransformOutput: OutputSpec
    DataProcessing: ProcessingSpec = ProcessingSpec()
    BatchStrategy: Literal["MultiRecord", "SingleRecord"] | None = None
    MaxPayloadInMB: int | None = Field(None, ge=0, le=MAX_PAYLOAD_MB)
    MaxConcurrentTransforms: int | None = Field(None, ge=1)
    Environment: dict[str, str] = {}
    TransformResources: ResourcesSpec = ResourcesSpec()
    ModelClientConfig: dict | None = None
    Tags: list[dict] | None = None

    @model_validator(mode="after")
    def _within_limits(self) -> TransformJob:
        if self.MaxConcurrentTransforms and self.MaxPayloadInMB:  # caught before any server starts
            check_limits(self.MaxConcurrentTransforms, self.MaxPayloadInMB)
        return self

    @model_validator(mode="after")
    def _join_rules(self) -> TransformJob:
        if self.DataProcessing.JoinSource == "Input":
            if (self.TransformInput.ContentType or None) != (self.TransformOutput.Accept or None):
                raise ValueError(
                    "DataProcessing.JoinSource=Input needs TransformInput.ContentType "
                    f"({self.TransformInput.ContentType}) to equal TransformOutput.Accept "
                    f"({self.TransformOutput.Accept})"
                )
            if self.TransformInput.SplitType != self.TransformOutput.AssembleWith:
                raise ValueError(
                    f"DataProcessing.JoinSource=Input needs TransformInput.SplitType "
                    f"({self.TransformInput.SplitType}) to equal TransformOutput.AssembleWith "
                    f"({self.TransformOutput.AssembleWith})"
                )
        return self

    @classmethod
    def parse(cls, data: dict, source: str = "the job") -> TransformJob:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "\n".join(
                f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
            )
            raise JobError(f"{source} is not a valid transform job:\n{problems}") from None


def strategy_name(raw: object) -> str | None:
    """SageMaker's job spelling (MultiRecord) for either spelling a container may answer with."""
    if not isinstance(raw, str):
        return None
    return _STRATEGY_SPELLINGS.get(raw.strip().upper().replace("-", "_"))


def resolve_parameters(job: TransformJob, container: dict | None) -> dict:
    """Values in the job, then the container's /execution-parameters answer, then defaults; checked against
    the limits (MaxPayloadInMB <= 100, MaxConcurrentTransforms x MaxPayloadInMB <= 100)."""
    answer = container or {}
    resolved = {}
    for name, job_value, container_value in (
        ("MaxConcurrentTransforms", job.MaxConcurrentTransforms, answer.get("MaxConcurrentTransforms")),
        ("BatchStrategy", job.BatchStrategy, strategy_name(answer.get("BatchStrategy"))),
        ("MaxPayloadInMB", job.MaxPayloadInMB, answer.get("MaxPayloadInMB")),
    ):
        if isinstance(container_value, bool) or (name != "BatchStrategy" and not isinstance(container_value, int)):
            container_value = None  # an answer of the wrong type is ignored, as SageMaker does
        if job_value is not None:
            resolved[name] = job_value
        elif container_value is not None:
            resolved[name] = container_value
        else:
            resolved[name] = DEFAULT_PARAMETERS[name]
    check_limits(resolved["MaxConcurrentTransforms"], resolved["MaxPayloadInMB"])
    return resolved


def check_limits(concurrency: int, payload: int) -> None:
    if concurrency < 1:
        raise JobError(f"MaxConcurrentTransforms={concurrency} must be at least 1")
    if not 0 <= payload <= MAX_PAYLOAD_MB:
        raise JobError(f"MaxPayloadInMB={payload} must be between 0 and {MAX_PAYLOAD_MB}")
    if concurrency * payload > MAX_PAYLOAD_MB:
        raise JobError(
            f"MaxConcurrentTransforms ({concurrency}) x MaxPayloadInMB ({payload}) = {concurrency * payload} "
            f"exceeds {MAX_PAYLOAD_MB}; lower one of them"
        )
