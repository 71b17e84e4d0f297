"""Serial inference pipelines: 2 to 15 containers behind one endpoint, as SageMaker runs them.

``load_definition(path)`` reads a PIPELINE.json shaped like CreateModel with ``Containers``;
``running_pipeline(definition)`` starts the containers and a front server and yields a
:class:`PipelineEndpoint` that answers /invocations, /ping and /execution-parameters like one container.
"""

from modelcrate.pipeline.definition import (
    ContainerDefinition,
    PipelineDefinition,
    PipelineDefinitionError,
    load_definition,
    parse_definition,
)
from modelcrate.pipeline.runner import PipelineEndpoint, PipelineError, running_pipeline

__all__ = [
    "ContainerDefinition",
    "PipelineDefinition",
    "PipelineDefinitionError",
    "PipelineEndpoint",
    "PipelineError",
    "load_definition",
    "parse_definition",
    "running_pipeline",
]
