"""What SageMaker hands a training container: its configuration files and its data channels.

Layout (``prefix`` is /opt/ml in SageMaker): ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``
and one directory of files per channel under ``input/data/<channel>/``. Channels hold CSV without a header row,
the label in one column (the first, as SageMaker's built-in algorithms expect) and numeric features in the others.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcrate.training.errors import JobError, clipped
from modelcrate.training.spec import CHANNELS

CSV_CONTENT_TYPE = "text/csv"
# Text parsed at a time: large enough that numpy's parser does the work, small enough that the block's lines
# as Python strings stay small beside the channel's arrays (measured in benchmarks/training_memory.py).
BLOCK_CHARS = 4 * 1024 * 1024
GROWTH = 1.25  # when the rows outgrow the estimate from the CSV's size


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
    hosts = resources.get("hosts", []) if isinstance(resources, dict) else None
    if not isinstance(hosts, list):
        raise JobError(
            f"{prefix}/input/config/resourceconfig.json is not a JSON object with a list of hosts; SageMaker writes "
            "it, so check how the job was started"
        )
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
    if content_type and str(content_type).split(";")[0].strip().lower() != CSV_CONTENT_TYPE:
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
    files = _data_files(directory)
    table = _ChannelTable(name, label_column, sum(path.stat().st_size for path in files))
    try:
        for path in files:
            _read_file(path, table)
    except MemoryError:
        raise JobError(table.out_of_memory()) from None
    if table.width is None:
        raise JobError(f"channel {name!r} has no data rows in {directory}; put CSV files there (no header row)")
    return table.channel()


def _read_file(path: Path, table: _ChannelTable) -> None:
    lines_before = 0
    try:
        # Universal newlines: \r\n and \r end lines as \n does.
        with path.open(encoding="utf-8") as file:
            while block := file.read(BLOCK_CHARS):
                block += file.readline()  # the block ends where a line does
                lines = block.split("\n")
                if block.endswith("\n"):
                    lines.pop()
                table.add_block(lines, path, lines_before + 1, len(block))
                lines_before += len(lines)
    except UnicodeDecodeError:
        raise JobError(f"{path} is not UTF-8 text; channel {table.name!r} holds CSV files only") from None


class _ChannelTable:
    """A channel's rows as they are read, parsed block by block into features and labels arrays.

    The arrays are sized from the CSV's bytes per row and grow in place (realloc), so reading holds the
    channel's float64 size plus one block, never a copy of everything read so far.
    """

    def __init__(self, name: str, label_column: int, csv_bytes: int):
        self.name, self.label_column, self.csv_bytes = name, label_column, csv_bytes
        self.width: int | None = None
        self.first_row: tuple[Path, int] | None = None  # where the width comes from: file, line
        self.rows = 0  # stored in the arrays
        self.rows_parsed = 0  # including a block not yet stored
        self.chars_read = 0
        self.features = np.empty((0, 0))
        self.labels = np.empty(0)

    def add_block(self, lines: list[str], path: Path, first_line: int, chars: int) -> None:
        self.chars_read += chars
        if self.width is None and not self._find_width(lines, path, first_line):
            return
        values = _fast_parse(lines)
        if values is None or values.shape[1] != self.width or not np.isfinite(values).all():
            values = self._checked_rows(lines, path, first_line)  # slower, names the offending field
        self.rows_parsed += len(values)
        self._append(values)

    def _find_width(self, lines: list[str], path: Path, first_line: int) -> bool:
        for offset, line in enumerate(lines):
            if line.strip():
                self.width, self.first_row = len(line.split(",")), (path, first_line + offset)
                break
        else:
            return False
        if self.label_column >= self.width:
            raise JobError(
                f"the label is in column {self.label_column} (label_column in training.json, 0 = first) but channel "
                f"{self.name!r} has {self.width} columns; fix label_column or the data"
            )
        if self.width < 2:
            raise JobError(
                f"{path} line {self.first_row[1]} has one field, the label; channel {self.name!r} needs at least one "
                "feature column besides the label"
            )
        return True

    def _checked_rows(self, lines: list[str], path: Path, first_line: int) -> np.ndarray:
        rows = []
        for line_number, line in enumerate(lines, start=first_line):
            if not line.strip():
                continue
            fields = line.split(",")
            if len(fields) != self.width:
                first_path, first_line_number = self.first_row
                raise JobError(
                    f"{path} line {line_number} has {len(fields)} fields but {first_path} line {first_line_number} "
                    f"has {self.width}; every row of channel {self.name!r} needs the same columns"
                )
            rows.append(_numbers(fields, path, line_number))
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.width)

    def _append(self, values: np.ndarray) -> None:
        needed = self.rows + len(values)
        if needed > len(self.labels):
            # Rows the whole channel holds at the bytes per row read so far, then a quarter more at a time.
            expected = needed * self.csv_bytes // max(self.chars_read, 1) + 1
            self._resize(max(needed, expected if self.rows == 0 else int(len(self.labels) * GROWTH)))
        block = slice(self.rows, needed)
        self.labels[block] = values[:, self.label_column]
        self.features[block, : self.label_column] = values[:, : self.label_column]
        self.features[block, self.label_column :] = values[:, self.label_column + 1 :]
        self.rows = needed

    def _resize(self, rows: int) -> None:
        # In place: no other array views these two, and realloc moves large blocks by remapping, not copying.
        self.features.resize((rows, self.width - 1), refcheck=False)
        self.labels.resize(rows, refcheck=False)

    def channel(self) -> Channel:
        self._resize(self.rows)
        return Channel(self.name, self.features, self.labels)

    def out_of_memory(self) -> str:
        if self.width is None:
            held = f"its CSV files hold {self.csv_bytes / 1e6:,.0f} MB"
        else:
            rows = self.rows_parsed * self.csv_bytes // max(self.chars_read, 1)
            held = f"about {rows:,} rows x {self.width} columns = {rows * self.width * 8 / 1e6:,.0f} MB as float64"
        return (
            f"ran out of memory reading channel {self.name!r} ({held}); use an instance with more memory or fewer rows"
        )


def _fast_parse(lines: list[str]) -> np.ndarray | None:
    """The block's rows by numpy's parser, or None when it refuses one: it accepts a subset of what float()
    does (no digit separators, no non-ASCII digits), so a refused block is parsed again field by field."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a block of blank lines holds no data
            return np.loadtxt(lines, delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None


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
        f"{path} line {line_number} column {column + 1}: {clipped(repr(fields[column].strip()))} is not a finite "
        f"number{hint}; every field must be numeric"
    )


def _is_finite_number(field: str) -> bool:
    try:
        return math.isfinite(float(field))
    except ValueError:
        return False
