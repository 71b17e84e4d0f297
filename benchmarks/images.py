"""Image benchmark: size and cold start of the images modelcrate builds, one per framework/model format.

    .venv/bin/python benchmarks/images.py [--skip-build]

Builds the eight bench-FRAMEWORK-FORMAT images as a user does (`modelcrate init ... --model-source sample`,
then `modelcrate build`, in a temporary directory), unless --skip-build says to use the existing
bench-*:latest images. For each image it records the size (and the size above the base image), the time
from `docker run IMAGE serve` to the first HTTP 200 from /ping, and how long `docker stop` takes to drain
the server. The report goes to benchmarks/results/images.md and to stdout; progress goes to stderr.
Traffic goes to 127.0.0.1 only, and every container started here is removed before exit.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.predictors import FORMATS_OF_FRAMEWORK

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = BENCHMARKS_DIR.parent
PACKAGE_DIR = REPOSITORY_DIR / "src" / "modelcrate"
REPORT_PATH = BENCHMARKS_DIR / "results" / "images.md"
MODELCRATE = Path(sys.executable).parent / "modelcrate"  # the virtualenv's command line, beside python
# Debian's docker.io client has BuildKit; a client-only docker may come earlier on PATH.
DOCKER = "/usr/bin/docker"
HOST = "127.0.0.1"
BASE_IMAGE = "local/debian-python:bookworm"
PIP_CA = "/etc/ssl/certs/ca-certificates.crt"  # the build's pip trusts this machine's (proxy) CAs

# Every framework/format pair modelcrate supports.
FORMATS = tuple((fw, fmt) for fw, fmts in FORMATS_OF_FRAMEWORK.items() for fmt in fmts)
STARTS = 3  # cold start and stop times are the median and max of this many starts
PING_INTERVAL_SECONDS = 0.01
PING_TIMEOUT_SECONDS = 0.5
READY_TIMEOUT_SECONDS = 180.0  # TensorFlow imports slowly; a server that is not up by then is broken
LIVENESS_INTERVAL_SECONDS = 1.0  # how often a slow start checks that the container has not exited
STOP_GRACE_SECONDS = 30  # SageMaker's grace period between SIGTERM and SIGKILL
LARGE_LAYER_BYTES = 1_000_000  # the layer table lists layers at least this big

# Acceptance targets.
MAX_SKLEARN_ABOVE_BASE_MB = 250.0
MAX_COLD_START_SECONDS = 3.0


class StepFailed(RuntimeError):
    """A command this benchmark runs failed; the message says which and why."""


@dataclass
class ImageResult:
    framework: str
    model_format: str
    size_bytes: int = 0
    cold_start_seconds: list[float] = field(default_factory=list)
    stop_seconds: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    large_layers: list[tuple[int, str]] = field(default_factory=list)  # see large_layers()
    error: str | None = None

    @property
    def image(self) -> str:
        return f"bench-{self.framework}-{self.model_format}:latest"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr + result.stdout).strip().splitlines()[-10:])
        raise StepFailed(f"`{' '.join(argv)}` exited with {result.returncode}:\n{tail}")
    return result.stdout


def docker(*args: str) -> str:
    return run([DOCKER, *args]).strip()


# ---- build and measure ------------------------------------------------------------------------------


def build_image(result: ImageResult, work: Path) -> None:
    project = result.image.removesuffix(":latest")
    run(
        [
            str(MODELCRATE),
            "init",
            project,
            "--framework",
            result.framework,
            "--model-format",
            result.model_format,
            "--model-source",
            "sample",
            "--base-image",
            BASE_IMAGE,
            "--yes",
        ],
        cwd=work,
    )
    run([str(MODELCRATE), "build", project], cwd=work, env={**os.environ, "MODELCRATE_PIP_CA": PIP_CA})


def image_size_bytes(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def ping_ok(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=PING_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False  # not listening yet, or a worker is still coming up
    finally:
        connection.close()


def wait_until_healthy(container: str, port: int, started: float) -> float:
    """Seconds from ``started`` to the first 200 from /ping."""
    next_liveness_check = started + LIVENESS_INTERVAL_SECONDS
    while True:
        if ping_ok(port):
            return time.perf_counter() - started
        now = time.perf_counter()
        if now - started > READY_TIMEOUT_SECONDS:
            raise StepFailed(f"/ping did not answer 200 within {READY_TIMEOUT_SECONDS:.0f} s")
        # A server that died would otherwise only be noticed at the timeout.
        if now >= next_liveness_check:
            next_liveness_check = now + LIVENESS_INTERVAL_SECONDS
            if docker("inspect", "--format", "{{.State.Running}}", container) != "true":
                logs = subprocess.run([DOCKER, "logs", container], capture_output=True, text=True, check=False)
                tail = "\n".join((logs.stdout + logs.stderr).strip().splitlines()[-10:])
                raise StepFailed(f"the container exited before /ping answered:\n{tail}")
        time.sleep(PING_INTERVAL_SECONDS)


def measure_start_and_stop(result: ImageResult) -> None:
    """One cold start: `docker run -d ... serve` until /ping is healthy, then a timed `docker stop`."""
    # A name of our own lets the cleanup remove the container even when `docker run` fails part way.
    container = f"bench-cold-start-{uuid.uuid4().hex[:12]}"
    port = free_port()
    run_args = ["run", "-d", "--name", container, "--network", "host"]
    run_args += ["-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", f"MODELCRATE_BIND_HOST={HOST}"]
    try:
        started = time.perf_counter()
        docker(*run_args, result.image, "serve")
        result.cold_start_seconds.append(wait_until_healthy(container, port, started))
        stopping = time.perf_counter()
        docker("stop", "-t", str(STOP_GRACE_SECONDS), container)
        result.stop_seconds.append(time.perf_counter() - stopping)
        # 0 means serve drained and exited on SIGTERM; 137 would mean Docker had to SIGKILL it.
        result.exit_codes.append(int(docker("inspect", "--format", "{{.State.ExitCode}}", container)))
    finally:
        subprocess.run([DOCKER, "rm", "-f", container], capture_output=True, check=False)


def large_layers(image: str, base_layer_count: int) -> list[tuple[int, str]]:
    """(bytes, Dockerfile step) of the layers above the base that hold at least LARGE_LAYER_BYTES, in build order."""
    history = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image)
    rows = [line.split("\t", 1) for line in history.splitlines()]
    own_layers = reversed(rows[: len(rows) - base_layer_count])  # history lists the newest layer first
    return [(int(size), step) for size, step in own_layers if int(size) >= LARGE_LAYER_BYTES]


# ---- report -----------------------------------------------------------------------------------------


def megabytes(size_bytes: int) -> float:
    return size_bytes / 1e6


def verdict(passed: bool) -> str:
    return "PASS" if passed else "**FAIL**"


def dockerfile_step(created_by: str) -> str:
    """`docker history`'s CREATED BY as the Dockerfile line, fit for a table cell."""
    step = " ".join(created_by.removesuffix("# buildkit").split()).replace("/bin/sh -c ", "")
    return step.replace("|", "\\|")


def git(*args: str) -> str:
    result = subprocess.run(["git", "-C", str(REPOSITORY_DIR), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def source_revision() -> str:
    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    # The images contain a wheel built from the working tree, which may differ from the commit.
    if git("status", "--porcelain", "--", "src"):
        commit += " (src/ has uncommitted changes, which the built images contain)"
    return commit


def source_digest() -> str:
    """Of the package's code and project templates: each build packs whatever they hold at that moment."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def machine_table(load_at_start: float, revision: str, built_here: bool) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    engine = docker("version", "--format", "{{.Server.Version}}")
    client = docker("version", "--format", "{{.Client.Version}}")
    storage_driver = docker("info", "--format", "{{.Driver}}")
    images = "built by this run (`modelcrate init` + `modelcrate build`)" if built_here else "existing (--skip-build)"
    return [
        "| | |",
        "|---|---|",
        f"| CPU | {cpu}; {len(os.sched_getaffinity(0))} cores available |",
        f"| memory | {memory_kib / 1024**2:.1f} GiB |",
        f"| OS | {platform.system()} {platform.release()} |",
        f"| Docker | engine {engine}, client {client}, storage driver {storage_driver} |",
        f"| modelcrate source | {revision} |",
        f"| images | {images} |",
        f"| 1-minute load average, start / end | {load_at_start:.2f} / {os.getloadavg()[0]:.2f} |",
        "",
    ]


METHOD = """\
## Method

- Images: for each pair, in a temporary directory, `modelcrate init bench-FRAMEWORK-FORMAT --framework
  FRAMEWORK --model-format FORMAT --model-source sample --base-image {base} --yes`, then
  `modelcrate build bench-FRAMEWORK-FORMAT` with `MODELCRATE_PIP_CA={pip_ca}`. The engine caches layers,
  so images of one framework share their framework layers. With --skip-build the existing
  `bench-*:latest` images are measured as they are.
- Size: `docker image inspect --format '{{{{.Size}}}}'` (all layers, base included), in MB of 10^6 bytes;
  "above base" subtracts the same number for `{base}`. Target: scikit-learn images at most
  {max_above_base:.0f} MB above the base.
- Cold start: the clock starts just before `docker run -d --network host -e SAGEMAKER_BIND_TO_PORT=PORT
  -e MODELCRATE_BIND_HOST=127.0.0.1 IMAGE serve` is invoked (a free port each time) and stops at the first
  HTTP 200 from `GET http://127.0.0.1:PORT/ping`, polled every {ping_ms:.0f} ms. So it includes container
  creation, Python and framework imports, and model loading. {starts} rounds, each starting every image
  once in the order of the table (bursts of other load then spread over images); median and max. The
  image's files are in the host's page cache (just built or run), so this is a warm host's start, not the
  first start after a pull onto a fresh instance. Target: median at most {max_cold_start:.0f} s.
- Stop: right after /ping answers, the time `docker stop -t {grace}` takes (SIGTERM, then SIGKILL after
  {grace} s, as SageMaker does); median and max, and the container's exit codes (0: serve drained and
  exited; 137: it had to be killed). Every container is removed with `docker rm -f` afterwards.
- Other processes may use the machine (and the engine) during the run; the load averages above say how
  busy it was.
"""


def results_table(results: list[ImageResult], base_bytes: int) -> list[str]:
    lines = [
        "| image | size MB | above base MB | size target | cold start median s | cold start max s "
        "| cold start target | stop median s | stop max s | exit codes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.error:
            lines.append(f"| `{result.image}` | failed: see below | | | | | | | | |")
            continue
        above_base_mb = megabytes(result.size_bytes - base_bytes)
        size_target = "n/a"
        if result.framework == "sklearn":
            size_target = verdict(above_base_mb <= MAX_SKLEARN_ABOVE_BASE_MB)
        cold_start = statistics.median(result.cold_start_seconds)
        lines.append(
            f"| `{result.image}` | {megabytes(result.size_bytes):.1f} | {above_base_mb:.1f} | {size_target} "
            f"| {cold_start:.2f} | {max(result.cold_start_seconds):.2f} "
            f"| {verdict(cold_start <= MAX_COLD_START_SECONDS)} "
            f"| {statistics.median(result.stop_seconds):.2f} | {max(result.stop_seconds):.2f} "
            f"| {', '.join(map(str, result.exit_codes))} |"
        )
    return [*lines, ""]


def layers_table(results: list[ImageResult]) -> list[str]:
    lines = ["| image | layer (Dockerfile step) | MB |", "|---|---|---|"]
    for result in results:
        lines += [
            f"| `{result.image}` | `{dockerfile_step(step)}` | {megabytes(size):.1f} |"
            for size, step in result.large_layers
        ]
    return [*lines, ""]


def render_report(
    results: list[ImageResult],
    base_bytes: int,
    started_at: datetime.datetime,
    machine: list[str],
) -> str:
    lines = [
        "# Image benchmark: size and cold start of modelcrate-built images",
        "",
        f"Run of `.venv/bin/python benchmarks/images.py` started {started_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "## Machine",
        "",
        *machine,
        "## Results",
        "",
        f"Base image `{BASE_IMAGE}`: {megabytes(base_bytes):.1f} MB. "
        f"Targets: scikit-learn images at most {MAX_SKLEARN_ABOVE_BASE_MB:.0f} MB above the base; "
        f"cold start (median of {STARTS}) at most {MAX_COLD_START_SECONDS:.0f} s.",
        "",
        *results_table(results, base_bytes),
    ]
    failures = [result for result in results if result.error]
    if failures:
        lines += ["### Failures", ""]
        for result in failures:
            lines += [f"`{result.image}`:", "", "```", result.error, "```", ""]
    lines += [
        "## Layers above the base",
        "",
        f"Layers of at least {megabytes(LARGE_LAYER_BYTES):.0f} MB, from `docker history`.",
        "",
        *layers_table(results),
        METHOD.format(
            base=BASE_IMAGE,
            pip_ca=PIP_CA,
            max_above_base=MAX_SKLEARN_ABOVE_BASE_MB,
            ping_ms=PING_INTERVAL_SECONDS * 1e3,
            starts=STARTS,
            max_cold_start=MAX_COLD_START_SECONDS,
            grace=STOP_GRACE_SECONDS,
        ),
    ]
    return "\n".join(lines).rstrip() + "\n"


# ---- main -------------------------------------------------------------------------------------------


def attempt(result: ImageResult, step: Callable[[], None]) -> None:
    # One broken image should not hide the numbers of the others; the report shows the failure.
    try:
        step()
    except StepFailed as exc:
        result.error = str(exc)
        progress(f"{result.image}: failed: {exc}")


def prepare_image(result: ImageResult, work: Path | None, base_layer_count: int) -> None:
    if work is not None:
        progress(f"{result.image}: building")
        build_image(result, work)
    result.size_bytes = image_size_bytes(result.image)
    result.large_layers = large_layers(result.image, base_layer_count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-build", action="store_true", help="measure the existing bench-*:latest images")
    args = parser.parse_args(argv)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_at_start, revision, digest = os.getloadavg()[0], source_revision(), source_digest()
    try:
        base_bytes = image_size_bytes(BASE_IMAGE)
        base_layer_count = len(docker("history", "--quiet", BASE_IMAGE).splitlines())
    except StepFailed as exc:
        sys.exit(f"the base image {BASE_IMAGE} is missing (scripts/setup-docker.sh makes it): {exc}")

    results = [ImageResult(framework, model_format) for framework, model_format in FORMATS]
    with tempfile.TemporaryDirectory(prefix="modelcrate-images-") as scratch:
        work = None if args.skip_build else Path(scratch)
        for result in results:
            attempt(result, lambda result=result: prepare_image(result, work, base_layer_count))
    # Rounds that start every image once: a burst of load from other processes on this shared machine
    # then slows one start of several images rather than every start of one image.
    for start in range(1, STARTS + 1):
        for result in results:
            if not result.error:
                progress(f"{result.image}: start {start} of {STARTS}")
                attempt(result, lambda result=result: measure_start_and_stop(result))

    if not args.skip_build and source_digest() != digest:
        revision += "; src/modelcrate changed during this run, so the images may not all come from the same code"
    machine = machine_table(load_at_start, revision, built_here=not args.skip_build)
    report = render_report(results, base_bytes, started_at, machine)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)
    progress(f"report written to {REPORT_PATH.relative_to(REPOSITORY_DIR)}")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
