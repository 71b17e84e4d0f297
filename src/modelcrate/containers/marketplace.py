"""``modelcrate check-image --marketplace``: will AWS Marketplace accept this image? One verdict per rule.

Every rule looks at the image itself, never at the project that built it: the base OS from its os-release,
the ids of the processes answering its requests, what is on its PATH, its size, its filesystem (streamed once
through ``docker export``) and its Python distributions (audited on the host with pip-audit). Serving (and
training, for algorithms) runs with ``--network none``, as Marketplace runs a buyer's containers.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from modelcrate.archives import pack_directory
from modelcrate.containers.docker import DOCKER, DockerError, docker, require_engine
from modelcrate.containers.image_test import ANSWERS_AS_NON_ROOT, ServingProcess, test_image
from modelcrate.containers.training_job import (
    TRAINING_LABEL,
    image_training_spec,
    training_job,
    write_abalone_channels,
)

SUPPORTED_OS_FILE = Path(__file__).with_name("marketplace_os.json")
# The file's two lists: what Marketplace's scan (Amazon ECR's) reads, and the SageMaker developer guide's older one.
SCANNED_SYSTEMS, DEVELOPER_GUIDE_SYSTEMS = "systems", "developer_guide_systems"
# Marketplace sets no image size limit of its own (ECR's quotas apply: at most 52,000 MiB per layer); 10 GB is
# SageMaker Serverless Inference's image limit, and a smaller image starts endpoints and jobs sooner.
DEFAULT_MAX_SIZE_GB = 10.0

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "not applicable"
NOTE = "note"  # said on its own line, never a failure

# Credentials: any .aws path anywhere, access key ids in the files people put configuration and code in.
AWS_ACCESS_KEY = re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
SECRET_ENV_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|AWS_ACCESS_KEY_ID", re.IGNORECASE)
CONTENT_SCAN_ROOTS = ("root/", "home/", "opt/ml/", "etc/", "tmp/", "var/tmp/", "srv/", "app/", "workspace/")
MAX_SCANNED_FILE_BYTES = 1 << 20  # bigger files under those roots are model weights or data, not configuration
MAX_SCANNED_TOTAL_BYTES = 256 << 20
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")  # os-release(5): the second is the fallback

# Runs inside the image (its own python, no network): the user it runs as, its entry points, its distributions.
_PROBE = r"""
import importlib.metadata, json, os, shutil
names = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions() if d.metadata["Name"]}
print(json.dumps({"uid": os.getuid(), "paths": {n: shutil.which(n) for n in ("serve", "train")},
                  "distributions": sorted(names)}))
"""
# Built from source by `modelcrate build`: PyPI's project of that name (if any) is not what the image holds.
UNAUDITED_DISTRIBUTIONS = {"modelcrate"}


class MarketplaceError(ValueError):
    """The check cannot start: a bad argument or file; the message says which and what to do."""


@dataclass
class RuleResult:
    rule: str  # stable id, for CI
    title: str
    status: str  # pass | fail | not applicable
    found: str  # what was seen, and where
    fix: str = ""  # what to do, for a failure
    evidence: dict = field(default_factory=dict)  # machine-readable specifics (findings, what was scanned)

    @classmethod
    def verdict(cls, rule: str, title: str, passed: bool, found: str, fix: str, evidence: dict) -> RuleResult:
        """Pass or fail on one condition; the fix is shown only for a failure."""
        return cls(rule, title, PASS if passed else FAIL, found, "" if passed else fix, evidence)


@dataclass
class MarketplaceReport:
    image: str
    rules: list[RuleResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rules) and all(rule.status != FAIL for rule in self.rules)

    def to_json(self) -> dict:
        return {"image": self.image, "passed": self.passed, "rules": [asdict(rule) for rule in self.rules]}


# ---- base OS ----


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, values in shell quoting (os-release(5)); comments and malformed lines are skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = words[0] if words else ""
    return values


def load_supported_os(path: Path | None = None, key: str = SCANNED_SYSTEMS) -> list[dict]:
    """A list of ``path`` (default: the shipped file). A system without ``versions`` accepts every release."""
    path = path or SUPPORTED_OS_FILE
    try:
        systems = json.loads(path.read_text())[key]
        for system in systems:
            versions = system.get("versions", [])
            if not isinstance(system["id"], str) or not isinstance(versions, list):
                raise TypeError("id must be a string and versions a list")
            if not all(isinstance(v, str) for v in versions):
                raise TypeError("versions must be strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MarketplaceError(
            f"cannot read the supported OS list {path}: {exc}; it must be JSON like "
            '{"systems": [{"id": "debian", "name": "Debian", "versions": ["12"]}, {"id": "amzn", "name": '
            '"Amazon Linux"}]} (ID and VERSION_ID of os-release; no versions: every release)'
        ) from None
    return systems


def _version_matches(version_id: str, supported: str) -> bool:
    return version_id == supported or version_id.startswith(supported + ".")  # "9" covers "9.4", "3.22" "3.22.1"


def _listed(systems: list[dict]) -> str:
    return "; ".join(
        f"{s.get('name', s['id'])} ({s['id']}) {', '.join(s['versions']) if 'versions' in s else 'any release'}"
        for s in systems
    )


def _on_list(os_id: str, version_id: str, systems: list[dict]) -> tuple[bool, bool]:
    """(the OS is on the list, this release is)."""
    system = next((s for s in systems if s["id"] == os_id), None)
    if system is None:
        return False, False
    if "versions" not in system:
        return True, True
    return True, bool(version_id) and any(_version_matches(version_id, v) for v in system["versions"])


def base_os_rule(os_release: dict[str, str] | None, systems: list[dict], where: str) -> RuleResult:
    title = "base OS can be scanned"
    listed = _listed(systems)
    if not os_release or not os_release.get("ID"):
        return RuleResult(
            "base-os",
            title,
            FAIL,
            "the image has no /etc/os-release or /usr/lib/os-release (built FROM scratch?)",
            f"build FROM a base image of a supported OS: {listed}",
        )
    os_id, version_id = os_release["ID"], os_release.get("VERSION_ID", "")
    shown = os_release.get("PRETTY_NAME") or f"{os_id} {version_id}"
    evidence = {"id": os_id, "version_id": version_id, "pretty_name": shown}
    found = f"{shown} (ID={os_id}, VERSION_ID={version_id or 'none'}, from /{where})"
    known_os, known_release = _on_list(os_id, version_id, systems)
    if known_release:
        return RuleResult("base-os", title, PASS, found, evidence=evidence)
    why = "that release is not on the list" if known_os else "that OS is not on the list"
    return RuleResult(
        "base-os",
        title,
        FAIL,
        f"{found}: {why}",
        f"change BASE_IMAGE to a supported OS ({listed}); if AWS now scans this one, pass an updated list with "
        "--supported-os FILE",
        evidence,
    )


def developer_guide_os_rule(os_release: dict[str, str] | None, guide_systems: list[dict]) -> RuleResult:
    """Whether the base is on the SageMaker developer guide's older list. Never a failure: Marketplace's scan
    reads what the base-os rule checks, and nothing on the guide's list but Amazon Linux runs the pinned stack."""
    rule, title = "base-os-developer-guide", "base OS on the SageMaker developer guide's list"
    if not os_release or not os_release.get("ID"):
        return RuleResult(rule, title, NOT_APPLICABLE, "the image has no os-release (see the base OS rule)")
    os_id, version_id = os_release["ID"], os_release.get("VERSION_ID", "")
    shown = os_release.get("PRETTY_NAME") or f"{os_id} {version_id}"
    evidence = {"id": os_id, "version_id": version_id}
    if _on_list(os_id, version_id, guide_systems)[1]:
        return RuleResult(rule, title, PASS, f"{shown} is on it", evidence=evidence)
    return RuleResult(
        rule,
        title,
        NOTE,
        f"{shown} is not on the SageMaker developer guide's list of OSes scanned for Marketplace "
        f"({_listed(guide_systems)})",
        "that list predates Marketplace's scan by Amazon ECR (the base OS rule) and, but for Amazon Linux, names "
        "only releases past their end of life, which cannot run this image's pinned stack: its Python 3.11 (numpy "
        "2.4 needs Python >= 3.11; Debian 10 and Ubuntu 18.10 ship 3.7 at most) and manylinux wheels that need "
        "glibc 2.27 or newer (numpy, scipy; xgboost's full build 2.28), where CentOS and Oracle Linux 7 have glibc "
        "2.17, Amazon Linux 2 has 2.26 and Alpine has musl. To be on both lists, build FROM an Amazon Linux 2023 image "
        "with Python 3.11 (glibc 2.34) and choose it with modelcrate init --base-image IMAGE (or modelcrate build "
        "--base-image IMAGE); this machine's scripts/setup-docker.sh can only debootstrap Debian bookworm or "
        "bullseye, so build that base where Amazon Linux images can be pulled",
        evidence,
    )


# ---- the image's filesystem ----


@dataclass
class FilesystemScan:
    entries: int = 0
    files_scanned: int = 0
    bytes_scanned: int = 0
    too_big_to_scan: int = 0
    budget_exhausted: bool = False
    os_release: dict[str, str] = field(default_factory=dict)  # path -> text
    aws_paths: list[str] = field(default_factory=list)
    access_keys: list[tuple[str, str]] = field(default_factory=list)  # (path, masked key)


def _mask(key: bytes) -> str:
    text = key.decode()
    return f"{text[:4]}{'*' * 12}{text[-4:]}"


def _fits_budget(scan: FilesystemScan, size: int) -> bool:
    """Whether a file under the searched roots is read, counting the ones that are not."""
    if size > MAX_SCANNED_FILE_BYTES:
        scan.too_big_to_scan += 1
        return False
    if scan.bytes_scanned + size > MAX_SCANNED_TOTAL_BYTES:
        scan.budget_exhausted = True
        return False
    return True


def scan_filesystem(stream: IO[bytes]) -> FilesystemScan:
    """One pass over a tar stream of the image's filesystem (``docker export``), never unpacked to disk."""
    scan = FilesystemScan()
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            scan.entries += 1
            path = member.name.removeprefix("./").lstrip("/")
            if ".aws" in path.split("/"):
                scan.aws_paths.append("/" + path)
            if not member.isfile():
                continue
            searched = path.startswith(CONTENT_SCAN_ROOTS) and _fits_budget(scan, member.size)
            if not searched and path not in OS_RELEASE_PATHS:
                continue
            content = archive.extractfile(member).read()  # a stream: each member's data can be read only once
            if path in OS_RELEASE_PATHS:
                scan.os_release[path] = content.decode("utf-8", "replace")
            if searched:
                scan.files_scanned += 1
                scan.bytes_scanned += len(content)
                keys = sorted(set(AWS_ACCESS_KEY.findall(content)))
                scan.access_keys += [("/" + path, _mask(key)) for key in keys]
    return scan


def export_and_scan(image: str) -> FilesystemScan:
    container = docker("create", "--network", "none", image).strip()
    try:
        process = subprocess.Popen([DOCKER, "export", container], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            scan = scan_filesystem(process.stdout)
        except tarfile.TarError as exc:
            process.kill()
            raise DockerError(f"docker export of {image} gave an unreadable stream: {exc}") from None
        finally:
            process.stdout.close()
            problem = process.stderr.read().decode(errors="replace").strip()
            process.wait()
        if process.returncode != 0:
            raise DockerError(f"docker export of {image} failed: {problem or f'exit {process.returncode}'}")
        return scan
    finally:
        docker("rm", "-f", container, check=False)


def os_release_of(scan: FilesystemScan) -> tuple[dict[str, str] | None, str]:
    for path in OS_RELEASE_PATHS:  # /etc/os-release is usually a symlink: its target is read instead
        if path in scan.os_release:
            return parse_os_release(scan.os_release[path]), path
    return None, ""


def credentials_rule(scan: FilesystemScan, env: Iterable[str]) -> RuleResult:
    title = "no credentials baked in"
    secret_env = []
    for item in env:
        name, _, value = item.partition("=")
        if value and (SECRET_ENV_NAME.search(name) or AWS_ACCESS_KEY.search(value.encode())):
            secret_env.append(name)
    roots = ", ".join("/" + root.rstrip("/") for root in CONTENT_SCAN_ROOTS)
    scanned = (
        f"{scan.entries} paths checked for .aws; {scan.files_scanned} files ({scan.bytes_scanned / 1e6:.1f} MB) "
        f"under {roots} searched for AWS access keys"
    )
    if scan.too_big_to_scan:
        scanned += f" ({scan.too_big_to_scan} files over {MAX_SCANNED_FILE_BYTES >> 20} MiB not searched)"
    if scan.budget_exhausted:
        scanned += f" (stopped searching after {MAX_SCANNED_TOTAL_BYTES >> 20} MiB)"
    evidence = {
        "aws_paths": scan.aws_paths,
        "access_keys": [{"path": path, "key": key} for path, key in scan.access_keys],
        "secret_env": secret_env,
        "scanned": {
            "entries": scan.entries,
            "files_searched": scan.files_scanned,
            "bytes_searched": scan.bytes_scanned,
            "roots": ["/" + root for root in CONTENT_SCAN_ROOTS],
            "files_too_big": scan.too_big_to_scan,
            "budget_exhausted": scan.budget_exhausted,
        },
    }
    problems = []
    if scan.aws_paths:
        problems.append(f"AWS credential paths (.aws): {', '.join(scan.aws_paths[:10])}")
    if scan.access_keys:
        problems.append("AWS access keys in " + ", ".join(f"{path} ({key})" for path, key in scan.access_keys[:10]))
    if secret_env:
        problems.append(f"secrets in the image's ENV: {', '.join(secret_env)}")
    if not problems:
        return RuleResult("no-credentials", title, PASS, f"none found: {scanned}", evidence=evidence)
    return RuleResult(
        "no-credentials",
        title,
        FAIL,
        "; ".join(problems) + f" ({scanned})",
        "remove them from the image (delete the COPY or ENV that put them there and rebuild: a later `RUN rm` "
        "leaves them in an earlier layer); pass secrets at build time with BuildKit secrets (--secret) and give "
        "the running container an IAM role, never keys",
        evidence,
    )


# ---- running the image ----


@dataclass
class Probe:
    uid: int | None
    paths: dict[str, str | None]
    distributions: list[tuple[str, str]]
    problem: str = ""


def probe_image(image: str) -> Probe:
    try:
        output = docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", _PROBE, timeout=120)
        data = json.loads(output.strip().splitlines()[-1])
    except (DockerError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return Probe(None, {}, [], f"could not run python in the image to look inside it ({exc})")
    return Probe(data["uid"], data["paths"], [tuple(item) for item in data["distributions"]])


def non_root_rule(user: str, answering: list[ServingProcess] | None) -> RuleResult:
    """Judged on the processes that answer requests (``answering``, seen while the image served), not on USER:
    an image may start as root, as SageMaker starts it, if its request-handling processes drop root."""
    title = "answers requests as non-root"
    shown_user = f"USER {user}" if user else "USER root (not set)"
    fix = (
        "requests must be answered by processes without root: start as root if the model mount needs it, then "
        "drop to an unprivileged user (setgroups, setgid, setuid, no_new_privs) in each process before it "
        "accepts connections, as modelcrate's serve does; or set USER to an unprivileged user"
    )
    if not answering or all(p.loading for p in answering):
        found = f"{shown_user}; not checked: the image did not serve, so no process answering requests was seen"
        return RuleResult("non-root", title, FAIL, found, fix, {"user": user})
    evidence = {
        "user": user,
        "processes": [
            {
                "pid": p.pid,
                "uids": list(p.uids),
                "gids": list(p.gids),
                "no_new_privs": p.no_new_privs,
                "command": p.command,
            }
            for p in answering
        ],
    }
    rooted = [p for p in answering if p.answers_as_root]
    if rooted:
        found = "requests are answered as root: " + "; ".join(p.describe() for p in rooted)
        return RuleResult("non-root", title, FAIL, found, fix, evidence)
    found = f"{shown_user}; requests are answered by " + "; ".join(p.describe() for p in answering)
    return RuleResult("non-root", title, PASS, found, evidence=evidence)


def entry_points_rule(probe: Probe, algorithm: bool) -> RuleResult:
    title = "serve and train on PATH" if algorithm else "serve on PATH"
    needed = ("serve", "train") if algorithm else ("serve",)
    if probe.uid is None:
        return RuleResult("entry-points", title, FAIL, probe.problem, "make python the image's first python on PATH")
    found = "; ".join(f"{name} -> {probe.paths.get(name) or 'missing'}" for name in needed)
    missing = [name for name in needed if not probe.paths.get(name)]
    fix = (
        f"SageMaker runs `docker run IMAGE {' / '.join(missing)}`: install the modelcrate runtime in the image and "
        "put its bin directory on PATH (the generated Dockerfile sets PATH=/opt/venv/bin:$PATH)"
    )
    evidence = {name: probe.paths.get(name) for name in needed}
    return RuleResult.verdict("entry-points", title, not missing, found, fix, evidence)


def serve_rule(image: str, model_tar: Path | None = None) -> tuple[RuleResult, list[ServingProcess] | None]:
    """The verdict, and the processes that answered requests (for the non-root rule)."""
    title = "serves with --network none"
    fix = (
        "start-up must not need the network (Marketplace runs containers without it): ship the model and every "
        "file it needs in the image, download nothing at start; see its log with `modelcrate run IMAGE --isolated`"
    )
    try:
        report = test_image(image, model_tar)
    except DockerError as exc:
        found = f"the container stopped before /ping answered: {exc}"
        return RuleResult("serves-isolated", title, FAIL, found, fix), None
    # test_image's own check of the answering processes: the non-root rule reports them.
    checks = [check for check in report.checks if check.name != ANSWERS_AS_NON_ROOT]
    failed = [check for check in checks if not check.passed]
    evidence = {"checks": [asdict(check) for check in checks], "healthy_after_s": report.healthy_after_s}
    if not failed:
        replayed = sum(check.name.startswith("sample ") for check in checks)
        found = (
            f"healthy after {report.healthy_after_s:.1f} s; /invocations gave the recorded answers to all "
            f"{replayed} replayed requests"
        )
        return RuleResult("serves-isolated", title, PASS, found, evidence=evidence), report.serving_processes
    found = "; ".join(f"{check.name}: {check.detail.strip()[-500:] or 'failed'}" for check in failed[:5])
    return RuleResult("serves-isolated", title, FAIL, found, fix, evidence), report.serving_processes


def train_rule(image: str, scratch: Path) -> tuple[RuleResult, Path | None]:
    """A small training job on the bundled Abalone data (train and validation channels, default hyperparameters)
    with no network; returns the verdict and the trained model.tar.gz (in ``scratch``) for the serve rule."""
    title = "trains with --network none"
    fix = (
        "training must not need the network (Marketplace runs training jobs without it): ship every library and "
        "file in the image; see the whole log with `modelcrate sample-data --output data/` then "
        "`modelcrate train IMAGE --channel train=data/train --channel validation=data/validation --output out/`"
    )
    try:
        task = image_training_spec(image).get("task", "regression")
        channels = write_abalone_channels(task, scratch / "data")
        with training_job(channels) as job:
            result = job.run_in_image(image)
            model_tar = pack_directory(result.model_dir, scratch) if result.succeeded else None
    except (DockerError, ValueError) as exc:  # TrainingJobError, or a training spec that is not JSON
        return RuleResult("trains-isolated", title, FAIL, f"the training job could not run: {exc}", fix), None
    evidence = {
        "task": task,
        "channels": sorted(channels),
        "exit_code": result.exit_code,
        "model_files": result.model_files,
        "metrics": result.metrics,
    }
    if not result.succeeded:
        return RuleResult(
            "trains-isolated", title, FAIL, f"the training job failed: {result.reason}", fix, evidence
        ), None
    metrics = ", ".join(f"{name}={value:g}" for name, value in result.metrics.items()) or "no metrics scraped"
    found = (
        f"trained on Abalone ({task}; {', '.join(sorted(channels))} channels; default hyperparameters) in "
        f"{result.duration_s:.1f} s: {', '.join(result.model_files)}; {metrics}"
    )
    return RuleResult("trains-isolated", title, PASS, found, evidence=evidence), model_tar


def size_rule(size_bytes: int, max_size_gb: float) -> RuleResult:
    fix = (
        "a large image slows every endpoint and job start: use a slim base image, multi-stage builds and no "
        "build tools or caches in the final stage (or raise --max-size-gb if this size is needed)"
    )
    return RuleResult.verdict(
        "image-size",
        "image size",
        size_bytes <= max_size_gb * 1e9,
        f"{size_bytes / 1e9:.2f} GB (limit {max_size_gb:g} GB)",
        fix,
        {"bytes": size_bytes, "limit_gb": max_size_gb},
    )


# ---- the Python dependency audit ----


def audit_rule(probe: Probe, ignored: Iterable[str] = (), timeout: float = 600) -> RuleResult:
    title = "Python dependencies audited"
    if probe.uid is None:
        return RuleResult("dependency-audit", title, FAIL, f"could not audit: {probe.problem}", "")
    audited = [(name, version) for name, version in probe.distributions if name.lower() not in UNAUDITED_DISTRIBUTIONS]
    with tempfile.TemporaryDirectory(prefix="modelcrate-audit-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in audited))
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(requirements), "--no-deps"]
        command += ["--disable-pip", "--format", "json", "--progress-spinner", "off", "--aliases", "on"]
        command += ["--desc", "off", "--cache-dir", str(Path(scratch) / "cache")]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return _could_not_audit(f"pip-audit did not finish within {timeout:g} s")
    return audit_result(result.returncode, result.stdout, result.stderr, audited, ignored)


def _could_not_audit(reason: str) -> RuleResult:
    return RuleResult(
        "dependency-audit",
        "Python dependencies audited",
        FAIL,
        f"could not audit: {reason}",
        "run the check where PyPI's vulnerability data (https://pypi.org/pypi/NAME/VERSION/json) is reachable; "
        "an unaudited image is not ready",
    )


def audit_result(
    returncode: int, stdout: str, stderr: str, audited: list[tuple[str, str]], ignored: Iterable[str] = ()
) -> RuleResult:
    """pip-audit's JSON (exit 0: nothing found, 1: findings) turned into the rule's verdict."""
    title = "Python dependencies audited"
    if "No module named pip_audit" in stderr:
        return _could_not_audit("pip-audit is not installed here: pip install 'modelcrate[audit]'")
    try:
        dependencies = json.loads(stdout)["dependencies"]
    except (ValueError, KeyError):
        lines = stderr.strip().splitlines()
        return _could_not_audit(f"pip-audit failed (exit {returncode}): {lines[-1] if lines else 'no output'}")
    ignored = {vuln_id.upper() for vuln_id in ignored}
    findings, accepted, not_audited = [], [], []
    for dependency in dependencies:
        if dependency.get("skip_reason"):
            not_audited.append(f"{dependency['name']}: {dependency['skip_reason']}")
            continue
        for vuln in dependency.get("vulns", []):
            finding = {
                "package": dependency["name"],
                "version": dependency["version"],
                "id": vuln["id"],
                "aliases": vuln.get("aliases", []),
                "fix_versions": vuln.get("fix_versions", []),
            }
            names = {vuln["id"].upper(), *(alias.upper() for alias in finding["aliases"])}
            (accepted if names & ignored else findings).append(finding)
    evidence = {
        "audited": [f"{name}=={version}" for name, version in audited],
        "findings": findings,
        "accepted": accepted,
        "not_audited": not_audited,
    }
    if not_audited:
        if len(not_audited) == len(dependencies):
            reason = f"the vulnerability service had no data for any of the {len(dependencies)} packages"
        else:
            reason = f"the vulnerability service had no data for {len(not_audited)} of {len(dependencies)} packages"
        more = f" and {len(not_audited) - 1} more" if len(not_audited) > 1 else ""
        rule = _could_not_audit(f"{reason} ({not_audited[0]}{more})")
        rule.evidence = evidence
        return rule
    accepted_note = f"; {len(accepted)} accepted with --ignore-vuln" if accepted else ""
    if not findings:
        found = f"{len(dependencies)} packages audited with pip-audit: no known vulnerabilities{accepted_note}"
        return RuleResult("dependency-audit", title, PASS, found, evidence=evidence)
    listed = "; ".join(
        f"{f['package']} {f['version']} {f['id']} (fix: {', '.join(f['fix_versions']) or 'none yet'})" for f in findings
    )
    return RuleResult(
        "dependency-audit",
        title,
        FAIL,
        f"{len(findings)} known vulnerabilities in {len(dependencies)} packages: {listed}{accepted_note}",
        "pin the fixed versions in requirements.txt and rebuild; accept a finding that does not apply with "
        "--ignore-vuln ID (it stays in the report)",
        evidence,
    )


# ---- the whole check ----


def inspect_image(image: str) -> dict:
    result = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{json .}}", image], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise MarketplaceError(f"no image {image} in the Docker engine: build it first (modelcrate build) or pull it")
    return json.loads(result.stdout)


def check_marketplace(
    image: str,
    supported_os: Path | None = None,
    max_size_gb: float | None = None,
    ignored_vulns: Iterable[str] = (),
    on_step: Callable[[str], None] = lambda step: None,
) -> MarketplaceReport:
    systems = load_supported_os(supported_os)
    max_size_gb = DEFAULT_MAX_SIZE_GB if max_size_gb is None else max_size_gb
    if max_size_gb <= 0:
        raise MarketplaceError(f"--max-size-gb must be positive, not {max_size_gb:g}")
    require_engine()
    details = inspect_image(image)
    config = details.get("Config") or {}
    labels = config.get("Labels") or {}
    algorithm = labels.get(TRAINING_LABEL) == "true"
    report = MarketplaceReport(image)

    on_step("reading the image's filesystem (docker export)")
    scan = export_and_scan(image)
    os_release, where = os_release_of(scan)
    report.rules.append(base_os_rule(os_release, systems, where))
    report.rules.append(developer_guide_os_rule(os_release, load_supported_os(key=DEVELOPER_GUIDE_SYSTEMS)))

    on_step("looking inside the image (--network none)")
    probe = probe_image(image)
    non_root_at = len(report.rules)  # judged once the image has served; reported here
    report.rules.append(entry_points_rule(probe, algorithm))
    report.rules.append(size_rule(int(details.get("Size") or 0), max_size_gb))
    report.rules.append(credentials_rule(scan, config.get("Env") or []))

    answering = None
    if not algorithm:
        on_step("serving the recorded samples (--network none)")
        served, answering = serve_rule(image)
        report.rules.append(served)
        report.rules.append(
            RuleResult(
                "trains-isolated",
                "trains with --network none",
                NOT_APPLICABLE,
                f"a model package: the image has no {TRAINING_LABEL}=true label",
            )
        )
    else:
        with tempfile.TemporaryDirectory(prefix="modelcrate-marketplace-") as scratch:
            on_step("training on Abalone (--network none)")
            trained, model_tar = train_rule(image, Path(scratch))
            on_step("serving the trained model (--network none)")
            if model_tar:
                served, answering = serve_rule(image, model_tar)
            else:
                served = RuleResult(
                    "serves-isolated",
                    "serves with --network none",
                    FAIL,
                    "not checked: the training job failed, so there is no trained model to serve",
                    "make training pass first (see the training rule)",
                )
            report.rules.append(served)
            report.rules.append(trained)
    report.rules.insert(non_root_at, non_root_rule(config.get("User") or "", answering))

    on_step("auditing the Python dependencies (pip-audit)")
    report.rules.append(audit_rule(probe, ignored_vulns))
    return report
