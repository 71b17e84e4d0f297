"""The runtime wheel `modelcrate build` puts in every image: packed from the installed package, runtime only."""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import io
import zipfile

from modelcrate.containers.docker import place_runtime_wheel
from modelcrate.containers.runtime_wheel import build_runtime_wheel


def test_the_wheel_holds_the_runtime_and_its_console_scripts_only(tmp_path):
    wheel = place_runtime_wheel(tmp_path)
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [wheel.name]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"modelcrate-{wheel.name.split('-')[1]}.dist-info"
        packages = {name.split("/")[1] for name in names if name.startswith("modelcrate/") and name.count("/") > 1}
        assert packages == {"serving", "predictors", "training"}
        assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
        assert archive.read(f"{info}/entry_points.txt").decode().splitlines() == [
            "[console_scripts]",
            "serve = modelcrate.serving.__main__:main",
            "train = modelcrate.training.__main__:main",
        ]
        requires = [line for line in archive.read(f"{info}/METADATA").decode().splitlines() if "Requires-Dist" in line]
        assert [line.split()[1].split(">")[0] for line in requires] == ["numpy", "httptools", "uvloop"]
        # RECORD lists every other file with its sha256 (pip checks it on install).
        record = {row[0]: row[1:] for row in csv.reader(io.StringIO(archive.read(f"{info}/RECORD").decode()))}
        assert set(record) == set(names)
        for name in names:
            if name != f"{info}/RECORD":
                data = archive.read(name)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert record[name] == [f"sha256={digest}", str(len(data))], name
        sources = {name: archive.read(name).decode() for name in names if name.endswith(".py")}
    # The runtime imports nothing of modelcrate's that the wheel leaves out (the control plane stays out of images).
    shipped = {name.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for name in sources}
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            imported = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            imported += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for module in (m for m in imported if m.startswith("modelcrate.")):
                assert ".".join(module.split(".")[:2]) in shipped, f"{name} imports {module}, not in the wheel"


def test_the_same_runtime_gives_the_same_bytes(tmp_path):
    """So an unchanged runtime reuses the image's cached layers."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert build_runtime_wheel(first).read_bytes() == build_runtime_wheel(second).read_bytes()
