"""``modelcrate check-image --marketplace`` on real images: a generated project passes every rule (so does it with
USER root: its workers drop root), and images built to break one rule (workers that keep root, a file under
/root/.aws, a start-up that needs the network, an OS not on the list) fail that rule by name while the others
still pass.

Needs the Docker engine (fails loudly without it); images build on local/debian-python:bookworm.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelcrate.containers.docker import docker
from tests.e2e.conftest import init_and_build, modelcrate

IMAGE = IMAGE_PREFIX = "e2e-mkt"
RULES = [
    "base-os",
    "base-os-developer-guide",
    "non-root",
    "entry-points",
    "image-size",
    "no-credentials",
    "serves-isolated",
    "trains-isolated",
    "dependency-audit",
]
KEY = "AKIA" + "E2EMARKETPLACE00"  # built here so that no file of the repository holds a key-shaped string


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return init_and_build(tmp_path_factory.mktemp("marketplace"), IMAGE, "xgboost", "json")


def check(target: str, *flags: str, cwd: Path) -> tuple[int, dict[str, dict]]:
    run = modelcrate("check-image", target, "--marketplace", "--json", *flags, cwd=cwd)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    report = json.loads(run.stdout)
    rules = {rule["rule"]: rule for rule in report["rules"]}
    assert list(rules) == RULES
    assert report["passed"] is (run.returncode == 0) is all(r["status"] != "fail" for r in rules.values())
    return run.returncode, rules


def derived_image(tmp_path: Path, tag: str, dockerfile: str, files: dict[str, str] | None = None) -> str:
    """A small image FROM the generated one, changed to break one rule."""
    context = tmp_path / tag
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {IMAGE}:latest\n{dockerfile}")
    for name, text in (files or {}).items():
        (context / name).write_text(text)
    docker("build", "--quiet", "--tag", tag, str(context), timeout=300)
    return tag


def pypi_vulnerability_data_reachable() -> bool:
    """pip-audit asks https://pypi.org/pypi/NAME/VERSION/json; some networks let only PyPI's index through."""
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=20) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def assert_passes(rules: dict[str, dict], *names: str) -> None:
    for name in names:
        assert rules[name]["status"] == "pass", f"{name}: {rules[name]['found']}"


def test_a_generated_image_passes_every_rule(project):
    code, rules = check(IMAGE, cwd=project.parent)
    assert_passes(rules, "base-os", "non-root", "entry-points", "image-size", "no-credentials", "serves-isolated")
    assert rules["base-os"]["evidence"]["id"] == "debian" and rules["base-os"]["evidence"]["version_id"] == "12"
    assert rules["base-os-developer-guide"]["status"] == "note"  # bookworm is newer than the guide's list
    non_root = rules["non-root"]["evidence"]
    assert non_root["user"] == "" and len(non_root["processes"]) >= 1  # starts as root, as SageMaker starts it
    for worker in non_root["processes"]:  # the ones answering requests dropped to the `model` user for good
        assert worker["uids"] == [1000] * 4 and 0 not in worker["gids"] and worker["no_new_privs"], worker
    assert rules["entry-points"]["evidence"] == {"serve": "/opt/venv/bin/serve"}
    assert rules["no-credentials"]["evidence"]["scanned"]["files_searched"] > 0
    assert "recorded answers to all 15 replayed requests" in rules["serves-isolated"]["found"]
    assert rules["trains-isolated"]["status"] == "not applicable"  # a model package, not an algorithm
    audit = rules["dependency-audit"]
    assert "xgboost-cpu==2.1.3" in audit["evidence"]["audited"]
    assert not any(name.startswith("modelcrate==") for name in audit["evidence"]["audited"])
    if pypi_vulnerability_data_reachable():
        assert audit["status"] == "pass", audit["found"]  # a finding in a pinned dependency is a real problem
        assert code == 0
    else:  # never a silent pass: without the vulnerability data the image is not shown as audited
        assert audit["status"] == "fail" and audit["found"].startswith("could not audit: ")
        assert code == 1


def test_user_root_passes_the_non_root_rule_since_the_workers_drop_root(project, tmp_path):
    image = derived_image(tmp_path, f"{IMAGE}-root", "USER root\n")
    _, rules = check(image, cwd=tmp_path)
    assert_passes(rules, "non-root", "entry-points", "image-size", "no-credentials", "serves-isolated")
    assert rules["non-root"]["found"].startswith("USER root; requests are answered by pid ")
    assert all(worker["uids"] == [1000] * 4 for worker in rules["non-root"]["evidence"]["processes"])


# `serve` with the privilege drop made a no-op: the workers answer as root.
KEEPS_ROOT = """#!/opt/venv/bin/python
import modelcrate.serving.worker
from modelcrate.serving.__main__ import main

modelcrate.serving.worker.drop_privileges = lambda user: None
main()
"""


def test_workers_that_keep_root_fail_the_non_root_rule_only(project, tmp_path):
    image = derived_image(
        tmp_path,
        f"{IMAGE}-keeps-root",
        "COPY serve /opt/venv/bin/serve\nRUN chmod 755 /opt/venv/bin/serve\n",
        {"serve": KEEPS_ROOT},
    )
    run = modelcrate("check-image", image, "--marketplace", cwd=tmp_path)
    assert run.returncode == 1
    assert "FAIL answers requests as non-root: requests are answered as root: pid " in run.stdout
    assert "drop to an unprivileged user" in run.stdout and "not ready for AWS Marketplace" in run.stdout
    _, rules = check(image, cwd=tmp_path)
    assert rules["non-root"]["status"] == "fail"
    assert all(worker["uids"] == [0] * 4 for worker in rules["non-root"]["evidence"]["processes"])
    assert_passes(rules, "base-os", "entry-points", "image-size", "no-credentials", "serves-isolated")


def test_aws_credentials_in_the_image_fail_the_credentials_rule_naming_the_path(project, tmp_path):
    credentials = f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = x\n"
    image = derived_image(
        tmp_path, f"{IMAGE}-creds", "COPY credentials /root/.aws/credentials\n", {"credentials": credentials}
    )
    code, rules = check(image, cwd=tmp_path)
    assert code == 1
    found = rules["no-credentials"]
    assert found["status"] == "fail"
    assert "/root/.aws/credentials" in found["evidence"]["aws_paths"] and "/root/.aws/credentials" in found["found"]
    assert found["evidence"]["access_keys"] == [{"path": "/root/.aws/credentials", "key": "AKIA************CE00"}]
    assert KEY not in json.dumps(found)  # the report never repeats the key itself
    assert_passes(rules, "base-os", "non-root", "entry-points", "image-size", "serves-isolated")


def test_a_start_up_that_needs_the_network_fails_the_serve_rule(project, tmp_path):
    needs_network = (
        "import socket\n\n\ndef model_fn(model_dir):\n"
        "    socket.create_connection(('pypi.org', 443), timeout=10).close()  # a licence server, say\n"
    )
    image = derived_image(
        tmp_path, f"{IMAGE}-network", "COPY inference.py /opt/ml/code/inference.py\n", {"inference.py": needs_network}
    )
    code, rules = check(image, cwd=tmp_path)
    assert code == 1
    serve = rules["serves-isolated"]
    assert serve["status"] == "fail" and "before /ping answered" in serve["found"]
    assert "must not need the network" in serve["fix"]
    assert_passes(rules, "base-os", "entry-points", "image-size", "no-credentials")
    assert (
        rules["non-root"]["status"] == "fail" and "not checked: the image did not serve" in rules["non-root"]["found"]
    )


def test_a_base_os_missing_from_the_given_list_fails_the_base_os_rule(project, tmp_path):
    listing = tmp_path / "only-alpine.json"
    listing.write_text(json.dumps({"systems": [{"id": "alpine", "name": "Alpine Linux", "versions": ["3.22"]}]}))
    code, rules = check(IMAGE, "--supported-os", str(listing), cwd=project.parent)
    assert code == 1
    base_os = rules["base-os"]
    assert base_os["status"] == "fail" and "Debian GNU/Linux 12 (bookworm)" in base_os["found"]
    assert "Alpine Linux (alpine) 3.22" in base_os["fix"]
    assert_passes(rules, "non-root", "entry-points", "image-size", "no-credentials", "serves-isolated")


def test_an_algorithm_image_trains_and_serves_what_it_trained_without_network(project, tmp_path):
    name = f"{IMAGE}-algorithm"
    init_and_build(tmp_path, name, "sklearn", "joblib", "--with-training")
    _, rules = check(name, cwd=tmp_path)
    trained = rules["trains-isolated"]
    assert trained["status"] == "pass", trained["found"]
    assert trained["evidence"]["channels"] == ["train", "validation"]
    assert {"model.joblib", "modelcrate.json"} <= set(trained["evidence"]["model_files"])
    assert "validation:rmse" in trained["evidence"]["metrics"]
    assert rules["entry-points"]["evidence"] == {"serve": "/opt/venv/bin/serve", "train": "/opt/venv/bin/train"}
    assert_passes(rules, "base-os", "non-root", "image-size", "no-credentials", "serves-isolated")
