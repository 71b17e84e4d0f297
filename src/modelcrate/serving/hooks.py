"""User hooks from ``code/inference.py``: model_fn, input_fn, predict_fn, output_fn, or transform_fn.

Each hook may take a trailing ``context`` argument; the runtime passes a :class:`RequestContext` then.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.serving.errors import ConfigError

HOOK_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}


@dataclass
class RequestContext:
    """What a hook may want to know about the request beyond its body."""

    content_type: str | None
    accept: str
    inference_keys: tuple[str, ...] | None
    custom_attributes: str | None = None
    inference_id: str | None = None


@dataclass(frozen=True)
class UserHooks:
    """The hooks a user defined, each wrapped to take the context last: ``hook(*args, context)``."""

    source: Path | None = None
    hooks: dict[str, Callable] = field(default_factory=dict)

    def get(self, name: str) -> Callable | None:
        return self.hooks.get(name)


def _with_context(name: str, fn: Callable, source: Path) -> Callable:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    arity = HOOK_ARITY[name]
    if len(params) == arity + 1:
        return fn
    if len(params) == arity or not params:
        return lambda *args: fn(*args[:-1])
    raise ConfigError(
        f"{source}: {name} takes {len(params)} arguments; it must take {arity} (or {arity + 1} with context)"
    )


def load_user_hooks(code_dir: Path, program: str) -> UserHooks:
    """Import ``code_dir/program`` if it exists; no file means the runtime's defaults throughout."""
    source = code_dir / program
    if not source.is_file():
        if program != "inference.py":
            raise ConfigError(f"SAGEMAKER_PROGRAM={program} but {source} does not exist")
        return UserHooks()
    sys.path.insert(0, str(code_dir))  # the user's module may import its neighbours
    spec = importlib.util.spec_from_file_location(source.stem, source)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"importing {source} failed: {type(exc).__name__}: {exc}") from exc
    found = {name: getattr(module, name) for name in HOOK_ARITY if callable(getattr(module, name, None))}
    if "transform_fn" in found:
        clash = sorted({"input_fn", "predict_fn", "output_fn"} & found.keys())
        if clash:
            raise ConfigError(
                f"{source} defines transform_fn together with {', '.join(clash)}; define transform_fn alone, "
                "or input_fn/predict_fn/output_fn without it"
            )
    return UserHooks(source, {name: _with_context(name, fn, source) for name, fn in found.items()})
