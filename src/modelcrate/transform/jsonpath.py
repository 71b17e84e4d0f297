"""The JSONPath subset SageMaker's DataProcessing filters accept, with its result shapes.

``$``, ``.name``, ``.*`` / ``[*]``, ``['a','b']``, ``[i,j]`` (negative indexes count from the end) and
``[s:e]`` slices, mixed as in ``$[0,5:]``. One index or one name selects that value; several, a slice or a
wildcard select a list (several names on an object select an object with those names). Segments after a
wildcard apply to each element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*|\*)")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_QUOTED = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)")\s*""")
_INDEX = re.compile(r"\s*(-?\d+)?\s*(:)?\s*(-?\d+)?\s*")


class JsonPathError(ValueError):
    """An expression outside the supported subset, or a record it cannot select from."""


@dataclass(frozen=True)
class _Names:
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Indexes:
    items: tuple[int | slice, ...]


class _Wildcard:
    pass


def _bracket(content: str, expression: str):
    if content.strip() == "*":
        return _Wildcard()
    if content.strip()[:1] in ("'", '"'):
        names = []
        for part in content.split(","):
            match = _QUOTED.fullmatch(part)
            if not match:
                raise JsonPathError(f"{expression}: cannot read the name list [{content}]")
            names.append(match.group(1) if match.group(1) is not None else match.group(2))
        return _Names(tuple(names))
    items: list[int | slice] = []
    for part in content.split(","):
        match = _INDEX.fullmatch(part)
        if not match or not any(match.groups()):
            raise JsonPathError(f"{expression}: [{content}] is not a list of indexes or slices")
        start, colon, end = match.groups()
        if colon:
            items.append(slice(int(start) if start else None, int(end) if end else None))
        elif end is None:
            items.append(int(start))
        else:
            raise JsonPathError(f"{expression}: [{content}] is not a list of indexes or slices")
    return _Indexes(tuple(items))


@lru_cache(maxsize=64)
def compile_path(expression: str) -> tuple:
    if not expression.startswith("$"):
        raise JsonPathError(f"{expression!r}: a JSONPath starts with '$'")
    segments, position = [], 1
    while position < len(expression):
        name = _NAME.match(expression, position)
        if name:
            segments.append(_Wildcard() if name.group(1) == "*" else _Names((name.group(1),)))
            position = name.end()
            continue
        bracket = _BRACKET.match(expression, position)
        if bracket:
            segments.append(_bracket(bracket.group(1), expression))
            position = bracket.end()
            continue
        raise JsonPathError(f"{expression!r}: cannot read from position {position + 1} ({expression[position:]!r})")
    return tuple(segments)


def _apply(value, segments: tuple, expression: str):
    for i, segment in enumerate(segments):
        if isinstance(segment, _Wildcard):
            items = list(value.values()) if isinstance(value, dict) else value
            if not isinstance(items, list):
                raise JsonPathError(f"{expression}: '*' needs an object or an array, found {type(value).__name__}")
            return [_apply(item, segments[i + 1 :], expression) for item in items]
        if isinstance(segment, _Names):
            if not isinstance(value, dict):
                raise JsonPathError(f"{expression}: selects names from an object, found {type(value).__name__}")
            missing = [n for n in segment.names if n not in value]
            if missing:
                raise JsonPathError(f"{expression}: the record has no field {', '.join(map(repr, missing))}")
            value = value[segment.names[0]] if len(segment.names) == 1 else {n: value[n] for n in segment.names}
            continue
        if not isinstance(value, list):
            raise JsonPathError(f"{expression}: selects indexes from an array, found {type(value).__name__}")
        selected = []
        for item in segment.items:
            if isinstance(item, slice):
                selected += value[item]
            else:
                if not -len(value) <= item < len(value):
                    raise JsonPathError(f"{expression}: index {item} is outside a record of {len(value)} values")
                selected.append(value[item])
        single = len(segment.items) == 1 and not isinstance(segment.items[0], slice)
        value = selected[0] if single else selected
    return value


def select(expression: str, value):
    """Apply ``expression`` to a parsed record."""
    if expression == "$":
        return value
    return _apply(value, compile_path(expression), expression)
