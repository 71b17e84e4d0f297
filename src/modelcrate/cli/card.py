"""``modelcrate card``: model cards that document a model package version, with SageMaker's shapes.

A card's Content is a JSON document of sections (model_overview, intended_uses, business_details,
training_details, evaluation_details, additional_information, model_package_details) checked against the
model card schema. Every content change makes a new immutable version; a status change does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelcrate.cli import app, error, say
from modelcrate.cli.aws import operations_group
from modelcrate.cli.registry import client_call, registry_failures, sagemaker_client


def _cards():
    with registry_failures():
        return sagemaker_client().cards


CARD_OPERATIONS = (
    "CreateModelCard",
    "UpdateModelCard",
    "DescribeModelCard",
    "ListModelCards",
    "ListModelCardVersions",
    "DeleteModelCard",
)
CARD_CALLS = {operation: client_call(sagemaker_client, operation) for operation in CARD_OPERATIONS}
SUMMARIES = {
    "CreateModelCard": "Create a card (version 1) from its Content (a JSON document, or file://PATH).",
    "UpdateModelCard": "Change a card's Content (a new version) or its status (no new version); one at a time.",
}

card_app = typer.Typer(
    cls=operations_group(CARD_CALLS, registry_failures, SUMMARIES),
    help="Model cards: what a model is for, how it was trained and evaluated, its risk rating, linked to one "
    "model package version. Versioned (each content change is a new version), diffable, exportable to PDF, "
    "HTML and Markdown. Stored with the registry (MODELCRATE_HOME or MODELCRATE_DATABASE_URL).",
    no_args_is_help=True,
)
app.add_typer(card_app, name="card")

# The AWS CLI's --model-card-status, and --status for short.
STATUS_FLAGS = ("--model-card-status", "--status")
STATUS_HELP = "Draft, PendingReview, Approved or Archived (an Archived card accepts no more changes)."
CONTENT_HELP = "The card's Content: a JSON document, or a file holding one (PATH or file://PATH)."


def _call(operation: str, action):
    """Run ``action()``; a refused request is printed as the AWS CLI prints errors, with exit 2 (invalid
    request) or 1 (anything else)."""
    with registry_failures(operation):
        return action()


def _print(answer) -> None:
    print(json.dumps(answer, indent=4, default=str))


def _content(raw: str) -> str:
    """The JSON text of --content: given inline, or read from a file."""
    if raw.lstrip().startswith(("{", "[")):
        return raw
    path = Path(raw.removeprefix("file://"))
    try:
        return path.read_text()
    except OSError as exc:
        raise typer.BadParameter(
            f"{raw} is neither JSON nor a readable file ({exc.strerror})", param_hint="--content"
        ) from None


@card_app.command()
def create(
    name: Annotated[str, typer.Argument(help="ModelCardName: letters, digits and hyphens, up to 63.")],
    content: Annotated[str | None, typer.Option(help=CONTENT_HELP)] = None,
    from_package: Annotated[
        str | None,
        typer.Option(help="Fill the card from a package version (GROUP/N or its ARN) instead of --content."),
    ] = None,
    status: Annotated[str, typer.Option(*STATUS_FLAGS, help=STATUS_HELP)] = "Draft",
) -> None:
    """Create a card (version 1), from a content document or from a registered package version.

    --from-package fills the model overview, the package details (ARN, approval, containers) and the training
    metrics the package was registered with. A model has one card: a second card for it is refused.

    Examples: modelcrate card create abalone-card --content card.json;
    modelcrate card create abalone-v3 --from-package abalone/3
    """
    if (content is None) == (from_package is None):
        raise typer.BadParameter("give either --content or --from-package", param_hint="--content/--from-package")
    cards = _cards()
    if from_package:
        answer = _call("CreateModelCard", lambda: cards.create_from_package(name, from_package))
        if status != "Draft":
            answer = _call(
                "UpdateModelCard", lambda: cards.update_model_card({"ModelCardName": name, "ModelCardStatus": status})
            )
    else:
        request = {"ModelCardName": name, "Content": _content(content), "ModelCardStatus": status}
        answer = _call("CreateModelCard", lambda: cards.create_model_card(request))
    _print(answer)


@card_app.command()
def update(
    name: Annotated[str, typer.Argument(help="The card's name.")],
    content: Annotated[str | None, typer.Option(help=CONTENT_HELP + " Makes a new version.")] = None,
    status: Annotated[str | None, typer.Option(*STATUS_FLAGS, help=STATUS_HELP + " Makes no new version.")] = None,
) -> None:
    """Change a card's content (a new, immutable version N+1) or its status (no new version); one at a time.

    Content the same as the latest version's makes no version: one line says so.
    Example: modelcrate card update abalone-card --model-card-status PendingReview
    """
    request: dict = {"ModelCardName": name}
    if content is not None:
        request["Content"] = _content(content)
    if status is not None:
        request["ModelCardStatus"] = status
    cards = _cards()
    answer = _call("UpdateModelCard", lambda: cards.update_model_card(request))
    if answer.get("ContentChanged") is False:
        say(f"{name}: the content is that of version {answer['ModelCardVersion']} already; no new version made")
        return
    _print(answer)


@card_app.command()
def describe(
    name: Annotated[str, typer.Argument(help="The card's name.")],
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
) -> None:
    """Print a card version: its Content, status, who created and last changed it, when."""
    cards = _cards()
    _print(_call("DescribeModelCard", lambda: cards.describe_model_card(name, version)))


@card_app.command("list")
def list_cards(
    name_contains: Annotated[str | None, typer.Option(help="Only cards whose name contains this.")] = None,
    status: Annotated[str | None, typer.Option(*STATUS_FLAGS, help="Only cards with this status.")] = None,
    sort_by: Annotated[str, typer.Option(help="Name or CreationTime.")] = "CreationTime",
    sort_order: Annotated[str, typer.Option(help="Ascending or Descending.")] = "Descending",
    max_results: Annotated[int, typer.Option(help="Page size, 1-100.")] = 100,
    next_token: Annotated[str | None, typer.Option(help="The NextToken of the previous page.")] = None,
) -> None:
    """List cards (ModelCardSummaries), a page at a time."""
    request: dict = {"SortBy": sort_by, "SortOrder": sort_order, "MaxResults": max_results}
    for key, value in (("NameContains", name_contains), ("ModelCardStatus", status), ("NextToken", next_token)):
        if value is not None:
            request[key] = value
    cards = _cards()
    _print(_call("ListModelCards", lambda: cards.list_model_cards(request)))


@card_app.command("list-versions")
def list_versions(name: Annotated[str, typer.Argument(help="The card's name.")]) -> None:
    """List a card's versions, oldest first, with who created each and when."""
    cards = _cards()
    _print(_call("ListModelCardVersions", lambda: cards.list_model_card_versions(name)))


@card_app.command()
def diff(
    name: Annotated[str, typer.Argument(help="The card's name.")],
    a: Annotated[int, typer.Argument(help="The older version.")],
    b: Annotated[int, typer.Argument(help="The newer version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON instead of a table.")] = False,
) -> None:
    """Show each field that changed between two versions, with its old and new value.

    Paths are JSON paths into the Content ($.intended_uses.risk_rating); a field added or removed shows
    "(absent)" on the side where it does not exist. Example: modelcrate card diff abalone-card 1 3
    """
    cards = _cards()
    changes = _call("DiffModelCard", lambda: cards.diff(name, a, b))
    if as_json:
        _print(changes)
        return
    if not changes:
        say(f"versions {a} and {b} of {name} have the same content")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{name}: version {a} -> {b}"), title_justify="left")
    table.add_column("Field", overflow="fold")
    table.add_column(f"Version {a}", overflow="fold")
    table.add_column(f"Version {b}", overflow="fold")
    for change in changes:
        cells = (change["Path"], _shown(change["Old"]), _shown(change["New"]))
        table.add_row(*map(Text, cells), end_section=False)
    Console(soft_wrap=False).print(table)


def _shown(value) -> str:
    return "(absent)" if value is None else json.dumps(value, ensure_ascii=False)


@card_app.command()
def export(
    name: Annotated[str, typer.Argument(help="The card's name.")],
    output: Annotated[Path, typer.Option(help="The file to write: .pdf, .html or .md gives the format.")],
    export_format: Annotated[
        str | None, typer.Option("--format", help="pdf, html or md (default: the output's extension).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
    job_name: Annotated[
        str | None, typer.Option(help="The export job's name, unique per card (default: made up).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export job's record as JSON.")] = False,
) -> None:
    """Render a card version to PDF, HTML or Markdown, recorded as an export job (its status and location).

    Templates: the built-in Jinja2 templates (card.html.j2, also the PDF's source, and card.md.j2) are replaced
    by files of the same name in the directory MODELCRATE_CARD_TEMPLATES names.
    Example: modelcrate card export abalone-card --output abalone-card.pdf
    """
    from modelcrate.cards.render import ExportFormatError, export_format_for

    try:
        fmt = export_format_for(output, export_format)
    except ExportFormatError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    cards = _cards()
    answer = _call("CreateModelCardExportJob", lambda: cards.export_job(name, version, fmt, output, job_name))
    if as_json:
        _print(answer)
        return
    written = f"{answer['ExportArtifacts']['Location']} ({fmt}, {name} version {answer['ModelCardVersion']})"
    say(written, "wrote", "green")


@card_app.command()
def delete(name: Annotated[str, typer.Argument(help="The card's name.")]) -> None:
    """Delete a card with all its versions and export job records (exported files are left in place)."""
    cards = _cards()
    _print(_call("DeleteModelCard", lambda: cards.delete_model_card(name)))


@card_app.command()
def clone(
    name: Annotated[str, typer.Argument(help="The card to start from.")],
    new_name: Annotated[str, typer.Argument(help="The new card's name.")],
    package: Annotated[str, typer.Option(help="The new package version it documents: GROUP/N or its ARN.")],
    allow_other_group: Annotated[
        bool, typer.Option(help="Allow --package to be in another group than the version NAME documents.")
    ] = False,
) -> None:
    """Make a card for a new package version from an existing card.

    Business details, intended uses and additional information carry over from NAME's latest version; the model
    overview, package details and training metrics are filled from --package, which must be in the same group
    (unless --allow-other-group). The new card records where it came from.
    Example: modelcrate card clone abalone-v3 abalone-v4 --package abalone/4
    """
    cards = _cards()
    _print(_call("CloneModelCard", lambda: cards.clone(name, new_name, package, allow_other_group=allow_other_group)))
