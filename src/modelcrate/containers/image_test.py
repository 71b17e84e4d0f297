"""``modelcrate test-image``: run an image network-isolated and check it answers what the model recorded.

Under ``--network none`` nothing outside can reach the server, so the requests are sent from inside the
container (``docker exec``), by the image's own Python: the check needs nothing but the image.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelcrate.containers.docker import DockerError, container_logs, docker, running_container

HEALTH_DEADLINE_S = 240  # SageMaker's limit for a container to become healthy
KEYS = "inference_output=predicted_label,probabilities"
CONTENT_TYPES = ("text/csv", "application/json", "application/jsonlines")

# Runs inside the container: waits for /ping, then sends each request and prints the answers as JSON.
_REPLAY = r"""
import json, sys, time, urllib.error, urllib.request
spec = json.load(sys.stdin)
base = "http://127.0.0.1:%d" % spec["port"]
start = time.monotonic()
while True:
    try:
        if urllib.request.urlopen(base + "/ping", timeout=2).status == 200:
            break
    except Exception:
        pass
    if time.monotonic() - start > spec["deadline"]:
        print(json.dumps({"healthy": False}))
        sys.exit(0)
    time.sleep(0.05)
healthy_after = time.monotonic() - start
answers = []
for r in spec["requests"]:
    headers = {"Content-Type": r["content_type"], "Accept": "application/json"}
    if r["attributes"]:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = r["attributes"]
    request = urllib.request.Request(base + "/invocations", data=r["body"].encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answers.append([response.status, response.read().decode()])
    except urllib.error.HTTPError as error:
        answers.append([error.code, error.read().decode()])
print(json.dumps({"healthy": True, "healthy_after_s": healthy_after, "answers": answers}))
"""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ImageReport:
    image: str
    checks: list[Check] = field(default_factory=list)
    healthy_after_s: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def _body(record: list[float], content_type: str) -> str:
    if content_type == "text/csv":
        return ",".join(map(repr, record)) + "\n"
    if content_type == "application/json":
        return json.dumps({"instances": [record]})
    return json.dumps(record) + "\n"


def _first_prediction(answer: str):
    return json.loads(answer)["predictions"][0]


def _tolerance(metadata: dict) -> dict[str, float]:
    """Tree models answer exactly what they recorded; a compiled model within the tolerance `modelcrate optimize`
    verified; TensorFlow within float rounding."""
    compiled = metadata.get("compiled")
    if compiled and compiled.get("verified"):
        return {"rtol": compiled["relative_tolerance"], "atol": compiled["absolute_tolerance"]}
    if metadata.get("framework") == "tensorflow":
        return {"rtol": 1e-6, "atol": 1e-9}
    return {"rtol": 0.0, "atol": 0.0}


def _matches(got, expected: dict, tolerance: dict[str, float]) -> bool:
    if "prediction" in expected:
        return bool(np.allclose(got, expected["prediction"], **tolerance))
    return got["predicted_label"] == expected["predicted_label"] and bool(
        np.allclose(got["probabilities"], expected["probabilities"], **tolerance)
    )


@contextmanager
def unpacked_model(model_tar: Path | None) -> Iterator[Path | None]:
    """SageMaker's ModelDataUrl: a model.tar.gz unpacked into /opt/ml/model (here: a read-only mount)."""
    if model_tar is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="modelcrate-model-") as scratch, tarfile.open(model_tar) as archive:
        archive.extractall(scratch, filter="data")
        # The server runs as a non-root user: the mounted model must be readable by anyone.
        for path in [Path(scratch), *Path(scratch).rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield Path(scratch)


def read_metadata(image: str, model_dir: Path | None) -> dict:
    if model_dir is not None:
        path = model_dir / "modelcrate.json"
        if not path.is_file():
            raise DockerError("the model archive has no modelcrate.json with recorded samples to compare with")
        return json.loads(path.read_text())
    text = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "cat", image, "/opt/ml/model/modelcrate.json", check=False
    )
    if not text.strip():
        raise DockerError(f"{image} has no /opt/ml/model/modelcrate.json with recorded samples; give --model-tar")
    return json.loads(text)


def test_image(image: str, model_tar: Path | None = None) -> ImageReport:
    report = ImageReport(image)
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image)
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image).strip()
    report.checks.append(Check("runs as a non-root user", user not in ("", "root", "0"), user or "root"))
    report.checks.append(
        Check(
            "label accept-bind-to-port",
            '"com.amazonaws.sagemaker.capabilities.accept-bind-to-port":"true"' in labels,
        )
    )
    with unpacked_model(model_tar) as model_dir:
        metadata = read_metadata(image, model_dir)
        samples = metadata["samples"]
        classifier = metadata.get("task") == "classification"
        tolerance = _tolerance(metadata)
        requests = [
            {"body": _body(s["input"], ct), "content_type": ct, "attributes": KEYS if classifier else None}
            for s in samples
            for ct in CONTENT_TYPES
        ]
        with running_container(image, isolated=True, model_dir=model_dir) as container:
            spec = json.dumps({"port": 8080, "deadline": HEALTH_DEADLINE_S, "requests": requests})
            output = docker(
                "exec", "-i", container.id, "python", "-c", _REPLAY, input_=spec, timeout=HEALTH_DEADLINE_S + 120
            )
            result = json.loads(output.strip().splitlines()[-1])
            if not result["healthy"]:
                report.checks.append(Check("healthy", False, container_logs(container.id)[-2000:]))
                return report
            report.healthy_after_s = result["healthy_after_s"]
            report.checks.append(Check("healthy under --network none", True, f"{report.healthy_after_s:.2f} s"))
            answers = iter(result["answers"])
            for number, sample in enumerate(samples, start=1):
                for content_type in CONTENT_TYPES:
                    status, body = next(answers)
                    name = f"sample {number} as {content_type}"
                    if status != 200:
                        report.checks.append(Check(name, False, f"HTTP {status}: {body.strip()}"))
                        continue
                    got = _first_prediction(body)
                    report.checks.append(
                        Check(
                            name,
                            _matches(got, sample["expected"], tolerance),
                            f"got {got}, recorded {sample['expected']}",
                        )
                    )
    return report
