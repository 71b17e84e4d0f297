"""modelcrate as a user installs it: a fresh virtualenv (no system site-packages, no dev extras), the checkout
installed as a package (not editable), then init -> build -> test-image with real pip and real Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelcrate.containers.docker import docker
from tests.e2e.conftest import BASE_IMAGE, CA_BUNDLE

IMAGE_PREFIX = "e2e-fresh-"
CHECKOUT = Path(__file__).resolve().parents[2]


def user_env(venv: Path) -> dict[str, str]:
    """A shell with only the virtualenv activated: nothing of the test run's own environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELCRATE_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(venv)}


def fresh_install(root: Path, extras: str) -> Path:
    """A new virtualenv with ``pip install 'CHECKOUT[extras]'``; returns the virtualenv."""
    # pip builds in the source directory (build/, *.egg-info): a copy keeps the checkout as tests beside this use it.
    source = root / "modelcrate"
    shutil.copytree(CHECKOUT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [venv / "bin" / "pip", "install", "--quiet", f"{source}{extras}"],
        capture_output=True,
        text=True,
        env=user_env(venv),
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr
    return venv


def modelcrate(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**user_env(venv), "MODELCRATE_PIP_CA": CA_BUNDLE}
    return subprocess.run(
        [venv / "bin" / "modelcrate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    return fresh_install(tmp_path_factory.mktemp("plain"), "")


@pytest.fixture(scope="module")
def with_sklearn(tmp_path_factory) -> Path:
    return fresh_install(tmp_path_factory.mktemp("sklearn"), "[sklearn,samples]")


def test_a_plain_install_has_the_whole_command_line_and_names_missing_extras(plain, tmp_path):
    helped = modelcrate(plain, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("init", "build", "test-image", "run", "serve"):
        assert command in helped.stdout
    missing = modelcrate(plain, "sample-model", "--framework", "sklearn", "--output", "model", cwd=tmp_path)
    assert missing.returncode != 0
    assert missing.stderr.splitlines() == [
        "modelcrate: this needs joblib, which is not installed: pip install 'modelcrate[sklearn]'"
    ]


def test_init_build_and_test_image_from_a_site_packages_install(with_sklearn, tmp_path):
    python = with_sklearn / "bin" / "python"
    where = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util, modelcrate; print(modelcrate.__file__, importlib.util.find_spec('wheel'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Installed into site-packages, without the `wheel` package: the runtime wheel is packed from these files.
    assert where == [str(next((with_sklearn / "lib").glob("python3*/site-packages/modelcrate/__init__.py"))), "None"]
    name = f"{IMAGE_PREFIX}sklearn"
    created = modelcrate(
        with_sklearn, "init", name, "--framework", "sklearn", "--model-source", "sample", "--base-image", BASE_IMAGE,
        "--yes", cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    built = modelcrate(with_sklearn, "build", name, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    tested = modelcrate(with_sklearn, "test-image", name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The image holds the runtime: no command line, generator or registry.
    probe = (
        "import importlib.util as u; "
        "print(*(m for m in ('cli', 'scaffold', 'registry') if u.find_spec(f'modelcrate.{m}')))"
    )
    found = docker("run", "--rm", "--network", "none", "--entrypoint", "python", f"{name}:latest", "-c", probe)
    assert found.strip() == ""
