"""Commands built from botocore's model of SageMaker operations, as the AWS CLI builds them.

Every member of an operation's input is a flag (``ModelPackageGroupName`` -> ``--model-package-group-name``):
integers typed, enumerations as choices, booleans as ``--x/--no-x``, structures, lists and maps as JSON or
shorthand (a list's elements as separate arguments), any value as ``file://PATH``. The whole request can come
from ``--cli-input-json`` or ``--cli-input-yaml`` (flags win), ``--generate-cli-skeleton`` prints its shape, and
the answer is printed as JSON, YAML or a table (``--output``), filtered by a JMESPath ``--query``.
"""

from __future__ import annotations

import enum
import functools
import html
import inspect
import json
import re
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

import typer
import yaml
from typer.core import TyperCommand, TyperGroup

from modelcrate.cli import error
from modelcrate.cli.shorthand import ShorthandError, example, parse, read_file

# A call of the local service with the request; the failures context turns its refusals into one line.
Call = Callable[[dict], dict]
Failures = Callable[[str], AbstractContextManager]

OUTPUTS = ("json", "yaml", "table")
SKELETONS = ("input", "yaml-input", "output")
Output = enum.Enum("Output", [(kind, kind) for kind in OUTPUTS], type=str)
NESTED = ("structure", "list", "map")
# click's UsageError, of whichever click typer runs on (recent typers carry their own copy).
USAGE_ERROR = typer.BadParameter.__base__


@functools.cache
def sagemaker_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def flag(member: str) -> str:
    from botocore import xform_name

    return "--" + xform_name(member, "-")


def _parameter_name(member: str) -> str:
    return flag(member)[2:].replace("-", "_")


def command_name(operation: str) -> str:
    """``CreateModelPackage`` -> ``create-model-package`` (without botocore: the group lists these at start)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", operation).lower()


def _first_sentence(documentation: str) -> str:
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", documentation))).strip()
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def _member_option(name: str, shape, required: bool):
    """The flag of one input member with its help: type, whether required, what it is, how it is written."""
    kind = shape.type_name
    words = [f"({kind})", "(required)" if required else "", _first_sentence(shape.documentation or "")]
    metavar = None
    if kind in NESTED:
        written = example(shape)
        if not written:
            words.append("JSON.")
        elif kind == "list":
            words.append(f"JSON, or its elements as separate arguments in shorthand: {written}")
        else:
            words.append(f"JSON, or shorthand: {written}")
        metavar = "JSON" if not written else "VALUE ..." if kind == "list" else "JSON|SHORTHAND"
    declaration = f"{flag(name)}/--no-{flag(name)[2:]}" if kind == "boolean" else flag(name)
    return typer.Option(declaration, help=" ".join(word for word in words if word), metavar=metavar)


def _member_parameter(name: str, shape, required: bool) -> inspect.Parameter:
    """The typer parameter of one input member, typed as the AWS CLI types it."""
    kind = shape.type_name
    held: type = str
    if kind == "boolean":
        held = bool
    elif kind == "list":
        held = list[str]  # OperationCommand.parse_args spreads --tags A B into --tags A --tags B
    elif kind in ("integer", "long"):
        held = int
    elif kind in ("float", "double"):
        held = float
    elif kind == "string" and shape.enum:
        held = enum.Enum(name, [(value, value) for value in shape.enum], type=str)
    option = _member_option(name, shape, required)
    return inspect.Parameter(
        _parameter_name(name), inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[held | None, option]
    )


def _common_parameters() -> list[inspect.Parameter]:
    skeletons = enum.Enum("Skeleton", [(kind, kind) for kind in SKELETONS], type=str)
    options = {
        "cli_input_json": (str | None, typer.Option(help="The whole request as JSON, or file://PATH; flags win.")),
        "cli_input_yaml": (str | None, typer.Option(help="The whole request as YAML, or file://PATH; flags win.")),
        "generate_cli_skeleton": (
            skeletons | None,
            typer.Option(
                help="Print a request skeleton (input: JSON; yaml-input: YAML) or a sample answer (output); "
                "calls nothing."
            ),
        ),
        "output": (Output, typer.Option(help="How the answer is printed.")),
        "query": (str | None, typer.Option(help="A JMESPath expression applied to the answer before printing.")),
    }
    defaults = {"output": Output.json}
    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name), annotation=Annotated[held, option]
        )
        for name, (held, option) in options.items()
    ]


class OperationCommand(TyperCommand):
    """Spreads the AWS CLI's list arguments for the parser, and says a usage error in one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Plain help: botocore's documentation holds brackets that Rich would read as markup.
        self.rich_markup_mode = None

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        lists = {opt for param in self.params if getattr(param, "multiple", False) for opt in param.opts}
        return super().parse_args(ctx, _skeleton_kind_given(spread_lists(args, lists)))

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERROR as exc:
            possibilities = getattr(exc, "possibilities", None)
            if possibilities is not None:  # an unknown option
                hint = f"; did you mean {' or '.join(sorted(possibilities))}?" if possibilities else ""
                _refuse(f"{_operation_of(self.name)} has no option {exc.option_name}{hint}")
            _refuse(f"{_operation_of(self.name)}: {exc.format_message()}")


def spread_lists(args: list[str], lists: set[str]) -> list[str]:
    """The AWS CLI's ``--tags A B``: every argument after a list flag, up to the next flag, is one element."""
    spread: list[str] = []
    current = None
    for arg in args:
        if arg.startswith("--"):
            name, has_value, value = arg.partition("=")
            current = name if name in lists else None
            spread.extend([name, value] if has_value and current else [arg])
        elif current:
            if spread[-1] != current:
                spread.append(current)
            spread.append(arg)
        else:
            spread.append(arg)
    return spread


def _skeleton_kind_given(args: list[str]) -> list[str]:
    """The AWS CLI's bare ``--generate-cli-skeleton`` means ``--generate-cli-skeleton input``."""
    given = list(args)
    for index, arg in enumerate(args):
        if arg == "--generate-cli-skeleton" and (index + 1 == len(args) or args[index + 1].startswith("-")):
            given.insert(index + 1, "input")
            break
    return given


def operation_command(operation: str, call: Call, failures: Failures, summary: str = ""):
    """``modelcrate <group> <operation>``: argv -> the AWS-shaped request -> the local call -> the answer."""
    model = sagemaker_model().operation_model(operation)
    input_shape = model.input_shape
    required = set(input_shape.required_members)
    members = {_parameter_name(name): name for name in input_shape.members}

    def run(**values) -> None:
        if values["generate_cli_skeleton"]:
            print(_skeleton(model, values["generate_cli_skeleton"].value))
            return
        expression = compiled_query(values["query"])
        request = _cli_input(values["cli_input_json"], values["cli_input_yaml"])
        for parameter, member in members.items():
            value = values[parameter]
            if value is None or value == []:
                continue
            request[member] = _flag_value(value, input_shape.members[member], flag(member))
        missing = [flag(name) for name in input_shape.required_members if name not in request]
        if missing:
            _refuse(f"the following arguments are required: {', '.join(missing)}")
        with failures(operation):
            answer = call(request)
        print_answer(answer, values["output"].value, expression, operation)

    parameters = [_member_parameter(name, shape, name in required) for name, shape in input_shape.members.items()]
    run.__signature__ = inspect.Signature(parameters + _common_parameters())
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in run.__signature__.parameters.values()}
    single = typer.Typer()
    single.command(
        command_name(operation),
        cls=OperationCommand,
        help=f"{summary or _first_sentence(model.documentation)}\n\nAs `aws sagemaker {command_name(operation)}`.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )(run)
    return typer.main.get_command(single)


def _operation_of(command: str) -> str:
    return "".join(part.capitalize() for part in command.split("-"))


def _skeleton(model, kind: str) -> str:
    from botocore.utils import ArgumentGenerator

    if kind == "output":
        return _json(ArgumentGenerator(use_member_names=True).generate_skeleton(model.output_shape))
    skeleton = ArgumentGenerator().generate_skeleton(model.input_shape)
    return _yaml(skeleton) if kind == "yaml-input" else _json(skeleton)


def _refuse(message: str):
    error(message)
    raise typer.Exit(2)


def _loaded(raw: str, flag_name: str) -> str:
    if not raw.startswith("file://"):
        return raw
    try:
        return read_file(raw)
    except ShorthandError as exc:
        _refuse(f"{flag_name}: {exc}")


def _cli_input(as_json: str | None, as_yaml: str | None) -> dict:
    if as_json and as_yaml:
        _refuse("give --cli-input-json or --cli-input-yaml, not both")
    if as_json:
        try:
            request = json.loads(_loaded(as_json, "--cli-input-json"))
        except ValueError as exc:
            _refuse(f"--cli-input-json: not valid JSON: {exc}")
    elif as_yaml:
        try:
            request = yaml.safe_load(_loaded(as_yaml, "--cli-input-yaml"))
        except yaml.YAMLError as exc:
            _refuse(f"--cli-input-yaml: not valid YAML: {' '.join(str(exc).split())}")
    else:
        return {}
    if not isinstance(request, dict):
        _refuse("the CLI input must be an object of the request's members")
    return request


def _flag_value(value, shape, flag_name: str):
    """A flag's value as the request holds it: JSON or shorthand for nested shapes, a file's text for file://."""
    if isinstance(value, enum.Enum):  # a choice: the request holds its text
        return value.value
    try:
        if shape.type_name == "list":
            elements = [_loaded(element, flag_name) for element in value]
            if len(elements) == 1 and elements[0].lstrip().startswith("["):
                return json.loads(elements[0])
            return [item for element in elements for item in _list_element(element, shape)]
        if isinstance(value, str):
            value = _loaded(value, flag_name)
            if shape.type_name in ("structure", "map"):
                return json.loads(value) if value.lstrip().startswith("{") else parse(value, shape)
        return value
    except ValueError as exc:  # ShorthandError, json.JSONDecodeError
        _refuse(f"{flag_name}: {' '.join(str(exc).split())}")


def _list_element(text: str, shape) -> list:
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    return parse(text, shape)


def compiled_query(query: str | None):
    if query is None:
        return None
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(query)
    except JMESPathError as exc:
        _refuse(f"Bad value for --query {query}: {' '.join(str(exc).split())}")


def _plain(value):
    """The answer as JSON types (timestamps as ISO text), as the AWS CLI prints it."""
    return json.loads(
        json.dumps(value, default=lambda item: item.isoformat() if hasattr(item, "isoformat") else str(item))
    )


def _json(value) -> str:
    return json.dumps(_plain(value), indent=4, ensure_ascii=False)


def _yaml(value) -> str:
    return yaml.safe_dump(_plain(value), sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def print_answer(answer, output: str, expression=None, title: str = "") -> None:
    """Print ``answer`` as ``--output`` says, after the compiled JMESPath ``expression`` when there is one."""
    answer = _plain(answer)
    if expression is not None:
        answer = expression.search(answer)
    if output == "yaml":
        print(_yaml(answer))
    elif output == "table":
        from rich.console import Console, Group

        Console(file=sys.stdout, soft_wrap=False, highlight=False).print(Group(*_tables(answer, title)))
    else:
        print(_json(answer))


def _tables(value, title: str) -> list:
    """The AWS CLI's table: a structure's scalars as name/value rows, a list of structures as one row each, and
    every nested structure or list as its own table after, titled with its name."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), box=box.ASCII, title_justify="left", show_header=False, min_width=len(title))
    nested: list = []
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        table.show_header = True
        columns = list(dict.fromkeys(key for item in value for key, field in item.items() if not _is_nested(field)))
        for column in columns:
            table.add_column(Text(column), overflow="fold")
        for item in value:
            table.add_row(*(_text(item.get(column)) for column in columns))
            for key, field in item.items():
                if _is_nested(field):
                    nested += _tables(field, key)
    elif isinstance(value, dict):
        table.add_column(overflow="fold")
        table.add_column(overflow="fold")
        for key, field in value.items():
            if _is_nested(field):
                nested += _tables(field, key)
            else:
                table.add_row(Text(key), _text(field))
    else:
        table.add_column(overflow="fold")
        for item in value if isinstance(value, list) else [value]:
            if _is_nested(item):
                nested += _tables(item, title)
            else:
                table.add_row(_text(item))
    return ([table] if table.row_count else []) + nested


def _is_nested(value) -> bool:
    return isinstance(value, dict | list)


def _text(value):
    from rich.text import Text

    return Text("" if value is None else str(value))


def operations_group(calls: dict[str, Call], failures: Failures, summaries: dict[str, str]) -> type[TyperGroup]:
    """A Typer group class that also holds a command per operation in ``calls``, built when first asked for:
    botocore's model loads only for these commands and for the group's help."""
    by_command = {command_name(operation): operation for operation in calls}

    class OperationsGroup(TyperGroup):
        def list_commands(self, ctx) -> list[str]:
            return [*by_command, *super().list_commands(ctx)]

        def get_command(self, ctx, name: str):
            operation = by_command.get(name)
            if operation is None:
                return super().get_command(ctx, name)
            return operation_command(operation, calls[operation], failures, summaries.get(operation, ""))

    return OperationsGroup
