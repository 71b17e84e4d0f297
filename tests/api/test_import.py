"""``import modelcrate`` stays light (the serving runtime in every image imports it); the public names load on
first use."""

from __future__ import annotations

import json
import subprocess
import sys

import modelcrate
from modelcrate import api

CONTROL_PLANE = ["sqlalchemy", "alembic", "botocore", "typer", "click", "rich", "jinja2", "modelcrate.api"]


def _modules_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_importing_the_package_or_the_serving_runtime_imports_no_control_plane_module():
    for code in ("import modelcrate", "import modelcrate.serving", "from modelcrate import __version__"):
        loaded = _modules_after(code)
        assert [module for module in CONTROL_PLANE if module in loaded] == [], code


def test_a_public_name_loads_its_module_only():
    loaded = _modules_after("from modelcrate import client, serve_locally, batch_transform")
    assert "modelcrate.api" in loaded
    assert [module for module in ("sqlalchemy", "botocore", "typer") if module in loaded] == []


def test_every_public_name_resolves_and_is_documented():
    assert sorted(modelcrate.__all__) == sorted([*modelcrate._EXPORTS, "__version__"])
    for name in modelcrate._EXPORTS:
        value = getattr(modelcrate, name)
        assert value.__doc__, name
        assert name in dir(modelcrate)
    for name in api.__all__:
        assert getattr(modelcrate, name) is getattr(api, name)


def test_every_public_method_of_the_api_is_documented():
    for cls in (api.SageMakerClient, api.LocalServer):
        for name, member in vars(cls).items():
            if not name.startswith("_"):
                assert (getattr(member, "fget", None) or member).__doc__, f"{cls.__name__}.{name}"


def test_the_function_batch_transform_is_not_shadowed_by_the_transform_package():
    import modelcrate.transform.job

    assert modelcrate.batch_transform is api.batch_transform
