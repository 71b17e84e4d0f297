"""The web console: server-rendered pages over the registry's and the cards' service functions.

No rule lives here: an approval is ``Registry.update_model_package``, exactly as ``modelcrate registry
update-model-package`` does it, so both write the same history entry.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from modelcrate.registry.service import Conflict, NotFound, Registry, RegistryError
from modelcrate.web.security import CSRF_FIELD, ConsoleGuard, ConsoleSettings

HERE = Path(__file__).resolve().parent
DECISIONS = ("Approved", "Rejected")
CARD_STATUSES = ("Draft", "PendingReview", "Approved", "Archived")
CARD_SECTIONS = (
    "model_overview",
    "intended_uses",
    "business_details",
    "training_details",
    "evaluation_details",
    "additional_information",
    "model_package_details",
)
EXPORTS = {"pdf": "application/pdf", "html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8"}
METRIC_PREFIX = "training."


def package_path(arn: str) -> str | None:
    """The console's page for a package ARN (``...:model-package/GROUP/N`` or ``.../NAME``)."""
    marker = ":model-package/"
    return f"/packages/{arn.split(marker, 1)[1]}" if marker in arn else None


def _title(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _when(moment: str) -> str:
    """An ISO timestamp as people read it: "2026-11-25 09:59:16 UTC"."""
    try:
        parsed = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        return moment or ""
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(value) -> str:
    """A diff side as text: strings as they are, structures as JSON, an absent value as a dash."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@jinja2.pass_context
def _path_for(context, name: str, /, **params) -> str:
    """Links as paths: the same under any host name, and never built from a Host header."""
    return context["request"].url_for(name, **params).path


def create_app(registry: Registry, settings: ConsoleSettings | None = None) -> ConsoleGuard:
    """The console as an ASGI app; ``settings`` as ``settings_for_bind`` makes them (default: loopback, no token)."""
    settings = settings or ConsoleSettings()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters.update(title=_title, package_path=package_path, shown=_shown, when=_when)
    environment.globals.update(CSRF_FIELD=CSRF_FIELD, url_for=_path_for)
    templates = Jinja2Templates(env=environment)

    @functools.cache
    def cards():
        """The model cards service, or None while ``modelcrate.cards`` is not installed: the registry pages
        must work without it."""
        try:
            from modelcrate.cards.service import Cards
        except ImportError:
            return None
        return Cards(registry)

    def page(request: Request, template: str, status_code: int = 200, **context) -> Response:
        context.setdefault("error", None)
        context.update(csrf_token=request.scope["state"]["csrf_token"], cards_available=cards() is not None)
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def problem(request: Request, exc: RegistryError) -> Response:
        return page(request, "error.html", status_code=_http_status(exc), message=str(exc))

    def groups(request: Request) -> Response:
        listed = _every(registry.list_model_package_groups, "ModelPackageGroupSummaryList", {"SortBy": "Name"})
        return page(request, "groups.html", groups=sorted(listed, key=lambda g: g["ModelPackageGroupName"]))

    def group(request: Request) -> Response:
        name = request.path_params["group"]
        try:
            described = registry.describe_model_package_group(name)
            summaries = _every(registry.list_model_packages, "ModelPackageSummaryList", {"ModelPackageGroupName": name})
            versions = [registry.describe_model_package(s["ModelPackageArn"]) for s in summaries]
        except RegistryError as exc:
            return problem(request, exc)
        versions.sort(key=lambda v: v["ModelPackageVersion"], reverse=True)
        keys = {
            key for v in versions for key in v.get("CustomerMetadataProperties", {}) if key.startswith(METRIC_PREFIX)
        }
        metrics = [(key, key[len(METRIC_PREFIX) :]) for key in sorted(keys)]  # (property, column title)
        return page(request, "group.html", group=described, versions=versions, metrics=metrics)

    def package_page(request: Request, status_code: int = 200, **context) -> Response:
        identifier = request.path_params["package"]
        try:
            described = registry.describe_model_package(identifier)
            history = registry.history(identifier)["History"]
        except RegistryError as exc:
            return problem(request, exc)
        context.setdefault("form", {})
        return page(
            request,
            "package.html",
            status_code=status_code,
            package=described,
            identifier=identifier,
            history=list(reversed(history)),
            decisions=DECISIONS,
            linked_cards=cards().documenting(described["ModelPackageArn"]) if cards() else [],
            **context,
        )

    def package(request: Request) -> Response:
        return package_page(request)

    async def decide(request: Request) -> Response:
        return await run_in_threadpool(record_decision, request, await request.form())

    def record_decision(request: Request, form) -> Response:
        decision, reason = form.get("decision", ""), str(form.get("reason", "")).strip()
        if decision not in DECISIONS:
            return package_page(request, 400, error="Choose Approved or Rejected.", form=form)
        if not reason:
            return package_page(request, 400, error=f"A reason is required to mark this package {decision}.", form=form)
        try:
            registry.update_model_package(
                {
                    "ModelPackageArn": request.path_params["package"],
                    "ModelApprovalStatus": decision,
                    "ApprovalDescription": reason,
                }
            )
        except RegistryError as exc:
            return package_page(request, _http_status(exc), error=str(exc), form=form)
        return RedirectResponse(request.url_for("package", package=request.path_params["package"]).path, 303)

    def cards_or_missing(request: Request):
        service = cards()
        if service is None:
            return None, page(
                request, "error.html", status_code=404, message="Model cards are not installed (modelcrate.cards)."
            )
        return service, None

    def card_list(request: Request) -> Response:
        service, missing = cards_or_missing(request)
        if missing:
            return missing
        listed = _every(service.list_model_cards, "ModelCardSummaries", {})
        return page(request, "cards.html", cards=sorted(listed, key=lambda c: c["ModelCardName"]))

    def card_page(request: Request, status_code: int = 200, **context) -> Response:
        service, missing = cards_or_missing(request)
        if missing:
            return missing
        name = request.path_params["card"]
        version = _version(request.query_params.get("version"))
        try:
            card = service.describe_model_card(name, version)
            versions = service.list_model_card_versions(name)["ModelCardVersionSummaryList"]
        except RegistryError as exc:
            return problem(request, exc)
        content = card.get("Content") or {}
        sections = [(key, content[key]) for key in CARD_SECTIONS if key in content]
        sections += [(key, value) for key, value in content.items() if key not in CARD_SECTIONS]
        numbers = sorted({v["ModelCardVersion"] for v in versions})
        return page(
            request,
            "card.html",
            status_code=status_code,
            card=card,
            sections=sections,
            versions=numbers,
            statuses=CARD_STATUSES,
            formats=EXPORTS,
            **context,
        )

    def card(request: Request) -> Response:
        return card_page(request)

    async def card_status(request: Request) -> Response:
        return await run_in_threadpool(record_card_status, request, await request.form())

    def record_card_status(request: Request, form) -> Response:
        service, missing = cards_or_missing(request)
        if missing:
            return missing
        status = form.get("status", "")
        if status not in CARD_STATUSES:
            return card_page(request, 400, error=f"Choose one of {', '.join(CARD_STATUSES)}.")
        name = request.path_params["card"]
        try:
            service.update_model_card({"ModelCardName": name, "ModelCardStatus": status})
        except RegistryError as exc:
            return card_page(request, _http_status(exc), error=str(exc))
        return RedirectResponse(request.url_for("card", card=name).path, 303)

    def card_diff(request: Request) -> Response:
        service, missing = cards_or_missing(request)
        if missing:
            return missing
        name = request.path_params["card"]
        try:
            versions = sorted(
                v["ModelCardVersion"] for v in service.list_model_card_versions(name)["ModelCardVersionSummaryList"]
            )
            older = _version(request.query_params.get("a")) or (versions[-2] if len(versions) > 1 else versions[-1])
            newer = _version(request.query_params.get("b")) or versions[-1]
            changes = service.diff(name, older, newer)
        except RegistryError as exc:
            return problem(request, exc)
        return page(request, "card_diff.html", name=name, versions=versions, a=older, b=newer, changes=changes)

    def card_export(request: Request) -> Response:
        service, missing = cards_or_missing(request)
        if missing:
            return missing
        name = request.path_params["card"]
        fmt = request.query_params.get("format", "pdf")
        if fmt not in EXPORTS:
            return page(request, "error.html", status_code=400, message=f"Export formats: {', '.join(EXPORTS)}.")
        try:
            version = (
                _version(request.query_params.get("version")) or service.describe_model_card(name)["ModelCardVersion"]
            )
            body = service.export(name, version, fmt)
        except RegistryError as exc:
            return problem(request, exc)
        filename = f"{name}-v{version}.{fmt}"
        return Response(
            body, media_type=EXPORTS[fmt], headers={"content-disposition": f'attachment; filename="{filename}"'}
        )

    routes = [
        Route("/", groups, name="groups"),
        Route("/groups/{group}", group, name="group"),
        Route("/packages/{package:path}/decision", decide, methods=["POST"], name="decide"),
        Route("/packages/{package:path}", package, name="package"),
        Route("/cards", card_list, name="cards"),
        Route("/cards/{card}", card, name="card"),
        Route("/cards/{card}/status", card_status, methods=["POST"], name="card_status"),
        Route("/cards/{card}/diff", card_diff, name="card_diff"),
        Route("/cards/{card}/export", card_export, name="card_export"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return ConsoleGuard(Starlette(routes=routes), settings)


def _http_status(exc: RegistryError) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400


def _every(operation, key: str, request: dict) -> list[dict]:
    """All pages of a List* operation."""
    items, token = [], None
    while True:
        answer = operation({**request, **({"NextToken": token} if token else {})})
        items += answer[key]
        token = answer.get("NextToken")
        if not token:
            return items


def _version(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None
