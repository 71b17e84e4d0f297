"""``modelcrate check-image --marketplace``: a readiness report, one pass/fail line per Marketplace rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelcrate.cli import _project_or_image, app, err, error


@app.command("check-image")
def check_image_command(
    target: Annotated[str, typer.Argument(help="Project directory or image reference.")] = ".",
    marketplace: Annotated[
        bool, typer.Option("--marketplace", help="Check AWS Marketplace's rules (the only rule set so far).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON (for CI).")] = False,
    supported_os: Annotated[
        Path | None,
        typer.Option(help="JSON list of scannable base OSes to use instead of the shipped one (AWS updates it)."),
    ] = None,
    max_size_gb: Annotated[
        float | None,
        typer.Option(help="Largest acceptable image size in GB (default 10: SageMaker Serverless Inference's limit)."),
    ] = None,
    ignore_vuln: Annotated[
        list[str] | None,
        typer.Option(help="A vulnerability ID (or alias) accepted as not applying; repeatable; still reported."),
    ] = None,
) -> None:
    """Check an image against AWS Marketplace's rules before listing it: scannable base OS, serves (and, for
    algorithms, trains) with --network none, runs as non-root, `serve` (and `train`) on PATH, image size,
    no credentials baked in, and Python dependencies audited with pip-audit.

    Exit 0 when every rule passes, 1 when one fails, 2 for a usage error.
    Example: modelcrate check-image my-model --marketplace --json > readiness.json
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modelcrate.containers.docker import DockerError
    from modelcrate.containers.marketplace import FAIL, NOTE, PASS, MarketplaceError, check_marketplace

    if not marketplace:
        error("say which rules to check: --marketplace (AWS Marketplace's)")
        raise typer.Exit(2)
    project = _project_or_image(target)
    image = project.image if project else target
    try:
        with err.status(Text(f"checking {image} for AWS Marketplace...")) as status:
            report = check_marketplace(
                image, supported_os, max_size_gb, ignore_vuln or [], on_step=lambda step: status.update(Text(step))
            )
    except MarketplaceError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    except DockerError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    if json_output:
        print(json.dumps(report.to_json(), indent=2))
    else:
        shown = {PASS: "[green]pass[/]", FAIL: "[red]FAIL[/]", NOTE: "[yellow]note[/]"}
        table = Table(title=Text(f"Marketplace readiness of {image}"))
        for column in ("rule", "result", "found"):
            table.add_column(column, overflow="fold")  # paths and ids are evidence: never cut them short
        for rule in report.rules:
            table.add_row(rule.title, shown.get(rule.status, f"[dim]{rule.status}[/]"), Text(rule.found))
        console = Console(soft_wrap=True)  # what to do, one unbroken line per failure (readable in CI logs)
        console.print(table, highlight=False)
        for rule in report.rules:
            if rule.status == FAIL:
                explained = f" {rule.title}: {rule.found}\n  what to do: {rule.fix}"
                console.print(Text.assemble(("FAIL", "red"), explained), highlight=False)
            elif rule.status == NOTE:
                explained = f" {rule.title}: {rule.found}\n  why, and what to do: {rule.fix}"
                console.print(Text.assemble(("note", "yellow"), explained), highlight=False)
        audit = next(rule for rule in report.rules if rule.rule == "dependency-audit")
        rows = [(f, "no") for f in audit.evidence.get("findings", [])]
        rows += [(f, "yes (--ignore-vuln)") for f in audit.evidence.get("accepted", [])]
        if rows:
            vulns = Table("package", "version", "id", "aliases", "fix versions", "accepted", title="pip-audit findings")
            for finding, accepted in rows:
                fixes = ", ".join(finding["fix_versions"]) or "none yet"
                cells = (finding["package"], finding["version"], finding["id"], ", ".join(finding["aliases"]), fixes)
                vulns.add_row(*map(Text, cells), accepted)
            console.print(vulns, highlight=False)
        verdict = ("ready", "green") if report.passed else ("not ready", "red")
        console.print(Text.assemble(f"{image}: ", verdict, " for AWS Marketplace"), highlight=False)
    if not report.passed:
        raise typer.Exit(1)
