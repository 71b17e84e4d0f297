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

from sqlalchemy import delete, select
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
    documenting_cards,
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


def _group_and_version(package_arn: str | None) -> tuple[str, int] | tuple[None, None]:
    """(GROUP, N) of a versioned package's ARN (model-package/GROUP/N); (None, None) for no ARN or an unversioned
    one."""
    group, _, version = (package_arn or "").rsplit(":model-package/", 1)[-1].partition("/")
    return (group, int(version)) if version.isdigit() else (None, None)


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

    def clone(self, name: str, new_name: str, package: str, *, allow_other_group: bool = False) -> dict:
        """A card for another package version: the business details, intended uses and additional information
        of ``name``'s latest version, everything else filled from ``package``; the new card records where it was
        carried over from. ``package`` must be in the group of the version ``name`` documents, unless
        ``allow_other_group``."""
        _check_name(new_name, "new card name")
        source = self.describe_model_card(name)
        target = self.registry.describe_model_package(package)
        source_package = source["Content"].get("model_package_details", {}).get("model_package_arn")
        source_group, source_version = _group_and_version(source_package)
        target_group = target.get("ModelPackageGroupName")
        if source_group and source_group != target_group and not allow_other_group:
            raise Conflict(
                f"model card {name} documents a version of group {source_group}, {package} is "
                f"{f'in group {target_group}' if target_group else 'unversioned'}: a card is cloned within its "
                "group; give --allow-other-group to clone it across groups"
            )
        content = {**content_from_package(target), **carried_over(source["Content"])}
        origin = {
            "ModelCardName": source["ModelCardName"],
            "ModelCardVersion": source["ModelCardVersion"],
            **({"ModelPackageArn": source_package} if source_package else {}),
            **({"ModelPackageVersion": source_version} if source_version else {}),
        }
        return self._create(new_name, parse_content(content), "Draft", carried_over_from=origin)

    def carry_forward(self, package: str) -> dict | None:
        """After ``package`` (a new version) is registered: a Draft card for it, named GROUP-vN, cloned from the card
        of the group's version before it (the highest still registered; the first card by name if several document
        it). Its DescribeModelCard answer; None when that version has no card or there is none."""
        previous = self.registry.previous_version(package)
        if previous is None:
            return None
        with self.registry.transaction() as session:
            sources = documenting_cards(session, previous)
        if not sources:
            return None
        new = self.registry.describe_model_package(package)
        suffix = f"-v{new['ModelPackageVersion']}"
        name = new["ModelPackageGroupName"][: 63 - len(suffix)] + suffix
        self.clone(sources[0], name, new["ModelPackageArn"])
        return self.describe_model_card(name)

    def documenting(self, package: str) -> list[dict]:
        """The latest version of each card that documents the package version ``package`` (its ARN), by name."""
        with self.registry.transaction() as session:
            names = documenting_cards(session, package)
        return [self.describe_model_card(name) for name in names]

    def _create(
        self, name: str, content: dict, status: str, tags: list[dict] = (), carried_over_from: dict | None = None
    ) -> dict:
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
                    carried_over_from=carried_over_from,
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
                # Held until the card is stored: a deletion of the package waits, then sees the card and refuses.
                session.refresh(self.registry.find_package(session, package), with_for_update={"read": True})
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
            version, changed = self._new_version(name, parse_content(data["Content"]))
            return {"ModelCardArn": card_arn(name), "ModelCardVersion": version, "ContentChanged": changed}
        if "ModelCardStatus" not in data:
            raise RegistryError("UpdateModelCard needs Content (a new version) or ModelCardStatus")
        self._set_status(name, data["ModelCardStatus"])
        return {"ModelCardArn": card_arn(name)}

    def _new_version(self, name: str, content: dict) -> tuple[int, bool]:
        """Store ``content`` as the card's next version, unless it is the latest version's content already.
        Returns (the card's latest version, whether one was made)."""
        moment = now()
        with self.registry.transaction() as session:
            # The row lock serialises concurrent content updates: each compares with the version before it and gets
            # the next number.
            card = session.scalar(select(ModelCard).where(ModelCard.name == name).with_for_update())
            if card is None:
                raise self._missing(name)
            if card.status == ARCHIVED:
                raise Conflict(
                    f"model card {name} is Archived: it accepts no changes (it can still be read and exported)"
                )
            model_id = model_id_of(content)
            if card.model_id is not None and model_id != card.model_id:
                raise RegistryError(
                    f"model card {name} documents model {card.model_id}, set once: the new content names "
                    f"{model_id or 'no model'} ($.model_overview.model_id, else "
                    "$.model_package_details.model_package_arn); create another card for another model"
                )
            if not diff_contents(self._version(session, card, None).content, content):
                return card.latest_version, False
            self._check_link(session, content, model_id, card.id)
            card.model_id = model_id
            card.latest_version += 1
            card.modified_at, card.modified_by = moment, self.who
            version = ModelCardVersion(
                card_id=card.id, version=card.latest_version, content=content, created_at=moment, created_by=self.who
            )
            session.add(version)
            return card.latest_version, True

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
            **({"CarriedOverFrom": card.carried_over_from} if card.carried_over_from else {}),
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
                        "ModelCardStatus": card.status,  # the card's: a status change makes no version
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
