"""Model cards with SageMaker's names and shapes (CreateModelCard, UpdateModelCard, DescribeModelCard...).

The command line and the web console call these methods; every rule about cards lives here once: content
validation, version numbers, status changes, the link to a package version, one card per model.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelcrate.cards.content import carried_over, content_from_package, diff_contents, model_id_of, parse_content
from modelcrate.cards.render import FORMATS, render
from modelcrate.registry.models import ModelCard, ModelCardExport, ModelCardVersion, Tag
from modelcrate.registry.service import (
    ARN_PREFIX,
    Conflict,
    NotFound,
    Registry,
    RegistryError,
    as_utc,
    card_arn,
    now,
    parse_request,
)

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ARCHIVED = "Archived"


def export_job_arn(card_name: str, job_name: str) -> str:
    return f"{ARN_PREFIX}model-card/{card_name}/export-job/{job_name}"


def _parsed(operation: str, request) -> dict:
    """The request checked by botocore's shape; Content may be the JSON object itself instead of its text."""
    if isinstance(request, dict) and isinstance(request.get("Content"), dict | list):
        request = {**request, "Content": json.dumps(request["Content"], separators=(",", ":"), ensure_ascii=False)}
    return parse_request(operation, request)


def _check_name(name, field: str = "ModelCardName") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(
            f"{field} {name!r}: 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
        )
    return name


def _iso(moment: datetime) -> str:
    return as_utc(moment).isoformat()


class Cards:
    def __init__(self, registry: Registry):
        self.registry = registry

    @property
    def who(self) -> str:
        return self.registry.who

    # ---------------------------------------------------------------- create

    def create_model_card(self, request: dict) -> dict:
        data = _parsed("CreateModelCard", request)
        return self._create(
            data["ModelCardName"], parse_content(data["Content"]), data["ModelCardStatus"], data.get("Tags", [])
        )

    def create_from_package(self, card_name: str, package: str) -> dict:
        """A Draft card for a package version (GROUP/N or its ARN), filled from what the registry knows."""
        _check_name(card_name)
        content = parse_content(content_from_package(self.registry.describe_model_package(package)))
        return self._create(card_name, content, "Draft")

    def clone(self, name: str, new_name: str, package: str) -> dict:
        """A card for another package version: the business details, intended uses and additional information
        of ``name``'s latest version, everything else filled from ``package``."""
        _check_name(new_name, "new card name")
        source = self.describe_model_card(name)["Content"]
        content = {**content_from_package(self.registry.describe_model_package(package)), **carried_over(source)}
        return self._create(new_name, parse_content(content), "Draft")

    def _create(self, name: str, content: dict, status: str, tags: list[dict] = ()) -> dict:
        model_id = model_id_of(content)
        moment = now()
        try:
            with self.registry.transaction() as session:
                if session.scalar(select(ModelCard.id).where(ModelCard.name == name)) is not None:
                    raise Conflict(f"model card {name} already exists; change it with update-model-card")
                self._check_link(session, content, model_id)
                card = ModelCard(
                    name=name,
                    status=status,
                    latest_version=1,
                    model_id=model_id,
                    created_at=moment,
                    created_by=self.who,
                    modified_at=moment,
                    modified_by=self.who,
                )
                session.add(card)
                session.flush()
                session.add(
                    ModelCardVersion(
                        card_id=card.id, version=1, content=content, created_at=moment, created_by=self.who
                    )
                )
                self.registry.tag(session, card_arn(name), tags)
        except IntegrityError:
            # A concurrent request took the name or the model between the checks and the insert.
            raise Conflict(f"model card {name}, or a card for model {model_id}, was created at the same time") from None
        return {"ModelCardArn": card_arn(name)}

    def _check_link(self, session: Session, content: dict, model_id: str | None, card_id: int | None = None) -> None:
        """The linked package version exists, and no other card documents the same model."""
        package = content.get("model_package_details", {}).get("model_package_arn")
        if package:
            try:
                self.registry.find_package(session, package)
            except NotFound:
                raise NotFound(
                    f"$.model_package_details.model_package_arn: model package {package} does not exist; link the "
                    "card to a registered package version"
                ) from None
        if model_id is None:
            return
        owner = session.scalar(select(ModelCard).where(ModelCard.model_id == model_id, ModelCard.id != card_id))
        if owner is not None:
            raise Conflict(
                f"model {model_id} already has a model card ({owner.name}); a model has one card: update that one"
            )

    # ---------------------------------------------------------------- update

    def update_model_card(self, request: dict) -> dict:
        data = _parsed("UpdateModelCard", request)
        name = data["ModelCardName"]
        if "Content" in data and "ModelCardStatus" in data:
            raise RegistryError(
                "UpdateModelCard changes Content or ModelCardStatus, not both at once: make two updates"
            )
        if "Content" in data:
            self._new_version(name, parse_content(data["Content"]))
        elif "ModelCardStatus" in data:
            self._set_status(name, data["ModelCardStatus"])
        else:
            raise RegistryError("UpdateModelCard needs Content (a new version) or ModelCardStatus")
        return {"ModelCardArn": card_arn(name)}

    def _new_version(self, name: str, content: dict) -> None:
        moment = now()
        with self.registry.transaction() as session:
            # The row lock (taken by this UPDATE) serialises concurrent content updates: each gets the next number.
            locked = session.execute(
                update(ModelCard)
                .where(ModelCard.name == name)
                .values(latest_version=ModelCard.latest_version + 1, modified_at=moment, modified_by=self.who)
                .returning(ModelCard.id, ModelCard.latest_version, ModelCard.status, ModelCard.model_id)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if locked is None:
                raise self._missing(name)
            card_id, version, status, current_model = locked
            if status == ARCHIVED:
                raise Conflict(
                    f"model card {name} is Archived: it accepts no changes (it can still be read and exported)"
                )
            model_id = model_id_of(content)
            if current_model is not None and model_id != current_model:
                raise RegistryError(
                    f"model card {name} documents model {current_model}, set once: the new content names "
                    f"{model_id or 'no model'} ($.model_overview.model_id, else "
                    "$.model_package_details.model_package_arn); create another card for another model"
                )
            self._check_link(session, content, model_id, card_id)
            if current_model is None and model_id is not None:
                session.execute(update(ModelCard).where(ModelCard.id == card_id).values(model_id=model_id))
            session.add(
                ModelCardVersion(
                    card_id=card_id, version=version, content=content, created_at=moment, created_by=self.who
                )
            )

    def _set_status(self, name: str, status: str) -> None:
        with self.registry.transaction() as session:
            card = self._card(session, name)
            if card.status == ARCHIVED:
                raise Conflict(f"model card {name} is Archived: its status cannot change any more")
            card.status = status
            card.modified_at = now()
            card.modified_by = self.who

    # ---------------------------------------------------------------- read

    @staticmethod
    def _missing(name: str) -> NotFound:
        return NotFound(f"model card {name} does not exist (list-model-cards shows the cards there are)")

    def _card(self, session: Session, name: str) -> ModelCard:
        card = session.scalar(select(ModelCard).where(ModelCard.name == name))
        if card is None:
            raise self._missing(name)
        return card

    def _version(self, session: Session, card: ModelCard, version: int | None) -> ModelCardVersion:
        number = card.latest_version if version is None else version
        row = session.scalar(
            select(ModelCardVersion).where(ModelCardVersion.card_id == card.id, ModelCardVersion.version == number)
        )
        if row is None:
            raise NotFound(f"model card {card.name} has no version {number} (its versions: 1 to {card.latest_version})")
        return row

    def describe_model_card(self, name: str, version: int | None = None) -> dict:
        with self.registry.transaction() as session:
            card = self._card(session, name)
            return self._description(card, self._version(session, card, version))

    @staticmethod
    def _description(card: ModelCard, version: ModelCardVersion) -> dict:
        return {
            "ModelCardArn": card_arn(card.name),
            "ModelCardName": card.name,
            "ModelCardVersion": version.version,
            "Content": version.content,
            "ModelCardStatus": card.status,
            "CreationTime": _iso(card.created_at),
            "CreatedBy": {"UserProfileName": card.created_by},
            "LastModifiedTime": _iso(card.modified_at),
            "LastModifiedBy": {"UserProfileName": card.modified_by},
        }

    def list_model_cards(self, request: dict | None = None) -> dict:
        data = parse_request("ListModelCards", request or {})
        query = select(ModelCard)
        if data.get("NameContains"):
            query = query.where(ModelCard.name.contains(data["NameContains"]))
        if data.get("ModelCardStatus"):
            query = query.where(ModelCard.status == data["ModelCardStatus"])
        if data.get("CreationTimeAfter"):
            query = query.where(ModelCard.created_at > as_utc(data["CreationTimeAfter"]))
        if data.get("CreationTimeBefore"):
            query = query.where(ModelCard.created_at < as_utc(data["CreationTimeBefore"]))
        column = ModelCard.name if data.get("SortBy") == "Name" else ModelCard.created_at
        ascending = data.get("SortOrder") == "Ascending"
        query = query.order_by(
            column.asc() if ascending else column.desc(), ModelCard.id.asc() if ascending else ModelCard.id.desc()
        )
        with self.registry.transaction() as session:
            cards, token = self.registry.page(session, query, data)
            return {
                "ModelCardSummaries": [
                    {
                        "ModelCardName": card.name,
                        "ModelCardArn": card_arn(card.name),
                        "ModelCardStatus": card.status,
                        "CreationTime": _iso(card.created_at),
                        "LastModifiedTime": _iso(card.modified_at),
                    }
                    for card in cards
                ],
                **token,
            }

    def list_model_card_versions(self, name: str) -> dict:
        with self.registry.transaction() as session:
            card = self._card(session, name)
            versions = session.scalars(
                select(ModelCardVersion).where(ModelCardVersion.card_id == card.id).order_by(ModelCardVersion.version)
            )
            return {
                "ModelCardVersionSummaryList": [
                    {
                        "ModelCardName": card.name,
                        "ModelCardArn": card_arn(card.name),
                        "ModelCardVersion": version.version,
                        "CreationTime": _iso(version.created_at),
                        "CreatedBy": {"UserProfileName": version.created_by},
                    }
                    for version in versions
                ]
            }

    def diff(self, name: str, a: int, b: int) -> list[dict]:
        """Each field that differs from version ``a`` to version ``b``: {"Path", "Old", "New"}, by path."""
        with self.registry.transaction() as session:
            card = self._card(session, name)
            old, new = self._version(session, card, a), self._version(session, card, b)
            return diff_contents(old.content, new.content)

    # ---------------------------------------------------------------- export

    def export(self, name: str, version: int | None, fmt: str) -> bytes:
        """The card version rendered: "pdf", "html" or "md"."""
        return render(self.describe_model_card(name, version), fmt)

    def export_job(self, name: str, version: int | None, fmt: str, output: Path, job_name: str | None = None) -> dict:
        """Export to ``output`` as a recorded job: InProgress, then Completed (with the file's location) or
        Failed (with the reason, which is also raised)."""
        if fmt not in FORMATS:
            raise RegistryError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
        described = self.describe_model_card(name, version)
        number = described["ModelCardVersion"]
        job_name = _check_name(job_name or f"{name[:40]}-v{number}-{fmt}-{uuid.uuid4().hex[:8]}", "export job name")
        moment = now()
        try:
            with self.registry.transaction() as session:
                card = self._card(session, name)
                job = ModelCardExport(
                    card_id=card.id,
                    name=job_name,
                    version=number,
                    format=fmt,
                    status="InProgress",
                    created_at=moment,
                    modified_at=moment,
                )
                session.add(job)
        except IntegrityError:
            raise Conflict(
                f"model card {name} already has an export job named {job_name}; choose another name"
            ) from None
        location = Path(output).resolve()
        try:
            location.write_bytes(render(described, fmt))
        except (RegistryError, OSError) as exc:
            reason = str(exc) if isinstance(exc, RegistryError) else f"cannot write {location}: {exc.strerror}"
            self._finish_job(job.id, "Failed", None, reason)
            raise RegistryError(f"export job {job_name} failed: {reason}") from None
        return self._finish_job(job.id, "Completed", str(location), None)

    def _finish_job(self, job_id: int, status: str, location: str | None, reason: str | None) -> dict:
        with self.registry.transaction() as session:
            job = session.get(ModelCardExport, job_id)
            job.status, job.location, job.failure_reason, job.modified_at = status, location, reason, now()
            card = session.get(ModelCard, job.card_id)
            return {
                "ModelCardExportJobName": job.name,
                "ModelCardExportJobArn": export_job_arn(card.name, job.name),
                "Status": job.status,
                "ModelCardName": card.name,
                "ModelCardVersion": job.version,
                "Format": job.format,
                **({"ExportArtifacts": {"Location": location}} if location else {}),
                **({"FailureReason": reason} if reason else {}),
                "CreatedAt": _iso(job.created_at),
                "LastModifiedAt": _iso(job.modified_at),
            }

    # ---------------------------------------------------------------- delete

    def delete_model_card(self, name: str) -> dict:
        """Delete the card with all its versions and export job records (exported files stay where they were
        written: they belong to whoever asked for them)."""
        with self.registry.transaction() as session:
            card = self._card(session, name)
            session.execute(delete(ModelCardExport).where(ModelCardExport.card_id == card.id))
            session.execute(delete(ModelCardVersion).where(ModelCardVersion.card_id == card.id))
            session.execute(delete(Tag).where(Tag.resource_arn == card_arn(card.name)))
            session.delete(card)
        return {}
