"""The training spec (``code/training.json``) and the hyperparameters a job is given.

The spec declares each hyperparameter's type, default and allowed values; a generated project starts from
:func:`default_spec` and may narrow ranges or change defaults. SageMaker hands every hyperparameter over
as a string, so each one is parsed into its declared type here before anything is trained.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcrate.predictors.base import CLASSIFICATION, REGRESSION
from modelcrate.training.errors import JobError, clipped

FRAMEWORKS = ("sklearn", "xgboost")
TASKS = (REGRESSION, CLASSIFICATION)
CHANNELS = ("train", "validation")
METRICS_OF_TASK = {REGRESSION: ("rmse", "mae", "r2"), CLASSIFICATION: ("accuracy", "log_loss")}
# A decimal number as Python prints floats (2.5, -0.25, 1e-07): the capture group of every metric regex.
NUMBER_PATTERN = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
# Names SageMaker and its SDKs add to hyperparameters.json themselves (sagemaker_program, sagemaker_region,
# sagemaker_job_name, sagemaker_container_log_level, _tuning_objective_metric...): not the algorithm's.
RESERVED_PREFIXES = ("sagemaker_", "_")
_KIND_WORDS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}
_INT_LIMIT = 2**31 - 1  # the frameworks take whole numbers as C ints
_SEED_MAX = _INT_LIMIT  # XGBoost's seed is a 32-bit signed integer


def _declare(kind: str, default: Any, description: str, **limits: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "default": default,
        **{k: v for k, v in limits.items() if v is not None},
        "description": description,
    }


def _sklearn_hyperparameters(task: str) -> dict[str, dict[str, Any]]:
    criteria = (
        ["squared_error", "absolute_error", "friedman_mse", "poisson"]
        if task == REGRESSION
        else ["gini", "entropy", "log_loss"]
    )
    return {
        "n_estimators": _declare("int", 100, "Number of trees in the forest.", min=1, max=10000),
        "max_depth": _declare("int", 0, "Deepest a tree may grow; 0 = unlimited.", min=0, max=1000),
        "min_samples_split": _declare("int", 2, "Fewest samples a node needs to be split.", min=2),
        "min_samples_leaf": _declare("int", 1, "Fewest samples in a leaf.", min=1),
        "max_features": _declare(
            "str",
            "all" if task == REGRESSION else "sqrt",
            "Features considered at each split: all, sqrt or log2 of them.",
            choices=["all", "sqrt", "log2"],
        ),
        "criterion": _declare("str", criteria[0], "How the quality of a split is measured.", choices=criteria),
        "bootstrap": _declare("bool", True, "Train each tree on a bootstrap sample of the rows."),
        "seed": _declare(
            "int", 0, "Random seed: equal seeds, data and hyperparameters give the same model.", min=0, max=_SEED_MAX
        ),
        "n_jobs": _declare("int", 0, "CPU cores used for training; 0 = all. Does not change the model.", min=0),
    }


def _xgboost_hyperparameters(task: str) -> dict[str, dict[str, Any]]:
    objectives = (
        ["reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"]
        if task == REGRESSION
        else ["multi:softprob", "binary:logistic"]
    )
    return {
        "num_round": _declare("int", 100, "Number of boosting rounds.", min=1, max=10000),
        "max_depth": _declare("int", 6, "Deepest a tree may grow.", min=1, max=100),
        "eta": _declare("float", 0.3, "Learning rate: how much each tree's output is shrunk.", min=0.0, max=1.0),
        "subsample": _declare("float", 1.0, "Fraction of the rows sampled for each tree.", min=0.01, max=1.0),
        "colsample_bytree": _declare(
            "float", 1.0, "Fraction of the features sampled for each tree.", min=0.01, max=1.0
        ),
        "min_child_weight": _declare("float", 1.0, "Smallest sum of instance weight a child needs.", min=0.0),
        "gamma": _declare("float", 0.0, "Smallest loss reduction a further split needs.", min=0.0),
        "lambda": _declare("float", 1.0, "L2 regularisation of the weights.", min=0.0),
        "alpha": _declare("float", 0.0, "L1 regularisation of the weights.", min=0.0),
        "objective": _declare(
            "str",
            objectives[0],
            "Learning objective (binary:logistic needs labels 0 and 1).",
            choices=objectives,
        ),
        "early_stopping_rounds": _declare(
            "int",
            0,
            "Stop when the validation metric has not improved for this many rounds; 0 = off. "
            "Used only when the job has a validation channel.",
            min=0,
        ),
        "seed": _declare(
            "int", 0, "Random seed: equal seeds, data and hyperparameters give the same model.", min=0, max=_SEED_MAX
        ),
        "nthread": _declare("int", 0, "CPU threads used for training; 0 = all.", min=0),
    }


_HYPERPARAMETERS_OF_FRAMEWORK = {"sklearn": _sklearn_hyperparameters, "xgboost": _xgboost_hyperparameters}


def metric_definitions(task: str) -> list[dict[str, str]]:
    """SageMaker MetricDefinitions matching the lines :func:`metric_line` prints."""
    return [
        {"Name": f"{channel}:{metric}", "Regex": f"{channel}:{metric}=({NUMBER_PATTERN});"}
        for channel in CHANNELS
        for metric in METRICS_OF_TASK[task]
    ]


def metric_line(channel: str, metrics: dict[str, float]) -> str:
    """One log line per channel, e.g. ``train:rmse=2.1234; train:mae=1.5;``."""
    return " ".join(f"{channel}:{name}={value!r};" for name, value in metrics.items())


def default_spec(framework: str, task: str) -> dict[str, Any]:
    """The training spec a generated project writes to ``code/training.json``."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"training supports {', '.join(FRAMEWORKS)}, not {framework!r}")
    if task not in TASKS:
        raise ValueError(f"training supports the tasks {', '.join(TASKS)}, not {task!r}")
    return {
        "framework": framework,
        "task": task,
        "label_column": 0,
        "hyperparameters": _HYPERPARAMETERS_OF_FRAMEWORK[framework](task),
        "metric_definitions": metric_definitions(task),
    }


@dataclass(frozen=True)
class TrainingSpec:
    path: Path
    framework: str
    task: str
    label_column: int
    hyperparameters: dict[str, dict[str, Any]]
    metric_definitions: list[dict[str, str]]
    feature_names: list[str] | None  # None: f1..fn


def _bounds(declared: dict[str, Any]) -> tuple[Any, Any]:
    """The lowest and highest value allowed; whole numbers stay within the C int the frameworks take."""
    low, high = declared.get("min"), declared.get("max")
    if declared["type"] == "int":
        low = -_INT_LIMIT if low is None else max(low, -_INT_LIMIT)
        high = _INT_LIMIT if high is None else min(high, _INT_LIMIT)
    return low, high


def allowed_values(declared: dict[str, Any]) -> str:
    """What a hyperparameter accepts, in words, for failure messages."""
    if "choices" in declared:
        return "one of " + ", ".join(repr(c) for c in declared["choices"])
    kind = _KIND_WORDS[declared["type"]]
    low, high = _bounds(declared)
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} of at least {low}"
    if high is not None:
        return f"{kind} of at most {high}"
    return kind


def _typed(kind: str, value: Any) -> Any:
    """``value`` in the declared type, or None when it is not one. Strings are parsed (SageMaker sends only
    strings); JSON numbers and booleans are taken as they are."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return None
    if isinstance(value, bool):  # JSON true is no number
        return None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "int":
        if isinstance(value, int):
            return value
        if not (isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value)):
            return None
        text = value.strip()
        digits = text.lstrip("+-").lstrip("0") or "0"
        # Python converts at most 4,300 digits; a number this long is beyond every range anyway.
        magnitude = int(digits) if len(digits) <= 20 else _INT_LIMIT + 1
        return -magnitude if text.startswith("-") else magnitude
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_value(name: str, declared: dict[str, Any], value: Any) -> Any:
    """The hyperparameter ``name`` given as ``value``, typed and checked against its declaration."""
    typed = _typed(declared["type"], value)
    shown = clipped(json.dumps(value))
    if typed is None:
        raise JobError(
            f"hyperparameter {name}={shown} is not {_KIND_WORDS[declared['type']]}; give {allowed_values(declared)}"
        )
    if "choices" in declared and typed not in declared["choices"]:
        raise JobError(f"hyperparameter {name}={shown} is not a choice; give {allowed_values(declared)}")
    low, high = _bounds(declared)
    if (low is not None and typed < low) or (high is not None and typed > high):
        raise JobError(f"hyperparameter {name}={shown} is out of range; give {allowed_values(declared)}")
    return typed


def parse_hyperparameters(spec: TrainingSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Every declared hyperparameter: the given ones typed and checked, the others at their defaults."""
    values = {name: declared["default"] for name, declared in spec.hyperparameters.items()}
    for name, value in given.items():
        if name.startswith(RESERVED_PREFIXES):
            continue
        if name not in spec.hyperparameters:
            shown = clipped(json.dumps(name)[1:-1])  # escaped: a name may hold a line break
            raise JobError(
                f"unknown hyperparameter {shown}={clipped(json.dumps(value))}: this {spec.framework} {spec.task} "
                f"training accepts {', '.join(spec.hyperparameters)}; remove it or correct its name"
            )
        values[name] = parse_value(name, spec.hyperparameters[name], value)
    return values


def _spec_error(path: Path, problem: str) -> JobError:
    return JobError(f"the training spec {path} {problem}; fix it (modelcrate.training.default_spec shows a valid one)")


def _check_declaration(path: Path, name: str, declared: Any, builtin: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(declared, dict) or declared.get("type") != builtin["type"]:
        raise _spec_error(
            path, f'declares hyperparameter {name} without its type; the trainer needs "{builtin["type"]}"'
        )
    for limit in ("min", "max"):
        if limit in declared and (
            declared["type"] not in ("int", "float") or _typed(declared["type"], declared[limit]) is None
        ):
            raise _spec_error(path, f"gives hyperparameter {name} a {limit} that is not {_KIND_WORDS[builtin['type']]}")
    choices = declared.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not choices or any(_typed(declared["type"], c) is None for c in choices)
    ):
        raise _spec_error(path, f"gives hyperparameter {name} choices that are not a list of {declared['type']} values")
    if "default" not in declared:
        raise _spec_error(path, f"gives hyperparameter {name} no default")
    try:
        default = parse_value(name, declared, declared["default"])
    except JobError as exc:
        raise _spec_error(path, f"has a default its own declaration refuses: {exc}") from None
    return {**declared, "default": default}


def load_spec(path: Path) -> TrainingSpec:
    """Read and check the spec; a spec that cannot be followed fails the job before anything is read."""
    if not path.is_file():
        raise JobError(
            f"no training spec at {path}: this image was not generated with modelcrate init --with-training; "
            "regenerate it, or point MODELCRATE_TRAINING_SPEC at a training.json"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _spec_error(path, f"is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise _spec_error(path, "is not a JSON object")
    framework, task = raw.get("framework"), raw.get("task")
    if framework not in FRAMEWORKS:
        raise _spec_error(path, f"names the framework {framework!r}; training supports {', '.join(FRAMEWORKS)}")
    if task not in TASKS:
        raise _spec_error(path, f"names the task {task!r}; choose {' or '.join(TASKS)}")
    label_column = raw.get("label_column", 0)
    if isinstance(label_column, bool) or not isinstance(label_column, int) or label_column < 0:
        raise _spec_error(path, f"has label_column {label_column!r}; give the label's column index (0 = first)")
    builtin = _HYPERPARAMETERS_OF_FRAMEWORK[framework](task)
    declared = raw.get("hyperparameters", builtin)
    if not isinstance(declared, dict):
        raise _spec_error(path, "has hyperparameters that are not a JSON object")
    unknown = [name for name in declared if name not in builtin]
    if unknown:
        raise _spec_error(
            path,
            f"declares {', '.join(unknown)}, which the {framework} trainer does not use; it knows {', '.join(builtin)}",
        )
    # Hyperparameters the spec leaves out keep their built-in defaults; jobs cannot set them.
    hyperparameters = {
        name: _check_declaration(path, name, declared.get(name, builtin[name]), builtin[name]) for name in builtin
    }
    definitions = raw.get("metric_definitions", [])
    if not isinstance(definitions, list) or not all(_valid_metric_definition(d) for d in definitions):
        raise _spec_error(
            path, "has metric_definitions that are not a list of {Name, Regex} with one capture group each"
        )
    feature_names = raw.get("feature_names")
    if feature_names is not None and (
        not isinstance(feature_names, list) or not all(isinstance(n, str) and n for n in feature_names)
    ):
        raise _spec_error(path, "has feature_names that are not a list of names")
    return TrainingSpec(path, framework, task, label_column, hyperparameters, definitions, feature_names)


def _valid_metric_definition(definition: Any) -> bool:
    if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
        return False
    try:
        return re.compile(definition.get("Regex", "")).groups == 1
    except (re.error, TypeError):
        return False
