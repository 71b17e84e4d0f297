"""The AWS CLI's shorthand syntax, read as its user guide documents it, then typed by the botocore shape.

    Key=a,Value=b                  a structure (or a map: k1=v1,k2=v2)
    Values=a,b,c                   a member holding a list: the values after it up to the next ``key=``
    Names=[a,b],Limits={Max=3}     an explicit list and a nested structure
    Name='a,b',Note="x=y"          quoted values keep commas, brackets and equals signs
    Body@=file://body.txt          the value read from a file

Values arrive as text; :func:`typed` turns them into the integers, booleans and lists the shape holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.model import Shape

# Where an unquoted value ends: a separator, or the bracket that closes its list or structure.
VALUE_END = ",]}"
KEY = re.compile(r"\s*([^\s=,@\[\]{}'\"]+)\s*(@?=)")


class ShorthandError(ValueError):
    """Shorthand that does not parse, or does not fit the shape it is for."""


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def fail(self, expected: str):
        shown = self.text[self.at : self.at + 20] or "the end"
        raise ShorthandError(f"expected {expected} at character {self.at + 1} ({shown!r}) of {self.text!r}")

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek().isspace():
            self.at += 1

    def expect(self, character: str) -> None:
        self.skip_spaces()
        if self.peek() != character:
            self.fail(repr(character))
        self.at += 1

    def done(self) -> bool:
        self.skip_spaces()
        return self.at >= len(self.text)

    def pairs(self, closing: str = "") -> dict:
        """``key=value`` pairs separated by commas, up to ``closing`` (or the end)."""
        result: dict = {}
        while True:
            matched = KEY.match(self.text, self.at)
            if matched is None:
                self.fail("key=value")
            key, operator = matched.groups()
            self.at = matched.end()
            result[key] = self.file_value() if operator == "@=" else self.value(closing, in_pairs=True)
            self.skip_spaces()
            if self.peek() != ",":
                return result
            self.at += 1

    def value(self, closing: str, in_pairs: bool):
        """One value; after a key, further comma-separated values that are not keys make it a list."""
        first = self.single(closing)
        if not in_pairs or isinstance(first, list | dict):
            return first
        values = [first]
        while self.peek() == "," and not KEY.match(self.text, self.at + 1):
            self.at += 1
            values.append(self.single(closing))
        return values if len(values) > 1 else first

    def single(self, closing: str):
        self.skip_spaces()
        character = self.peek()
        if character == "[":
            self.at += 1
            return self.items()
        if character == "{":
            self.at += 1
            if self.peek() == "}":
                self.at += 1
                return {}
            pairs = self.pairs("}")
            self.expect("}")
            return pairs
        if character in ("'", '"'):
            return self.quoted(character)
        start = self.at
        while self.at < len(self.text) and self.text[self.at] not in (VALUE_END if closing else ","):
            self.at += 1
        return self.text[start : self.at].strip()

    def items(self) -> list:
        """An explicit list, after its ``[``."""
        self.skip_spaces()
        if self.peek() == "]":
            self.at += 1
            return []
        values = [self.single("]")]
        self.skip_spaces()
        while self.peek() == ",":
            self.at += 1
            values.append(self.single("]"))
            self.skip_spaces()
        self.expect("]")
        return values

    def quoted(self, quote: str) -> str:
        self.at += 1
        text = []
        while self.peek() != quote:
            if not self.peek():
                self.fail(f"a closing {quote}")
            if self.peek() == "\\" and self.text[self.at + 1 : self.at + 2] in (quote, "\\"):
                self.at += 1
            text.append(self.peek())
            self.at += 1
        self.at += 1
        return "".join(text)

    def file_value(self) -> str:
        location = self.single(",")
        if not isinstance(location, str) or not location.startswith("file://"):
            self.fail("file://PATH after @=")
        return read_file(location)


def read_file(location: str) -> str:
    try:
        return Path(location.removeprefix("file://")).expanduser().read_text()
    except OSError as exc:
        raise ShorthandError(f"cannot read {location}: {exc.strerror}") from None


def parse(text: str, shape: Shape):
    """``text`` as the value of a structure or map parameter of ``shape``, or as one element of a list one."""
    if shape.type_name == "list" and shape.member.type_name not in ("structure", "map"):
        return [typed(text, shape.member)]  # one argument, one element, commas and all (as the AWS CLI)
    reader = _Reader(text)
    value = reader.pairs()
    if not reader.done():
        reader.fail("',' or the end")
    return typed(value, shape)


def typed(value, shape: Shape, path: str = ""):
    """The shorthand ``value`` (text, lists and dicts of text) as the types ``shape`` holds."""
    where = path or shape.name
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ShorthandError(f"{where} is a structure: write Member=value,...")
        unknown = sorted(set(value) - set(shape.members))
        if unknown:
            raise ShorthandError(f"{where} has no member {unknown[0]}; its members: {', '.join(shape.members)}")
        return {key: typed(item, shape.members[key], _join(path, key)) for key, item in value.items()}
    if kind == "map":
        if not isinstance(value, dict):
            raise ShorthandError(f"{where} is a map: write key=value,...")
        return {key: typed(item, shape.value, _join(path, key)) for key, item in value.items()}
    if kind == "list":
        items = value if isinstance(value, list) else [value]
        return [typed(item, shape.member, f"{where}[{index}]") for index, item in enumerate(items)]
    if not isinstance(value, str):
        raise ShorthandError(f"{where} is a {kind}, not a list or structure")
    if kind in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            raise ShorthandError(f"{where}: {value!r} is not a whole number") from None
    if kind in ("float", "double"):
        try:
            return float(value)
        except ValueError:
            raise ShorthandError(f"{where}: {value!r} is not a number") from None
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise ShorthandError(f"{where}: {value!r} is not true or false")
        return value.lower() == "true"
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def example(shape: Shape) -> str | None:
    """How a flat structure, map or list of scalars is written in shorthand; None for nested shapes (JSON)."""
    if shape.type_name == "structure":
        members = shape.members.items()
        if any(member.type_name in ("structure", "map", "list") for _, member in members):
            return None
        return ",".join(f"{name}={member.type_name}" for name, member in members)
    if shape.type_name == "map":
        if shape.value.type_name in ("structure", "map", "list"):
            return None
        return f"KeyName1={shape.value.type_name},KeyName2={shape.value.type_name}"
    if shape.type_name == "list":
        member = example(shape.member) if shape.member.type_name == "structure" else None
        if member:
            return f"{member} {member}"
        if shape.member.type_name in ("structure", "map", "list"):
            return None
        return f"{shape.member.type_name} {shape.member.type_name}"
    return None
