"""``modelcrate test-image``: run an image network-isolated and check it answers what the model recorded, and
that no root process answers requests.

Under ``--network none`` nothing outside can reach the server, so the requests are sent from inside the
container (``docker exec``), by the image's own Python: the check needs nothing but the image.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelcrate.containers.docker import DockerError, container_logs, docker, running_container

HEALTH_DEADLINE_S = 240  # SageMaker's limit for a container to become healthy
KEYS = "inference_output=predicted_label,probabilities"
ANSWERS_AS_NON_ROOT = "answers requests as non-root"
WORKERS_SETTLE_S = 60  # for every worker to load (as root) and drop; ours log when done, others are waited for
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

# Runs inside the container as the user it started as (who can read the open files of the processes it started):
# each process holding a socket that listens on the port, and each process whose open files cannot be read (one
# that changed its ids is not dumpable, and reading its files would need CAP_SYS_PTRACE, which containers lack),
# with its parent, ids (real, effective, saved, filesystem) and no_new_privs.
_LISTENERS = r"""
import json, os, sys
port = int(sys.argv[1])
listening = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        fields = row.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            listening.add("socket:[%s]" % fields[9])
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = dict(line.split(":\t", 1) for line in open("/proc/%s/status" % pid) if ":\t" in line)
        command = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    try:
        holds = bool({os.readlink("/proc/%s/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%s/fd" % pid)} & listening)
    except OSError:
        holds = None
    if holds is not False:
        found.append({"pid": int(pid), "ppid": int(status["PPid"]), "holds_socket": holds,
                      "state": status.get("State", "").strip(),
                      "uids": status["Uid"].split(), "gids": status["Gid"].split(),
                      "no_new_privs": status.get("NoNewPrivs", "0").strip() == "1", "command": command.strip()})
print(json.dumps(found))
"""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ServingProcess:
    pid: int
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]
    no_new_privs: bool
    command: str
    state: str = ""
    loading: bool = False  # a modelcrate worker that never logged ready: it has not accepted a connection

    @property
    def root(self) -> bool:
        """Any id 0 is root: a saved uid 0 can be taken back."""
        return 0 in self.uids or 0 in self.gids

    @property
    def answers_as_root(self) -> bool:
        return self.root and not self.loading

    def describe(self) -> str:
        ids = f"uid {self.uids[1]} gid {self.gids[1]}" if not self.root else f"uids {self.uids} gids {self.gids}"
        state = f" ({self.state})" if self.state else ""
        loading = f", still loading{state}: has not accepted a connection" if self.loading else ""
        return f"pid {self.pid} {ids}{', no_new_privs' if self.no_new_privs else ''}{loading} ({self.command[:60]})"


def answering_processes(processes: list[dict]) -> list[ServingProcess]:
    """The processes that accept connections on the listening socket: of those holding it, and those whose open
    files could not be read (``holds_socket`` None) forked by a holder, the ones with no such child. A pre-forking
    master (ours, gunicorn's, nginx's) holds the socket but leaves accepting to its workers, which may have changed
    their ids (and so hide their open files); a single-process server is its own answerer."""
    holders = {p["pid"] for p in processes if p["holds_socket"]}
    candidates = [p for p in processes if p["holds_socket"] or (p["holds_socket"] is None and p["ppid"] in holders)]
    parents = {p["ppid"] for p in candidates}
    return [
        ServingProcess(
            p["pid"],
            tuple(map(int, p["uids"])),
            tuple(map(int, p["gids"])),
            p["no_new_privs"],
            p["command"],
            p.get("state", ""),
        )
        for p in candidates
        if p["pid"] not in parents
    ]


def ready_workers(container: str) -> set[int]:
    """The pids of the workers that logged "worker ready": modelcrate's runtime logs it after a worker has loaded
    its model and dropped root (when it was root), so their ids are final. None for another server."""
    ready = set()
    for line in container_logs(container).splitlines():
        if '"worker ready"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == "worker ready" and isinstance(entry.get("pid"), int):
            ready.add(entry["pid"])
    return ready


def serving_processes(container: str, port: int, settle_s: float = WORKERS_SETTLE_S) -> list[ServingProcess]:
    """The processes answering on ``port``. A worker still loading (as root, before it drops) holds the socket
    too: the listing is read again until no process is root but one whose ids are final (it logged that it is
    ready), for up to ``settle_s``; then the last one stands. In it, a modelcrate worker that has still not
    logged ready is marked loading: it drops root before it accepts a connection, so it has answered nothing."""
    deadline = time.monotonic() + settle_s
    while True:
        # The log first: a worker that logged ready had dropped root before the listing is taken. Read after it,
        # the log could name a worker that dropped in between, and its stale root ids would wrongly stand.
        ready = ready_workers(container)
        output = docker("exec", container, "python", "-c", _LISTENERS, str(port), timeout=60)
        processes = answering_processes(json.loads(output.strip().splitlines()[-1]))
        root = {p.pid for p in processes if p.root}
        if processes and root <= ready:
            return processes
        if time.monotonic() > deadline:
            if ready:  # modelcrate's runtime: its workers log when they are ready
                for process in processes:
                    process.loading = process.root and process.pid not in ready
            return processes
        time.sleep(0.5)


def non_root_check(processes: list[ServingProcess]) -> Check:
    passed = any(not p.loading for p in processes) and not any(p.answers_as_root for p in processes)
    shown = "; ".join(p.describe() for p in processes) or "no process listens on the port"
    return Check(ANSWERS_AS_NON_ROOT, passed, shown)


@dataclass
class ImageReport:
    image: str
    checks: list[Check] = field(default_factory=list)
    healthy_after_s: float | None = None
    serving_processes: list[ServingProcess] = field(default_factory=list)  # the ones that answer requests

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
    """SageMaker's ModelDataUrl: a model.tar.gz unpacked into /opt/ml/model (here: a read-only mount), as the
    platform and its SDK unpack it: owned by the unpacking user (root), directories 0700, files 0600."""
    if model_tar is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="modelcrate-model-") as scratch, tarfile.open(model_tar) as archive:
        archive.extractall(scratch, filter="data")
        for path in [Path(scratch), *Path(scratch).rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
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
            report.serving_processes = serving_processes(container.id, 8080)
            report.checks.append(non_root_check(report.serving_processes))
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
