"""The layering check (modelcrate.tools.layers) on synthetic trees, and on the real code base."""

from pathlib import Path

from modelcrate.tools import layers


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "modelcrate" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "modelcrate"


def test_function_local_import_from_registry_into_transform_is_a_violation(tmp_path):
    source = _write_tree(
        tmp_path,
        {
            "registry/__init__.py": "",
            "registry/service.py": "def run():\n    from modelcrate.transform.job import run_job\n",
            "transform/__init__.py": "",
            "transform/job.py": "",
        },
    )

    assert layers.check(source) == [
        "modelcrate/registry/service.py:2: registry must not import transform",
    ]


def test_runtime_package_importing_the_control_plane_is_a_violation(tmp_path):
    source = _write_tree(tmp_path, {"serving/__init__.py": "from modelcrate import cli\n", "cli/__init__.py": ""})

    assert layers.check(source) == ["modelcrate/serving/__init__.py:1: serving must not import cli"]


def test_cycle_between_packages_is_reported_with_its_path(tmp_path):
    source = _write_tree(
        tmp_path,
        {
            "cards/__init__.py": "from modelcrate.web import app\n",
            "web/__init__.py": "",
            "web/app.py": "from ..pipeline import runner\n",
            "pipeline/__init__.py": "",
            "pipeline/runner.py": "import modelcrate.cards\n",
        },
    )

    assert layers.check(source) == [
        "import cycle: cards -> web (modelcrate/cards/__init__.py:1), web -> pipeline (modelcrate/web/app.py:1),"
        " pipeline -> cards (modelcrate/pipeline/runner.py:1)"
    ]


def test_downward_imports_pass(tmp_path):
    source = _write_tree(
        tmp_path,
        {
            "cli/__init__.py": "from modelcrate.registry import service\n",
            "registry/__init__.py": "",
            "registry/service.py": "from modelcrate.errors import ModelcrateError\n",
            "errors.py": "",
        },
    )

    assert layers.check(source) == []


def test_modelcrate_imports_point_one_way():
    assert layers.check() == []
