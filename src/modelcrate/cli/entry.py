"""The ``modelcrate`` console script. ``pip install modelcrate`` gives the whole command line; the frameworks and
the heavier parts are extras, imported only by the commands that use them. A command that reaches a missing one
stops here with one line naming the extra to install, never a traceback."""

from __future__ import annotations

import sys

# Top-level module -> the extra (pyproject.toml's optional-dependencies) that installs it.
EXTRA_OF_MODULE = {
    "sklearn": "sklearn",
    "joblib": "sklearn",
    "xgboost": "xgboost",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "pandas": "samples",
    "boto3": "transform",
    "botocore": "transform",
    "ray": "ray",
    "sqlalchemy": "registry",
    "alembic": "registry",
    "psycopg": "registry",
    "jsonschema": "cards",
    "weasyprint": "cards",
    "starlette": "ui",
    "uvicorn": "ui",
    "multipart": "ui",
    "python_multipart": "ui",
    "skl2onnx": "optimize",
    "onnxmltools": "optimize",
    "onnx": "optimize",
    "onnxruntime": "compiled",
    "pip_audit": "audit",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The line telling what to install for ``exc``, or None when no extra provides that module (a bug)."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"modelcrate: this needs {module}, which is not installed: pip install 'modelcrate[{extra}]'"


def main() -> None:
    from modelcrate.cli import app

    try:
        app()
    except ModuleNotFoundError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        sys.exit(line)
