"""Cards on both registry backends (SQLite and a real PostgreSQL), with a registered package to link to."""

from __future__ import annotations

import copy

import pytest

from modelcrate.cards.service import Cards
from tests.registry.conftest import backend, database, model_dir, model_tar, package_request, registry  # noqa: F401

TRAINING_METRICS = {"training.accuracy": "0.9312", "training.log_loss": "0.41", "training.rounds": "120"}

CONTENT = {
    "model_overview": {
        "model_description": "Predicts an abalone's sex from its measurements.",
        "model_owner": "fisheries-ml",
        "model_id": "abalone-sex",
        "problem_type": "classification",
    },
    "intended_uses": {
        "purpose_of_model": "Sort the catch before grading.",
        "risk_rating": "Medium",
        "explanations_for_risk_rating": "Mistakes cost a regrade, never safety.",
    },
    "business_details": {"business_problem": "Manual sexing is slow", "line_of_business": "Fisheries"},
    "training_details": {
        "training_job_details": {
            "training_metrics": [{"name": "train-accuracy", "value": 0.947}],
            "hyper_parameters": [{"name": "max_depth", "value": "6"}],
        }
    },
    "evaluation_details": [
        {
            "name": "holdout-2024",
            "evaluation_observation": "Infants are the hardest class.",
            "metric_groups": [
                {
                    "name": "quality",
                    "metric_data": [
                        {"name": "macro-f1", "type": "number", "value": 0.8123},
                        {"name": "auc", "type": "number", "value": 0.9071},
                        {"name": "calibrated", "type": "boolean", "value": True},
                        {"name": "roc", "type": "linear_graph", "value": [[0, 0], [0.2, 0.7], [1, 1]]},
                        {
                            "name": "recall-by-sex",
                            "type": "bar_chart",
                            "value": [0.81, 0.66, 0.79],
                            "x_axis_name": ["F", "I", "M"],
                        },
                        {"name": "confusion", "type": "matrix", "value": [[40, 5], [7, 48]]},
                    ],
                }
            ],
        }
    ],
    "additional_information": {"caveats_and_recommendations": "Retrain each season."},
}


def card_content(**sections) -> dict:
    """The example content, with sections replaced or (given None) removed."""
    content = copy.deepcopy(CONTENT)
    for section, value in sections.items():
        if value is None:
            content.pop(section, None)
        else:
            content[section] = value
    return content


@pytest.fixture
def cards(registry) -> Cards:  # noqa: F811
    return Cards(registry)


@pytest.fixture
def packages(registry, model_tar) -> list[str]:  # noqa: F811
    """Versions 1 and 2 of group abalone, registered with training metrics and a task."""
    registry.create_model_package_group({"ModelPackageGroupName": "abalone"})
    arns = []
    for description in ("first model", "second model"):
        request = package_request(
            model_tar,
            ModelPackageDescription=description,
            ModelApprovalStatus="Approved",
            CustomerMetadataProperties={**TRAINING_METRICS, "task": "classification", "owner": "fisheries"},
        )
        arns.append(registry.create_model_package(request)["ModelPackageArn"])
    return arns
