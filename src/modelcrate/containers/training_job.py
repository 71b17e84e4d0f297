"""A SageMaker training job on this machine: the ``/opt/ml`` layout SageMaker prepares, run in an image
(``docker run IMAGE train`` with no network) or by this machine's modelcrate, and what the job left behind.

Public entry points: :func:`training_job` (lay out a job, then ``run_in_image`` or ``run_in_process``),
:func:`image_training_spec`, :func:`write_abalone_channels` and :func:`scrape_metrics`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.containers.docker import DOCKER, DockerError, docker

CONTAINER_PREFIX = "/opt/ml"
SPEC_IN_IMAGE = f"{CONTAINER_PREFIX}/code/training.json"
TRAINING_LABEL = "ai.modelcrate.training"
CURRENT_HOST = "algo-1"
# SageMaker's ChannelName pattern.
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
# What SageMaker writes for a File-mode CSV channel.
_CHANNEL_CONFIG = {
    "ContentType": "text/csv",
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}
# The child Python that trains on this machine: run_training's own stdout and stderr (native libraries'
# included) are then captured exactly as a container's are.
_IN_PROCESS = (
    "import sys; from pathlib import Path; from modelcrate.training import run_training; "
    "sys.exit(run_training(Path(sys.argv[1]), Path(sys.argv[2])))"
)

LineHandler = Callable[[str], None]


class TrainingJobError(ValueError):
    """The job cannot be laid out or started; the message says what to change."""


@dataclass
class TrainingResult:
    exit_code: int
    failure: str | None  # what the job wrote to /opt/ml/output/failure
    model_dir: Path  # the job's /opt/ml/model on this machine (lives as long as the job's prefix)
    model_files: list[str]  # what the job left in /opt/ml/model, relative paths
    metrics: dict[str, float]  # the last value each metric definition matched in the log
    log: str
    duration_s: float
    runner: str  # "docker" or "in-process"

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def reason(self) -> str:
        """Why the job failed, in one line: its own words, else the end of its log."""
        if self.failure:
            return self.failure.strip()
        tail = [line for line in self.log.splitlines() if line.strip()][-1:]
        return f"exit code {self.exit_code} without a reason in output/failure" + (
            f"; the log ends: {tail[0]}" if tail else ""
        )


def hyperparameters_as_sent(values: Mapping[str, object]) -> dict[str, str]:
    """SageMaker passes every hyperparameter as a string: text as is, numbers and booleans as JSON writes them."""
    sent = {}
    for name, value in values.items():
        if isinstance(value, str):
            sent[name] = value
        elif isinstance(value, bool | int | float):
            sent[name] = json.dumps(value)
        else:
            raise TrainingJobError(
                f"hyperparameter {name}: {json.dumps(value)} is not a string, number or boolean; "
                "SageMaker sends each hyperparameter as one string"
            )
    return sent


def scrape_metrics(log: str, definitions: list[dict]) -> dict[str, float]:
    """As SageMaker does with a job's metric definitions: each regex is matched per log line, its first group
    is the value; a metric's final value is its last match."""
    metrics: dict[str, float] = {}
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
    for line in log.splitlines():
        for name, pattern in patterns:
            match = pattern.search(line)
            if match:
                try:
                    metrics[name] = float(match.group(1))
                except (IndexError, ValueError):
                    continue  # a definition without a numeric group scrapes nothing, as in SageMaker
    return metrics


@dataclass
class TrainingJob:
    """A laid-out job: ``prefix`` is what the container sees as /opt/ml."""

    prefix: Path
    channels: dict[str, Path]
    hyperparameters: dict[str, str] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.prefix / "model"

    @property
    def output_dir(self) -> Path:
        return self.prefix / "output"

    def run_in_image(self, image: str, on_line: LineHandler | None = None) -> TrainingResult:
        """``docker run --network none IMAGE train`` with input/, model/ and output/ mounted as SageMaker mounts
        them (the image's own /opt/ml/code stays visible). Metrics are scraped with the image's definitions."""
        definitions = image_training_spec(image).get("metric_definitions", [])
        name = f"modelcrate-train-{uuid.uuid4().hex[:12]}"
        args = [DOCKER, "run", "--rm", "--name", name, "--network", "none"]
        args += ["-v", f"{self.prefix / 'input'}:{CONTAINER_PREFIX}/input:ro"]
        for writable in ("model", "output"):
            args += ["-v", f"{self.prefix / writable}:{CONTAINER_PREFIX}/{writable}"]
        try:
            return self._run([*args, image, "train"], definitions, "docker", on_line)
        finally:
            docker("rm", "--force", name, check=False)  # only does something when interrupted

    def run_in_process(self, spec_path: Path, on_line: LineHandler | None = None) -> TrainingResult:
        """``run_training(prefix, spec_path)`` by this machine's modelcrate, in a child Python."""
        definitions = read_spec(spec_path).get("metric_definitions", [])
        args = [sys.executable, "-c", _IN_PROCESS, str(self.prefix), str(spec_path)]
        return self._run(args, definitions, "in-process", on_line)

    def _run(self, args: list[str], definitions: list[dict], runner: str, on_line: LineHandler | None):
        started = time.monotonic()
        exit_code, log = _stream(args, on_line)
        duration = time.monotonic() - started
        failure_file = self.output_dir / "failure"
        failure = failure_file.read_text(errors="replace") if failure_file.is_file() else None
        files = sorted(p.relative_to(self.model_dir).as_posix() for p in self.model_dir.rglob("*") if p.is_file())
        return TrainingResult(
            exit_code, failure, self.model_dir, files, scrape_metrics(log, definitions), log, duration, runner
        )


def _stream(args: list[str], on_line: LineHandler | None) -> tuple[int, str]:
    lines = []
    try:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        raise DockerError(f"no docker client at {args[0]}: install Docker (apt-get install docker.io)") from None
    with process:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if on_line:
                on_line(lines[-1])
    return process.returncode, "\n".join(lines)


@contextmanager
def training_job(
    channels: Mapping[str, Path], hyperparameters: Mapping[str, object] | None = None
) -> Iterator[TrainingJob]:
    """Lay out a job in a temporary prefix exactly as SageMaker does; the prefix is removed afterwards."""
    for name, source in channels.items():
        if not _CHANNEL_NAME.match(name):
            raise TrainingJobError(
                f"channel name {name!r}: use 1-64 letters, digits, '.', '-' or '_' (SageMaker's rule)"
            )
        if not Path(source).exists():
            raise TrainingJobError(f"channel {name}: {source} does not exist; give a directory or a CSV file")
    sent = hyperparameters_as_sent(hyperparameters or {})
    prefix = Path(tempfile.mkdtemp(prefix="modelcrate-training-"))
    try:
        config = prefix / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(sent, indent=2))
        (config / "inputdataconfig.json").write_text(
            json.dumps({name: dict(_CHANNEL_CONFIG) for name in channels}, indent=2)
        )
        resources = {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "network_interface_name": "eth0"}
        (config / "resourceconfig.json").write_text(json.dumps(resources, indent=2))
        data = prefix / "input" / "data"
        data.mkdir()
        for name, source in channels.items():
            source = Path(source)
            if source.is_dir():
                shutil.copytree(source, data / name)
            else:
                (data / name).mkdir()
                shutil.copy2(source, data / name / source.name)
        for writable in ("model", "output"):
            (prefix / writable).mkdir()
        # As SageMaker lays a job out: private to its owner (root), and `train` runs as the image starts (root).
        for path in [prefix, *prefix.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        yield TrainingJob(prefix, {name: Path(source) for name, source in channels.items()}, sent)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def read_spec(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise TrainingJobError(f"cannot read the training spec {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise TrainingJobError(f"the training spec {path} is not valid JSON: {exc}") from None


def image_training_spec(image: str) -> dict:
    """The training spec baked into an image made with ``modelcrate init --with-training``."""
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image)) or {}
    if labels.get(TRAINING_LABEL) != "true":
        raise TrainingJobError(
            f"{image} cannot train (no label {TRAINING_LABEL}=true): make its project with "
            "modelcrate init --with-training, then modelcrate build it"
        )
    text = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image, SPEC_IN_IMAGE, check=False)
    if not text.strip():
        raise TrainingJobError(f"{image} has no {SPEC_IN_IMAGE}; rebuild it from a project made with --with-training")
    return json.loads(text)


def write_abalone_channels(task: str, output: Path) -> dict[str, Path]:
    """The bundled Abalone data as train/ and validation/ channels (its fixed 80/20 split): numeric CSV,
    label first, no header, as SageMaker's built-in algorithms read it."""
    from modelcrate.scaffold.sample_models import TASKS, abalone_dataset

    if task not in TASKS:
        raise TrainingJobError(f"task {task!r}: use {' or '.join(TASKS)}")
    data = abalone_dataset(task)
    channels = {}
    for name, x, y in (("train", data.x_train, data.y_train), ("validation", data.x_test, data.y_test)):
        channel = Path(output) / name
        channel.mkdir(parents=True, exist_ok=True)
        rows = (",".join(repr(float(v)) for v in (label, *features)) for label, features in zip(y, x, strict=True))
        (channel / "abalone.csv").write_text("".join(row + "\n" for row in rows))
        channels[name] = channel
    return channels
