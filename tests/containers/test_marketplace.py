"""The Marketplace check's pure parts: os-release parsing and the OS list, the filesystem scan of a tar stream,
the credential, user, size and audit verdicts, and the JSON report. Real images: tests/e2e/test_marketplace.py."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from typer.testing import CliRunner

from modelcrate.cli import app
from modelcrate.containers import image_test
from modelcrate.containers.image_test import answering_processes, non_root_check
from modelcrate.containers.marketplace import (
    DEVELOPER_GUIDE_SYSTEMS,
    FAIL,
    MAX_SCANNED_FILE_BYTES,
    NOT_APPLICABLE,
    NOTE,
    PASS,
    MarketplaceError,
    MarketplaceReport,
    Probe,
    RuleResult,
    audit_result,
    base_os_rule,
    credentials_rule,
    developer_guide_os_rule,
    entry_points_rule,
    load_supported_os,
    non_root_rule,
    os_release_of,
    parse_os_release,
    scan_filesystem,
    size_rule,
)

BOOKWORM = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
# a comment, then a blank line

VERSION_ID="12"
VERSION='12 (bookworm)'
ID=debian
BROKEN LINE WITHOUT EQUALS
HOME_URL="https://www.debian.org/"
"""
KEY = "AKIA" + "Q3EXAMPLEKEY7890"  # built here so that this file itself holds no key-shaped string


def test_os_release_is_parsed_with_shell_quoting():
    values = parse_os_release(BOOKWORM)
    assert values["ID"] == "debian"
    assert values["VERSION_ID"] == "12"
    assert values["VERSION"] == "12 (bookworm)"
    assert values["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert "BROKEN LINE WITHOUT EQUALS" not in values and len(values) == 6


def test_shipped_os_list_accepts_bookworm_and_refuses_end_of_life_releases():
    systems = load_supported_os()
    assert base_os_rule(parse_os_release(BOOKWORM), systems, "usr/lib/os-release").status == PASS
    buster = base_os_rule({"ID": "debian", "VERSION_ID": "10"}, systems, "etc/os-release")
    assert buster.status == FAIL and "not on the list" in buster.found and "--supported-os" in buster.fix
    fedora = base_os_rule({"ID": "fedora", "VERSION_ID": "41"}, systems, "etc/os-release")
    assert fedora.status == FAIL and "that OS is not on the list" in fedora.found


def test_a_base_off_the_developer_guides_older_list_is_said_on_its_own_line_with_why_and_how():
    guide = load_supported_os(key=DEVELOPER_GUIDE_SYSTEMS)
    note = developer_guide_os_rule(parse_os_release(BOOKWORM), guide)
    assert note.status == NOTE and note.rule == "base-os-developer-guide"
    assert "Debian GNU/Linux 12 (bookworm) is not on the SageMaker developer guide's list" in note.found
    assert "Debian (debian) 6.0, 7, 8, 9, 10" in note.found and "Amazon Linux (amzn) any release" in note.found
    assert "Python 3.11" in note.fix and "glibc 2.27" in note.fix  # why the pinned stack cannot run there
    assert "--base-image" in note.fix and "Amazon Linux 2023" in note.fix  # how to choose another base
    report = MarketplaceReport("img", [base_os_rule(parse_os_release(BOOKWORM), load_supported_os(), "etc"), note])
    assert report.passed  # a note, not a failure: the scan's own list decides


@pytest.mark.parametrize(
    ("os_release", "status"),
    [
        ({"ID": "debian", "VERSION_ID": "10"}, PASS),
        ({"ID": "ubuntu", "VERSION_ID": "18.10"}, PASS),
        ({"ID": "ubuntu", "VERSION_ID": "20.04"}, NOTE),
        ({"ID": "centos", "VERSION_ID": "7"}, PASS),
        ({"ID": "alpine", "VERSION_ID": "3.5.3"}, PASS),
        ({"ID": "amzn", "VERSION_ID": "2023"}, PASS),  # "Amazon Linux": every release
        ({"ID": "amzn", "VERSION_ID": "2"}, PASS),
        (None, NOT_APPLICABLE),
    ],
)
def test_the_developer_guides_list_as_shipped(os_release, status):
    assert developer_guide_os_rule(os_release, load_supported_os(key=DEVELOPER_GUIDE_SYSTEMS)).status == status


def test_a_system_listed_without_versions_accepts_every_release(tmp_path):
    listing = tmp_path / "os.json"
    listing.write_text(json.dumps({"systems": [{"id": "amzn", "name": "Amazon Linux"}]}))
    systems = load_supported_os(listing)
    assert base_os_rule({"ID": "amzn", "VERSION_ID": "2023"}, systems, "etc/os-release").status == PASS
    assert base_os_rule({"ID": "amzn"}, systems, "etc/os-release").status == PASS
    refused = base_os_rule({"ID": "debian", "VERSION_ID": "12"}, systems, "etc/os-release")
    assert refused.status == FAIL and "Amazon Linux (amzn) any release" in refused.fix


def test_versions_match_whole_components_only(tmp_path):
    listing = tmp_path / "os.json"
    systems = [{"id": "alpine", "versions": ["3.2"]}, {"id": "rhel", "versions": ["9"]}]
    listing.write_text(json.dumps({"systems": systems}))
    systems = load_supported_os(listing)
    assert base_os_rule({"ID": "rhel", "VERSION_ID": "9.4"}, systems, "etc/os-release").status == PASS
    assert base_os_rule({"ID": "alpine", "VERSION_ID": "3.2.1"}, systems, "etc/os-release").status == PASS
    assert base_os_rule({"ID": "alpine", "VERSION_ID": "3.22.1"}, systems, "etc/os-release").status == FAIL


def test_an_image_without_os_release_fails_the_base_os_rule():
    rule = base_os_rule(None, load_supported_os(), "")
    assert rule.status == FAIL and "scratch" in rule.found and "Debian (debian) 12" in rule.fix


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"no": "systems"}),
        json.dumps({"systems": [{"id": "debian", "versions": [12]}]}),
        json.dumps({"systems": [{"id": "debian", "versions": "12"}]}),
    ],
)
def test_a_bad_os_list_is_a_usage_error_naming_the_file(tmp_path, content):
    listing = tmp_path / "os.json"
    listing.write_text(content)
    with pytest.raises(MarketplaceError, match=str(listing)):
        load_supported_os(listing)


def _tar_stream(files: dict[str, bytes], links: dict[str, str] | None = None, dirs: tuple[str, ...] = ()) -> io.BytesIO:
    """A tar as ``docker export`` writes it (relative names), readable only as a stream."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name in dirs:
            archive.addfile(_dir(name))
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    raw.seek(0)
    return raw


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_filesystem_scan_finds_aws_files_and_keys_where_people_put_them():
    stream = _tar_stream(
        {
            "usr/lib/os-release": BOOKWORM.encode(),
            "root/.aws/credentials": f"[default]\naws_access_key_id = {KEY}\n".encode(),
            "home/model/app/settings.py": f"KEY = '{KEY}'\n".encode(),
            "opt/venv/lib/python3.11/site-packages/docs.py": f"example = '{KEY}'\n".encode(),  # not a scanned root
            "opt/ml/model/weights.bin": b"\0" * (MAX_SCANNED_FILE_BYTES + 1),
        },
        links={"etc/os-release": "../usr/lib/os-release"},
        dirs=("home/model/.aws",),
    )
    scan = scan_filesystem(stream)
    assert scan.entries == 7
    assert scan.aws_paths == ["/home/model/.aws", "/root/.aws/credentials"]
    assert [path for path, _ in scan.access_keys] == ["/root/.aws/credentials", "/home/model/app/settings.py"]
    assert all(masked.startswith("AKIA") and KEY not in masked for _, masked in scan.access_keys)
    assert scan.too_big_to_scan == 1 and scan.files_scanned == 2
    os_release, where = os_release_of(scan)  # etc/os-release is a symlink: its target is what was read
    assert where == "usr/lib/os-release" and os_release["ID"] == "debian"


def test_a_regular_etc_os_release_is_read_once_for_both_the_os_and_the_key_search():
    alpine = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.22.1\n'
    scan = scan_filesystem(_tar_stream({"etc/os-release": alpine, "etc/motd": KEY.encode()}))
    os_release, where = os_release_of(scan)
    assert where == "etc/os-release" and os_release["VERSION_ID"] == "3.22.1"
    assert scan.files_scanned == 2 and [path for path, _ in scan.access_keys] == ["/etc/motd"]


def test_credentials_rule_names_paths_keys_and_secret_environment_variables():
    scan = scan_filesystem(_tar_stream({"root/.aws/config": b"[default]\nregion = eu-west-1\n"}))
    env = ["PATH=/opt/venv/bin:/usr/bin", "API_TOKEN=abc", "DB_PASSWORD=", f"SETTING={KEY}"]
    rule = credentials_rule(scan, env)
    assert rule.status == FAIL
    assert "/root/.aws/config" in rule.found and "API_TOKEN" in rule.found and "SETTING" in rule.found
    assert rule.evidence["secret_env"] == ["API_TOKEN", "SETTING"]  # an empty value holds no secret
    assert "IAM role" in rule.fix
    clean = credentials_rule(scan_filesystem(_tar_stream({"etc/hostname": b"x\n"})), ["PATH=/usr/bin"])
    assert clean.status == PASS and "1 files (0.0 MB)" in clean.found and "/root" in clean.found


def process(pid: int, ppid: int, uid: int, gid: int, holds_socket: bool | None, saved_uid: int | None = None):
    """A process as the probe inside the container reports it (holds_socket None: its open files are hidden)."""
    uids = [uid, uid, uid if saved_uid is None else saved_uid, uid]
    return {
        "pid": pid,
        "ppid": ppid,
        "holds_socket": holds_socket,
        "uids": uids,
        "gids": [gid] * 4,
        "no_new_privs": uid != 0,
        "command": "serve",
    }


def test_the_processes_that_answer_are_the_socket_holders_without_a_holding_child():
    dropped = [process(1, 0, 0, 0, True), process(7, 1, 1000, 999, None), process(8, 1, 1000, 999, None)]
    assert [p.pid for p in answering_processes(dropped)] == [7, 8]  # workers that dropped root hide their files
    kept_root = [process(1, 0, 0, 0, True), process(7, 1, 0, 0, True)]
    assert [p.pid for p in answering_processes(kept_root)] == [7]
    assert [p.pid for p in answering_processes([process(1, 0, 0, 0, True)])] == [1]  # a single process answers
    unrelated = [process(1, 0, 0, 0, True), process(30, 0, 1000, 1000, None)]  # hidden, but not forked by a holder
    assert [p.pid for p in answering_processes(unrelated)] == [1]


def test_non_root_rule_judges_the_processes_that_answer_requests():
    workers = answering_processes([process(1, 0, 0, 0, True), process(7, 1, 1000, 999, None)])
    fine = non_root_rule("", workers)
    assert fine.status == PASS
    assert fine.found == "USER root (not set); requests are answered by pid 7 uid 1000 gid 999, no_new_privs (serve)"
    assert fine.evidence["processes"] == [
        {"pid": 7, "uids": [1000] * 4, "gids": [999] * 4, "no_new_privs": True, "command": "serve"}
    ]
    kept_root = non_root_rule("root", answering_processes([process(1, 0, 0, 0, True), process(7, 1, 0, 0, True)]))
    assert kept_root.status == FAIL and kept_root.found.startswith("requests are answered as root: pid 7 uids (0")
    assert "drop" in kept_root.fix and "USER" in kept_root.fix
    regainable = non_root_rule("model", answering_processes([process(7, 0, 1000, 1000, True, saved_uid=0)]))
    assert regainable.status == FAIL  # a saved uid 0 can be taken back
    unseen = non_root_rule("model", None)
    assert unseen.status == FAIL and "did not serve" in unseen.found


def test_a_worker_still_loading_as_root_is_shown_but_has_answered_nothing():
    workers = answering_processes(
        [process(1, 0, 0, 0, True), process(7, 1, 1000, 999, None), process(8, 1, 0, 0, True)]
    )
    workers[1].loading = True  # never logged ready: modelcrate's workers drop root before they accept
    rule = non_root_rule("", workers)
    assert rule.status == PASS
    assert "pid 8 uids (0, 0, 0, 0) gids (0, 0, 0, 0), still loading: has not accepted" in rule.found
    assert non_root_check(workers).passed
    assert non_root_rule("", workers[1:]).status == FAIL and not non_root_check(workers[1:]).passed


def test_a_worker_that_drops_root_between_the_two_looks_is_judged_by_its_final_ids(monkeypatch):
    """The race CI hit: the process listing caught worker 7 still root, it then dropped and logged ready, and the
    log read after the listing made the stale root ids final. Worker 7 drops right after the first look here."""
    looks = []

    def listing(*args, **kwargs) -> str:
        looks.append("listing")
        dropped = len(looks) > 1
        worker = process(7, 1, 1000, 999, None) if dropped else process(7, 1, 0, 0, True)
        return json.dumps([process(1, 0, 0, 0, True), worker])

    def logged_ready(container: str) -> set[int]:
        looks.append("log")
        return {7} if len(looks) > 1 else set()

    monkeypatch.setattr(image_test, "docker", listing)
    monkeypatch.setattr(image_test, "ready_workers", logged_ready)
    (worker,) = image_test.serving_processes("container", 8080)
    assert worker.pid == 7 and not worker.root, worker.describe()


def test_entry_points_rule_needs_train_only_for_algorithms():
    probe = Probe(1000, {"serve": "/opt/venv/bin/serve", "train": None}, [])
    assert entry_points_rule(probe, algorithm=False).status == PASS
    algorithm = entry_points_rule(probe, algorithm=True)
    assert algorithm.status == FAIL and "train -> missing" in algorithm.found and "IMAGE train" in algorithm.fix


def test_size_rule_compares_with_the_limit():
    assert size_rule(370_000_000, 10).status == PASS
    big = size_rule(12_500_000_000, 10)
    assert big.status == FAIL and big.found == "12.50 GB (limit 10 GB)" and "--max-size-gb" in big.fix


AUDITED = [("numpy", "2.4.6"), ("urllib3", "1.26.0")]


def _pip_audit_json(*dependencies: dict) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def test_audit_findings_are_reported_and_accepted_ones_stay_visible():
    output = _pip_audit_json(
        {"name": "numpy", "version": "2.4.6", "vulns": []},
        {
            "name": "urllib3",
            "version": "1.26.0",
            "vulns": [
                {"id": "PYSEC-2021-59", "fix_versions": ["1.26.5"], "aliases": ["CVE-2021-33503"]},
                {"id": "GHSA-v845-jxx5-vc9f", "fix_versions": ["1.26.17", "2.0.6"], "aliases": []},
            ],
        },
    )
    rule = audit_result(1, output, "", AUDITED, ignored=["cve-2021-33503"])
    assert rule.status == FAIL
    assert "urllib3 1.26.0 GHSA-v845-jxx5-vc9f (fix: 1.26.17, 2.0.6)" in rule.found and "1 accepted" in rule.found
    assert [f["id"] for f in rule.evidence["findings"]] == ["GHSA-v845-jxx5-vc9f"]
    assert rule.evidence["accepted"][0]["aliases"] == ["CVE-2021-33503"]
    everything_accepted = audit_result(1, output, "", AUDITED, ignored=["PYSEC-2021-59", "GHSA-v845-jxx5-vc9f"])
    assert everything_accepted.status == PASS and "2 accepted with --ignore-vuln" in everything_accepted.found


def test_an_audit_without_data_fails_and_says_why():
    skipped = _pip_audit_json(
        {"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.4.6)"},
        {"name": "urllib3", "version": "1.26.0", "vulns": []},
    )
    partly = audit_result(0, skipped, "", AUDITED)
    assert partly.status == FAIL and partly.found.startswith("could not audit: ") and "1 of 2 packages" in partly.found
    broken = audit_result(1, "", "Traceback ...\nConnectionError: Failed to resolve 'pypi.org'\n", AUDITED)
    assert broken.status == FAIL and broken.found == (
        "could not audit: pip-audit failed (exit 1): ConnectionError: Failed to resolve 'pypi.org'"
    )
    missing = audit_result(1, "", "/usr/bin/python: No module named pip_audit\n", AUDITED)
    assert "pip install 'modelcrate[audit]'" in missing.found


def test_report_json_shape_and_verdict():
    report = MarketplaceReport("demo:latest")
    assert not report.passed  # no rules checked is no verdict
    report.rules += [
        RuleResult("base-os", "base OS can be scanned", PASS, "Debian 12", evidence={"id": "debian"}),
        RuleResult("trains-isolated", "trains with --network none", NOT_APPLICABLE, "a model package"),
    ]
    assert report.passed
    report.rules.append(RuleResult("non-root", "runs as non-root", FAIL, "USER root", "add USER model"))
    shape = json.loads(json.dumps(report.to_json()))
    assert shape["image"] == "demo:latest" and shape["passed"] is False
    assert [rule["rule"] for rule in shape["rules"]] == ["base-os", "trains-isolated", "non-root"]
    assert set(shape["rules"][2]) == {"rule", "title", "status", "found", "fix", "evidence"}


def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    without_rules = runner.invoke(app, ["check-image", "demo:latest"])
    assert without_rules.exit_code == 2 and "--marketplace" in without_rules.output
    listing = tmp_path / "os.json"
    listing.write_text("[]")
    bad_list = runner.invoke(app, ["check-image", "demo:latest", "--marketplace", "--supported-os", str(listing)])
    assert bad_list.exit_code == 2 and "cannot read the supported OS list" in bad_list.output
    bad_size = runner.invoke(app, ["check-image", "demo:latest", "--marketplace", "--max-size-gb", "0"])
    assert bad_size.exit_code == 2 and "--max-size-gb must be positive" in bad_size.output
