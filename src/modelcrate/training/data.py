"""What SageMaker hands a training container: its configuration files and its data channels.

Layout (``prefix`` is /opt/ml in SageMaker): ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``
and one directory of files per channel under ``input/data/<channel>/``. Channels hold CSV without a header row,
the label in one column (the first, as SageMaker's built-in algorithms expect) and numeric features in the others.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcrate.training.errors import JobError
from modelcrate.training.spec import CHANNELS

CSV_CONTENT_TYPE = "text/csv"


@dataclass(frozen=True)
class Channel:
    name: str
    features: np.ndarray  # (rows, features), float64
    labels: np.ndarray  # (rows,), float64: regression targets or class labels


def read_config(prefix: Path, name: str) -> Any:
    """A JSON file from input/config, or None when the job has none (local runs may leave them out)."""
    path = prefix / "input" / "config" / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JobError(
            f"{path} is not readable JSON ({exc}); SageMaker writes it, so check how the job was started"
        ) from None


def read_hyperparameters(prefix: Path) -> dict[str, Any]:
    given = read_config(prefix, "hyperparameters.json")
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise JobError(f"{prefix}/input/config/hyperparameters.json is not a JSON object of name: value")
    return given


def current_host(prefix: Path) -> str:
    """This container's host name; a job on several hosts fails: training here is single-machine."""
    resources = read_config(prefix, "resourceconfig.json")
    if resources is None:
        return "local"
    hosts = resources.get("hosts", []) if isinstance(resources, dict) else []
    if len(hosts) > 1:
        raise JobError(
            f"{prefix}/input/config/resourceconfig.json lists {len(hosts)} hosts ({', '.join(map(str, hosts))}); "
            "this algorithm trains on one machine and does not support distributed training: set the job's "
            "InstanceCount to 1 (ResourceConfig)"
        )
    return str(resources.get("current_host", "local"))


def channel_directories(prefix: Path) -> dict[str, Path]:
    """The channels to read: those inputdataconfig.json declares, or else the known ones present on disk."""
    data_root = prefix / "input" / "data"
    declared = read_config(prefix, "inputdataconfig.json")
    if declared is None:
        channels = {name: data_root / name for name in CHANNELS if (data_root / name).is_dir()}
    elif not isinstance(declared, dict):
        raise JobError(f"{prefix}/input/config/inputdataconfig.json is not a JSON object of channel: settings")
    else:
        channels = {}
        for name, settings in declared.items():
            _check_channel_settings(name, settings if isinstance(settings, dict) else {})
            directory = data_root / name
            if not directory.is_dir():
                raise JobError(
                    f"channel {name!r} is declared in inputdataconfig.json but {directory} does not exist; "
                    "check the channel's S3 location holds data"
                )
            channels[name] = directory
    if "train" not in channels:
        raise JobError(
            f"no train channel: {data_root / 'train'} does not exist; give the job a channel named train "
            "holding CSV files (label in the first column, no header row)"
        )
    return channels


def _check_channel_settings(name: str, settings: dict[str, Any]) -> None:
    if name not in CHANNELS:
        raise JobError(
            f"channel {name!r} is not one this algorithm reads; give it {' and/or '.join(CHANNELS)} (train is required)"
        )
    content_type = settings.get("ContentType")
    if content_type and content_type.split(";")[0].strip().lower() != CSV_CONTENT_TYPE:
        raise JobError(
            f"channel {name!r} has ContentType {content_type!r}; this algorithm reads {CSV_CONTENT_TYPE} only: "
            f"convert the data to CSV and set ContentType to {CSV_CONTENT_TYPE} (or leave it out)"
        )
    mode = settings.get("TrainingInputMode", "File")
    if mode != "File":
        raise JobError(
            f"channel {name!r} uses TrainingInputMode {mode!r}; this algorithm reads files: use File input mode"
        )
    wrapper = settings.get("RecordWrapperType", "None")
    if wrapper not in (None, "None"):
        raise JobError(f"channel {name!r} has RecordWrapperType {wrapper!r}; CSV channels need None (leave it out)")


def _data_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def read_channel(name: str, directory: Path, label_column: int) -> Channel:
    """Every row of every CSV file under ``directory``; a field that is no number fails naming where it is."""
    rows: list[list[float]] = []
    width_source: tuple[Path, int, int] | None = None  # the first row: file, line, fields
    for path in _data_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise JobError(f"{path} is not UTF-8 text; channel {name!r} holds CSV files only") from None
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split(",")
            if width_source is None:
                width_source = (path, line_number, len(fields))
            elif len(fields) != width_source[2]:
                first_path, first_line, width = width_source
                raise JobError(
                    f"{path} line {line_number} has {len(fields)} fields but {first_path} line {first_line} has "
                    f"{width}; every row of channel {name!r} needs the same columns"
                )
            rows.append(_numbers(fields, path, line_number))
    if width_source is None:
        raise JobError(f"channel {name!r} has no data rows in {directory}; put CSV files there (no header row)")
    table = np.array(rows, dtype=np.float64)
    if label_column >= table.shape[1]:
        raise JobError(
            f"the label is in column {label_column} (label_column in training.json, 0 = first) but channel "
            f"{name!r} has {table.shape[1]} columns; fix label_column or the data"
        )
    return Channel(name, np.delete(table, label_column, axis=1), table[:, label_column])


def _numbers(fields: list[str], path: Path, line_number: int) -> list[float]:
    try:
        values = [float(field) for field in fields]
    except ValueError:
        values = None
    if values is not None and all(map(math.isfinite, values)):
        return values
    column = next(i for i, field in enumerate(fields) if not _is_finite_number(field))
    hint = " (CSV files have no header row)" if line_number == 1 else ""
    raise JobError(
        f"{path} line {line_number} column {column + 1}: {fields[column].strip()!r} is not a finite number{hint}; "
        "every field must be numeric"
    )


def _is_finite_number(field: str) -> bool:
    try:
        return math.isfinite(float(field))
    except ValueError:
        return False
