"""Pipeline definitions: SageMaker's CreateModel shape, every problem reported at once with its JSON path."""

from __future__ import annotations

import json

import pytest

from modelcrate.pipeline import PipelineDefinitionError, load_definition, parse_definition
from modelcrate.pipeline.definition import json_path


@pytest.fixture
def models(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "model.tar.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model")
    return tmp_path


def problems(raw, base_dir) -> list[str]:
    with pytest.raises(PipelineDefinitionError) as caught:
        parse_definition(raw, base_dir)
    return caught.value.problems


def test_a_minimal_definition_gets_hostnames_and_absolute_model_paths(models):
    definition = parse_definition(
        {
            "Containers": [
                {"ModelDataUrl": "a"},
                {"ModelDataUrl": f"file://{models / 'model.tar.gz'}", "Image": "algo:1"},
                {"ModelDirectory": "b", "Environment": {"SAGEMAKER_INFERENCE_INPUT": "predicted_label"}},
            ],
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/ignored-here",
        },
        models,
    )
    assert definition.mode == "Serial"
    assert [c.hostname for c in definition.containers] == ["container-1", "container-2", "container-3"]
    assert [c.model_source for c in definition.containers] == [models / "a", models / "model.tar.gz", models / "b"]
    assert definition.containers[1].image == "algo:1"
    assert definition.containers[2].environment == {"SAGEMAKER_INFERENCE_INPUT": "predicted_label"}


def test_every_problem_is_reported_at_once_with_its_json_path(models):
    found = problems(
        {
            "Containers": [
                {"ContainerHostname": "a", "ModelDirectory": "missing"},
                {"ContainerHostname": "a", "Image": "x", "Environment": {"WORKERS": 2}},
                {"Environment": {}},
                {"ContainerHostname": "-bad-", "ModelDataUrl": "s3://bucket/model.tar.gz"},
            ],
            "InferenceExecutionConfig": {"Mode": "Parallel"},
            "PrimaryContainer": {"Image": "x"},
        },
        models,
    )
    expected = [
        f"$.Containers[0].ModelDirectory: {models / 'missing'} does not exist",
        '$.Containers[1].Environment.WORKERS: must be a string (write "2", not 2)',
        "$.Containers[2]: nothing to serve: give an Image, a model",
        "$.Containers[3].ContainerHostname: '-bad-' is not a hostname",
        "$.Containers[3].ModelDataUrl: 's3://bucket/model.tar.gz': s3:// model data is not fetched by modelcrate",
        "$.InferenceExecutionConfig.Mode: 'Parallel' is not a mode; use Serial or Direct",
        "$.PrimaryContainer: describes a single-container model",
        "$.Containers[2].ContainerHostname: missing; when one container has a ContainerHostname, every container",
        "$.Containers[1].ContainerHostname: 'a' is already the hostname of $.Containers[0]",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in found), (start, found)
    assert len(found) == len(expected), found


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (1, "$.Containers: has 1 container(s); a pipeline has 2 to 15 (serve a single model with modelcrate serve)"),
        (16, "$.Containers: has 16 container(s); a pipeline has 2 to 15"),
    ],
)
def test_a_pipeline_has_2_to_15_containers(models, count, message):
    assert problems({"Containers": [{"Image": "x"}] * count}, models) == [message]


def test_direct_mode_needs_a_hostname_for_every_container(models):
    found = problems(
        {"Containers": [{"Image": "x"}, {"Image": "y"}], "InferenceExecutionConfig": {"Mode": "Direct"}}, models
    )
    assert found == [
        f"$.Containers[{i}].ContainerHostname: missing; Direct mode selects containers by hostname, so each needs a "
        "ContainerHostname"
        for i in (0, 1)
    ]


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (
            {"ModelDataUrl": "notes.txt"},
            "$.Containers[0].ModelDataUrl: {base}/notes.txt is a file but not a model.tar.gz; give a model "
            "directory or a .tar.gz",
        ),
        (
            {"ModelDataUrl": "file://otherhost/models/a"},
            "$.Containers[0].ModelDataUrl: 'file://otherhost/models/a' names host 'otherhost'; a file:// URI here must "
            "be on this machine",
        ),
        (
            {"ModelDirectory": "model.tar.gz"},
            "$.Containers[0].ModelDirectory: {base}/model.tar.gz is not a directory; ModelDirectory is a model "
            "directory (use ModelDataUrl for a .tar.gz)",
        ),
        (
            {"ModelDataUrl": "a", "ModelDirectory": "b"},
            "$.Containers[0]: give ModelDataUrl or ModelDirectory, not both",
        ),
        (
            {"Image": "x", "Environment": {"SAGEMAKER_BIND_TO_PORT": "9000"}},
            "$.Containers[0].Environment: SAGEMAKER_BIND_TO_PORT is set by the pipeline for each container; remove it",
        ),
        (
            {"Image": "x", "Environment": {"NOT-A-NAME": "1"}},
            "$.Containers[0].Environment: 'NOT-A-NAME': environment variable names are letters, digits and _",
        ),
        (
            {"Image": "x", "ModelPackageName": "p"},
            "$.Containers[0].ModelPackageName: unknown key; a container takes Image, ModelDataUrl, ModelDirectory, "
            "Environment, ContainerHostname",
        ),
        ({"Image": ""}, "$.Containers[0].Image: String should have at least 1 character"),
        ("x:1", "$.Containers[0]: must be a JSON object"),
    ],
)
def test_container_problems_say_what_to_write_instead(models, container, message):
    assert problems({"Containers": [container, {"Image": "y"}]}, models) == [message.format(base=models)]


def test_top_level_shape_problems(models):
    assert problems({}, models) == ["$.Containers: missing; a pipeline lists its containers here"]
    assert problems({"Containers": {"Image": "x"}}, models) == ["$.Containers: must be a list of container definitions"]
    assert problems([], models) == ["$: must be a JSON object"]


def test_load_definition_resolves_model_paths_from_the_file_and_reports_unreadable_json(models):
    (models / "pipeline.json").write_text(
        json.dumps({"Containers": [{"ModelDirectory": "a"}, {"ModelDirectory": "b"}]})
    )
    definition = load_definition(models / "pipeline.json")
    assert [c.model_source for c in definition.containers] == [models / "a", models / "b"]

    (models / "broken.json").write_text('{"Containers": [\n  {"Image": "x"},\n]}')
    with pytest.raises(PipelineDefinitionError) as caught:
        load_definition(models / "broken.json")
    assert str(caught.value) == (f"{models / 'broken.json'} has 1 problem:\n  line 3, column 1: Expecting value")
    with pytest.raises(PipelineDefinitionError, match="cannot be read: No such file or directory"):
        load_definition(models / "absent.json")


def test_json_paths_quote_keys_that_are_not_identifiers():
    assert json_path(("Containers", 0, "Environment", "MY-VAR")) == '$.Containers[0].Environment["MY-VAR"]'
