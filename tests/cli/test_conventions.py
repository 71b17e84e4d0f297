"""Conventions every command follows: --version, and -h as --help."""

from __future__ import annotations

from importlib.metadata import version

import typer
from typer.testing import CliRunner

from modelcrate.cli import app


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"modelcrate {version('modelcrate')}"


def test_dash_h_is_help_on_every_command():
    paths = command_paths(typer.main.get_command(app))
    assert len(paths) > 10  # the groups' commands are walked too
    for path in paths:
        result = CliRunner().invoke(app, [*path, "-h"])
        assert result.exit_code == 0, (path, result.output)
        assert result.stdout == CliRunner().invoke(app, [*path, "--help"]).stdout, path
