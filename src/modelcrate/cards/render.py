"""A card version as HTML, Markdown (Jinja2 templates a user may replace) or PDF (the HTML, by WeasyPrint)."""

from __future__ import annotations

import os
from pathlib import Path

from modelcrate.registry.service import RegistryError

FORMATS = ("pdf", "html", "md")
FORMAT_OF_SUFFIX = {".pdf": "pdf", ".html": "html", ".htm": "html", ".md": "md"}
TEMPLATES_VARIABLE = "MODELCRATE_CARD_TEMPLATES"
BUILT_IN_TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_OF_FORMAT = {"html": "card.html.j2", "pdf": "card.html.j2", "md": "card.md.j2"}
CHART_WIDTH, CHART_HEIGHT, CHART_MARGIN = 480, 220, 36


class ExportFormatError(ValueError):
    """The export format is unclear: one line saying what to give."""


def export_format_for(output: Path, given: str | None) -> str:
    """The format to export to ``output``: its extension's, which a given format must not contradict."""
    named = FORMAT_OF_SUFFIX.get(output.suffix.lower())
    if given and named and given != named:
        raise ExportFormatError(
            f"--format {given} contradicts --output {output}, a {output.suffix} file: "
            f"leave --format out or give {named}"
        )
    if not (given or named):
        raise ExportFormatError(
            f"cannot tell the export format of {output} from its extension: name it .pdf, .html or .md, "
            "or give --format"
        )
    return given or named


def _environment():
    import jinja2

    # A user's directory first, so it may replace one template and keep the others.
    directories = [os.environ[TEMPLATES_VARIABLE]] if os.environ.get(TEMPLATES_VARIABLE) else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*directories, str(BUILT_IN_TEMPLATES)]),
        # Markdown too: a card's text is shown as written, never as HTML a Markdown viewer would run.
        autoescape=True,
        # A missing section or field renders as nothing: every part of a card's content is optional.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _bars(labelled_values: list[tuple[str, float]]) -> dict:
    """Bars scaled into the chart; the baseline is zero, so negative values hang below it."""
    low = min(0.0, *(v for _, v in labelled_values))
    high = max(0.0, *(v for _, v in labelled_values))
    span = (high - low) or 1.0
    plot_height = CHART_HEIGHT - 2 * CHART_MARGIN
    slot = (CHART_WIDTH - 2 * CHART_MARGIN) / len(labelled_values)
    baseline = CHART_MARGIN + plot_height * high / span
    bars = []
    for index, (label, value) in enumerate(labelled_values):
        height = plot_height * abs(value) / span
        bars.append(
            {
                "label": label,
                "value": value,
                "x": round(CHART_MARGIN + index * slot + slot * 0.15, 2),
                "y": round(baseline - height if value >= 0 else baseline, 2),
                "width": round(slot * 0.7, 2),
                "height": round(height, 2),
                "label_x": round(CHART_MARGIN + (index + 0.5) * slot, 2),
            }
        )
    return {"kind": "bars", "bars": bars, "baseline": round(baseline, 2)}


def _line(points: list[list[float]]) -> dict:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    plot_width, plot_height = CHART_WIDTH - 2 * CHART_MARGIN, CHART_HEIGHT - 2 * CHART_MARGIN
    scaled = [
        (
            round(CHART_MARGIN + plot_width * (x - min(xs)) / x_span, 2),
            round(CHART_HEIGHT - CHART_MARGIN - plot_height * (y - min(ys)) / y_span, 2),
        )
        for x, y in points
    ]
    return {
        "kind": "line",
        "points": " ".join(f"{x},{y}" for x, y in scaled),
        "x_range": (min(xs), max(xs)),
        "y_range": (min(ys), max(ys)),
    }


def charts_of(group: dict) -> list[dict]:
    """The charts of a metric group: one of its numeric simple metrics together, one per bar chart and graph."""
    charts = []
    simple = [(m["name"], m["value"]) for m in group["metric_data"] if m["type"] == "number"]
    if simple:
        charts.append({"title": group["name"], **_bars(simple)})
    for metric in group["metric_data"]:
        if metric["type"] == "bar_chart":
            labels = metric.get("x_axis_name", [])
            values = [(labels[i] if i < len(labels) else str(i + 1), v) for i, v in enumerate(metric["value"])]
            charts.append({"title": metric["name"], **_bars(values)})
        elif metric["type"] == "linear_graph":
            charts.append({"title": metric["name"], **_line(metric["value"])})
        else:
            continue
        charts[-1].update(x_axis_name=metric.get("x_axis_name", ""), y_axis_name=metric.get("y_axis_name", ""))
    return charts


def render_text(card: dict, fmt: str) -> str:
    """The HTML or Markdown of a described card (DescribeModelCard's answer)."""
    import jinja2

    environment = _environment()
    try:
        template = environment.get_template(TEMPLATE_OF_FORMAT[fmt])
        return template.render(
            card=card,
            content=card["Content"],
            charts_of=charts_of,
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
            margin=CHART_MARGIN,
        )
    except jinja2.TemplateError as exc:
        where = os.environ.get(TEMPLATES_VARIABLE) or str(BUILT_IN_TEMPLATES)
        raise RegistryError(f"template {TEMPLATE_OF_FORMAT[fmt]} (looked up in {where}) failed: {exc}") from None


def render(card: dict, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise RegistryError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    text = render_text(card, fmt)
    if fmt != "pdf":
        return text.encode()
    from weasyprint import HTML

    return HTML(string=text, base_url=str(BUILT_IN_TEMPLATES)).write_pdf()
