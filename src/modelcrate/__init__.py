"""modelcrate: ship a classic ML model as a SageMaker-compatible container, and govern it.

The Python API (see ``modelcrate.api``)::

    import modelcrate

    sm = modelcrate.client("sagemaker", database_url="sqlite:///registry.db", artifacts="artifacts/")
    sm.create_model_package_group(ModelPackageGroupName="abalone")     # as boto3.client("sagemaker")
    with modelcrate.serve_locally("model/") as server:
        print(server.invoke("0,0,1,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\\n"))

Every name is imported on first use: the serving runtime inside each image imports this package, and must not
pay for (or need) SQLAlchemy, botocore or the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (and types it). Not imported here, not even for type checkers: the
# runtime wheel ships this file without the control plane, and its test allows no import of what it leaves out.
_EXPORTS = {
    "client": "modelcrate.api",
    "SageMakerClient": "modelcrate.api",
    "serve_locally": "modelcrate.api",
    "LocalServer": "modelcrate.api",
    "batch_transform": "modelcrate.api",
    "sample_model": "modelcrate.api",
    "init_project": "modelcrate.api",
    "RegistryError": "modelcrate.registry.service",
    "InvokeError": "modelcrate.containers.invoke",
}

__all__ = [
    "InvokeError",
    "LocalServer",
    "RegistryError",
    "SageMakerClient",
    "__version__",
    "batch_transform",
    "client",
    "init_project",
    "sample_model",
    "serve_locally",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'modelcrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
