"""The registry's operations, with SageMaker's names, request shapes and response shapes.

The command line and the web console are thin layers over these functions: every rule (validation, version
numbers, idempotency, approval, history) lives here once.
"""

from __future__ import annotations

import base64
import copy
import getpass
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelcrate.archives import file_digest
from modelcrate.registry import contract
from modelcrate.registry.artifacts import ArtifactError, ArtifactStore, check_model_archive, fetch_source
from modelcrate.registry.db import artifact_store_location, open_engine
from modelcrate.registry.models import (
    Artifact,
    ArtifactClaim,
    HistoryEntry,
    ModelCard,
    ModelCardVersion,
    Package,
    PackageArtifact,
    PackageGroup,
    Tag,
)

ARN_PREFIX = "arn:aws:sagemaker:local:000000000000:"  # SageMaker's ARN shape; region "local", a zero account
DEFAULT_PAGE = 100
PENDING = "PendingManualApproval"
MAX_TAGS = 50  # per resource, as SageMaker


class RegistryError(RuntimeError):
    """A request the registry refuses; ``code`` is the AWS error code it corresponds to."""

    code = "ValidationException"


class NotFound(RegistryError):
    code = "ResourceNotFound"


class Conflict(RegistryError):
    code = "ConflictException"


def now() -> datetime:
    return datetime.now(UTC)


def current_user() -> str:
    """Who is acting, for the history: ``MODELCRATE_USER``, else the login name."""
    return os.environ.get("MODELCRATE_USER") or getpass.getuser()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_request(operation: str, request) -> dict:
    """The request checked against botocore's shape and modelcrate's rules; a RegistryError lists its problems."""
    try:
        return contract.parse(operation, request)
    except contract.ShapeError as exc:
        raise RegistryError(str(exc)) from None


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise RegistryError("NextToken is not a token this registry handed out; start again without it")


def as_utc(value) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def group_arn(name: str) -> str:
    return f"{ARN_PREFIX}model-package-group/{name}"


def package_arn(package: Package) -> str:
    suffix = f"{package.name}/{package.version}" if package.version is not None else package.name
    return f"{ARN_PREFIX}model-package/{suffix}"


def card_arn(name: str) -> str:
    return f"{ARN_PREFIX}model-card/{name}"


def _group_name(identifier: str) -> str:
    return identifier.rsplit("model-package-group/", 1)[-1]


class Registry:
    def __init__(self, engine: Engine | None = None, store: ArtifactStore | None = None, who: str | None = None):
        self.engine = engine or open_engine()
        self.store = store or ArtifactStore(artifact_store_location())
        self.who = who or current_user()
        self.recover()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction: committed when the block ends, rolled back if it raises."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    # ---------------------------------------------------------------- groups

    def create_model_package_group(self, request: dict) -> dict:
        data = parse_request("CreateModelPackageGroup", request)
        name = data["ModelPackageGroupName"]
        try:
            with self.transaction() as session:
                session.add(
                    PackageGroup(
                        name=name,
                        description=data.get("ModelPackageGroupDescription"),
                        created_at=now(),
                        created_by=self.who,
                        last_version=0,
                    )
                )
                self.tag(session, group_arn(name), data.get("Tags", []))
        except IntegrityError:
            raise Conflict(f"model package group {name} already exists") from None
        return {"ModelPackageGroupArn": group_arn(name)}

    def ensure_model_package_group(self, name: str) -> dict:
        """Create the group unless it exists (insert-or-get): registrations racing into a new group all use it."""
        data = parse_request("CreateModelPackageGroup", {"ModelPackageGroupName": name})
        with self.transaction() as session:
            session.execute(
                _upsert(session, PackageGroup)
                .values(name=data["ModelPackageGroupName"], created_at=now(), created_by=self.who, last_version=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
        return {"ModelPackageGroupArn": group_arn(data["ModelPackageGroupName"])}

    def _group(self, session: Session, identifier: str) -> PackageGroup:
        name = _group_name(identifier)
        group = session.scalar(select(PackageGroup).where(PackageGroup.name == name))
        if group is None:
            raise NotFound(f"model package group {name} does not exist; create it with create-model-package-group")
        return group

    def _group_description(self, group: PackageGroup) -> dict:
        return {
            "ModelPackageGroupName": group.name,
            "ModelPackageGroupArn": group_arn(group.name),
            **({"ModelPackageGroupDescription": group.description} if group.description else {}),
            "CreationTime": as_utc(group.created_at).isoformat(),
            "CreatedBy": {"UserProfileName": group.created_by},
            "ModelPackageGroupStatus": "Completed",
        }

    def describe_model_package_group(self, identifier: str) -> dict:
        with self.transaction() as session:
            return self._group_description(self._group(session, identifier))

    def list_model_package_groups(self, request: dict | None = None) -> dict:
        data = parse_request("ListModelPackageGroups", request or {})
        query = select(PackageGroup)
        if data.get("NameContains"):
            query = query.where(PackageGroup.name.contains(data["NameContains"]))
        if data.get("CreationTimeAfter"):
            query = query.where(PackageGroup.created_at > as_utc(data["CreationTimeAfter"]))
        if data.get("CreationTimeBefore"):
            query = query.where(PackageGroup.created_at < as_utc(data["CreationTimeBefore"]))
        column = PackageGroup.name if data.get("SortBy") == "Name" else PackageGroup.created_at
        query = query.order_by(column.asc() if data.get("SortOrder") == "Ascending" else column.desc(), PackageGroup.id)
        with self.transaction() as session:
            groups, token = self.page(session, query, data)
            return {
                "ModelPackageGroupSummaryList": [
                    {k: v for k, v in self._group_description(g).items() if k != "CreatedBy"} for g in groups
                ],
                **token,
            }

    def delete_model_package_group(self, identifier: str) -> dict:
        with self.transaction() as session:
            group = self._group(session, identifier)
            count = session.scalar(select(func.count()).select_from(Package).where(Package.group_id == group.id))
            if count:
                raise Conflict(
                    f"model package group {group.name} still has {count} package(s); delete them first "
                    "(delete-model-package)"
                )
            session.execute(delete(Tag).where(Tag.resource_arn == group_arn(group.name)))
            session.delete(group)
        return {}

    @staticmethod
    def page(session: Session, query, data: dict) -> tuple[list, dict]:
        offset, size = _offset(data.get("NextToken")), data.get("MaxResults") or DEFAULT_PAGE
        rows = list(session.scalars(query.offset(offset).limit(size + 1)))
        more = {"NextToken": _page_token(offset + size)} if len(rows) > size else {}
        return rows[:size], more

    # ---------------------------------------------------------------- packages

    def create_model_package(self, request: dict) -> dict:
        """Record the package; one with validation profiles stays Pending until a validation run (an application
        step, modelcrate.validation) records its result with set_validation."""
        data = parse_request("CreateModelPackage", request)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        token = data.get("ClientToken")
        if token:
            existing = self._by_token(token, digest)
            if existing:
                return {"ModelPackageArn": existing}
        with self.store.staging() as staging:
            ingested = self._ingest(data, staging)
            try:
                package = self._record(data, digest, ingested)
            except IntegrityError:
                if token and (existing := self._by_token(token, digest)):
                    return {"ModelPackageArn": existing}
                raise
        return {"ModelPackageArn": package_arn(package)}

    def _by_token(self, token: str, digest: str) -> str | None:
        with self.transaction() as session:
            package = session.scalar(select(Package).where(Package.client_token == token))
            if package is None:
                return None
            if package.request_digest != digest:
                raise Conflict(
                    f"ClientToken {token} was used for a different request ({package_arn(package)}); use a new token"
                )
            return package_arn(package)

    def _ingest(self, data: dict, staging: Path) -> list[tuple[int, str, int]]:
        """Store every container's model, once it is known to be a safe model.tar.gz: claim first (committed),
        then the content-addressed artifact. Returns (container index, sha256, size) for the containers that have a
        ModelDataUrl."""
        ingested = []
        containers = data.get("InferenceSpecification", {}).get("Containers", [])
        for index, container in enumerate(containers):
            url = container.get("ModelDataUrl")
            if not url:
                continue
            where = staging / str(index)
            where.mkdir()
            try:
                source = fetch_source(url, where)
                check_model_archive(source, f"ModelDataUrl {url}")
            except ArtifactError as exc:
                raise RegistryError(str(exc)) from None
            sha256 = file_digest(source)
            with self.transaction() as session:
                _lock_claims(session)
                session.add(ArtifactClaim(sha256=sha256, owner=_owner(), created_at=now()))
            stored = self.store.put(source, sha256, staging)
            ingested.append((index, sha256, stored.size))
        return ingested

    def _record(self, data: dict, digest: str, ingested: list[tuple[int, str, int]]) -> Package:
        """One transaction: the version number, the package, its artifacts; the claims are released."""
        moment = now()
        description = copy.deepcopy(data)
        for key in ("ClientToken", "Tags"):
            description.pop(key, None)
        containers = description.get("InferenceSpecification", {}).get("Containers", [])
        for index, sha256, _ in ingested:
            containers[index]["ModelDataUrl"] = self.store.uri_for(sha256)
        validating = bool(data.get("ValidationSpecification", {}).get("ValidationProfiles")) and (
            data.get("SkipModelValidation") != "All"
        )
        with self.transaction() as session:
            group_name = data.get("ModelPackageGroupName")
            if group_name:
                group = self._group(session, group_name)
                # The row lock serialises concurrent registrations in a group: each gets the next number.
                version = session.execute(
                    update(PackageGroup)
                    .where(PackageGroup.id == group.id)
                    .values(last_version=PackageGroup.last_version + 1)
                    .returning(PackageGroup.last_version)
                ).scalar_one()
                name, approval = group.name, data.get("ModelApprovalStatus") or PENDING
            else:
                group, version, name, approval = None, None, data["ModelPackageName"], None
            description.update(
                ModelPackageName=name,
                CreationTime=moment.isoformat(),
                CreatedBy={"UserProfileName": self.who},
                ModelPackageStatusDetails={
                    "ValidationStatuses": [
                        {"Name": p["ProfileName"], "Status": "NotStarted"}
                        for p in data.get("ValidationSpecification", {}).get("ValidationProfiles", [])
                    ]
                },
                ModelDataDigests=[sha for _, sha, _ in ingested],
            )
            if version is not None:
                description["ModelPackageVersion"] = version
            package = Package(
                group_id=group.id if group else None,
                version=version,
                name=name,
                unversioned_name=None if group else name,
                description=description,
                approval_status=approval,
                package_status="Pending" if validating else "Completed",
                client_token=data.get("ClientToken"),
                request_digest=digest,
                created_at=moment,
                created_by=self.who,
                modified_at=moment,
            )
            session.add(package)
            session.flush()
            for index, sha256, size in ingested:
                _ensure_artifact(session, sha256, self.store.uri_for(sha256), size)
                session.add(PackageArtifact(package_id=package.id, container_index=index, sha256=sha256))
            session.execute(
                delete(ArtifactClaim).where(
                    ArtifactClaim.owner == _owner(), ArtifactClaim.sha256.in_([s for _, s, _ in ingested])
                )
            )
            self.tag(session, package_arn(package), data.get("Tags", []))
            self._history(session, package, "Created", None, package_arn(package), None)
            if approval:
                self._history(session, package, "ModelApprovalStatus", None, approval, data.get("ApprovalDescription"))
        return package

    def _history(self, session: Session, package: Package, field: str, old, new, reason) -> None:
        session.add(
            HistoryEntry(package_id=package.id, at=now(), who=self.who, field=field, old=old, new=new, reason=reason)
        )

    def find_package(self, session: Session, identifier: str) -> Package:
        """By ARN, ``group/version``, or an unversioned package's name."""
        key = identifier.rsplit(":model-package/", 1)[-1]
        group_name, _, version = key.partition("/")
        if version:
            if not version.isdigit():
                raise RegistryError(f"{identifier}: the version after '/' must be a number")
            query = select(Package).where(Package.name == group_name, Package.version == int(version))
        else:
            query = select(Package).where(Package.unversioned_name == key)
        package = session.scalar(query)
        if package is None:
            raise NotFound(f"model package {identifier} does not exist")
        return package

    def _describe(self, package: Package) -> dict:
        description = copy.deepcopy(package.description)
        description.update(
            ModelPackageArn=package_arn(package),
            ModelPackageStatus=package.package_status,
            LastModifiedTime=as_utc(package.modified_at).isoformat(),
        )
        if package.approval_status:
            description["ModelApprovalStatus"] = package.approval_status
        if package.group_id is not None:
            description["ModelPackageGroupName"] = package.name
        return description

    def describe_model_package(self, identifier: str) -> dict:
        with self.transaction() as session:
            return self._describe(self.find_package(session, identifier))

    def list_model_packages(self, request: dict | None = None) -> dict:
        data = parse_request("ListModelPackages", request or {})
        query = select(Package)
        if data.get("NameContains"):
            query = query.where(Package.name.contains(data["NameContains"]))
        if data.get("ModelApprovalStatus"):
            query = query.where(Package.approval_status == data["ModelApprovalStatus"])
        if data.get("ModelPackageGroupName"):
            query = query.where(
                Package.name == _group_name(data["ModelPackageGroupName"]), Package.version.is_not(None)
            )
        kind = data.get("ModelPackageType", "Both")
        if kind == "Versioned":
            query = query.where(Package.version.is_not(None))
        elif kind == "Unversioned":
            query = query.where(Package.version.is_(None))
        if data.get("CreationTimeAfter"):
            query = query.where(Package.created_at > as_utc(data["CreationTimeAfter"]))
        if data.get("CreationTimeBefore"):
            query = query.where(Package.created_at < as_utc(data["CreationTimeBefore"]))
        ascending = data.get("SortOrder") == "Ascending"
        if data.get("SortBy") == "Name":
            order = [Package.name.asc() if ascending else Package.name.desc(), Package.version.asc()]
        else:
            order = [Package.created_at.asc() if ascending else Package.created_at.desc()]
        query = query.order_by(*order, Package.id.asc() if ascending else Package.id.desc())
        summary_keys = (
            "ModelPackageName",
            "ModelPackageGroupName",
            "ModelPackageVersion",
            "ModelPackageArn",
            "ModelPackageDescription",
            "CreationTime",
            "ModelPackageStatus",
            "ModelApprovalStatus",
        )
        with self.transaction() as session:
            packages, token = self.page(session, query, data)
            summaries = []
            for package in packages:
                described = self._describe(package)
                summaries.append({k: described[k] for k in summary_keys if k in described})
            return {"ModelPackageSummaryList": summaries, **token}

    def update_model_package(self, request: dict) -> dict:
        data = parse_request("UpdateModelPackage", request)
        with self.store.staging() as staging:
            ingested = self._ingest(data, staging) if "InferenceSpecification" in data else []
            with self.transaction() as session:
                package = self.find_package(session, data["ModelPackageArn"])
                self._apply_update(session, package, data, ingested)
                arn = package_arn(package)
        return {"ModelPackageArn": arn}

    def _apply_update(self, session: Session, package: Package, data: dict, ingested) -> None:
        description = copy.deepcopy(package.description)
        status = data.get("ModelApprovalStatus")
        if status and status != package.approval_status:
            if package.version is None:
                raise RegistryError("ModelApprovalStatus: unversioned packages have no approval status")
            if status == "Approved" and package.package_status != "Completed":
                reason = _validation_failure(description)
                raise Conflict(
                    f"{package_arn(package)} cannot be approved while its status is {package.package_status}"
                    + (f" ({reason})" if reason else "")
                )
            self._history(
                session,
                package,
                "ModelApprovalStatus",
                package.approval_status,
                status,
                data.get("ApprovalDescription"),
            )
            package.approval_status = status
        if "ApprovalDescription" in data:
            description["ApprovalDescription"] = data["ApprovalDescription"]
        metadata = {**description.get("CustomerMetadataProperties", {}), **data.get("CustomerMetadataProperties", {})}
        for key in data.get("CustomerMetadataPropertiesToRemove", []):
            metadata.pop(key, None)
        if metadata or "CustomerMetadataProperties" in description:
            description["CustomerMetadataProperties"] = metadata
        additions = data.get("AdditionalInferenceSpecificationsToAdd", [])
        if additions:
            present = {spec["Name"] for spec in description.get("AdditionalInferenceSpecifications", [])}
            clash = sorted(present & {spec["Name"] for spec in additions})
            if clash:
                raise Conflict(f"AdditionalInferenceSpecificationsToAdd: {', '.join(clash)} already exist(s)")
            description["AdditionalInferenceSpecifications"] = [
                *description.get("AdditionalInferenceSpecifications", []),
                *additions,
            ]
        if "InferenceSpecification" in data:
            specification = copy.deepcopy(data["InferenceSpecification"])
            for index, sha256, size in ingested:
                specification["Containers"][index]["ModelDataUrl"] = self.store.uri_for(sha256)
                _ensure_artifact(session, sha256, self.store.uri_for(sha256), size)
            session.execute(delete(PackageArtifact).where(PackageArtifact.package_id == package.id))
            session.flush()
            for index, sha256, _ in ingested:
                session.add(PackageArtifact(package_id=package.id, container_index=index, sha256=sha256))
            session.execute(delete(ArtifactClaim).where(ArtifactClaim.owner == _owner()))
            description["InferenceSpecification"] = specification
            description["ModelDataDigests"] = [sha for _, sha, _ in ingested]
        if "SourceUri" in data:
            description["SourceUri"] = data["SourceUri"]
        if "ModelLifeCycle" in data:
            old = description.get("ModelLifeCycle", {})
            new = data["ModelLifeCycle"]
            self._history(session, package, "ModelLifeCycle", _stage(old), _stage(new), new.get("StageDescription"))
            description["ModelLifeCycle"] = new
        package.description = description
        package.modified_at = now()

    def set_validation(self, identifier: str, package_status: str, statuses: list[dict]) -> None:
        """Record a validation run's progress or result (the package's status and its ValidationStatuses)."""
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            if package.package_status != package_status:
                reason = "; ".join(s["FailureReason"] for s in statuses if s.get("FailureReason")) or None
                self._history(session, package, "ModelPackageStatus", package.package_status, package_status, reason)
            description = copy.deepcopy(package.description)
            description["ModelPackageStatusDetails"] = {"ValidationStatuses": statuses}
            package.description = description
            package.package_status = package_status
            package.modified_at = now()

    def delete_model_package(self, identifier: str) -> dict:
        """Delete a package and the artifacts no other package uses; refused while a card documents it (a card's
        link must name a registered package)."""
        unused = []
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            # Locked before the cards are read: a card being linked to it meanwhile (it reads the package FOR SHARE)
            # either is seen here or finds the package gone.
            session.refresh(package, with_for_update=True)
            cards = documenting_cards(session, package_arn(package))
            if cards:
                shown = f"{package.name}/{package.version}" if package.version is not None else package.name
                raise Conflict(
                    f"model package {shown} is documented by model card {', '.join(cards)}: delete the card first "
                    f"(modelcrate card delete {cards[0]}), or link it to another version (card update --content; "
                    "only a card whose model_overview.model_id names its model can move), then delete the package"
                )
            shas = set(session.scalars(select(PackageArtifact.sha256).where(PackageArtifact.package_id == package.id)))
            session.execute(delete(HistoryEntry).where(HistoryEntry.package_id == package.id))
            session.execute(delete(PackageArtifact).where(PackageArtifact.package_id == package.id))
            session.execute(delete(Tag).where(Tag.resource_arn == package_arn(package)))
            session.delete(package)
            session.flush()
            for sha in shas:
                users = select(func.count()).select_from(PackageArtifact).where(PackageArtifact.sha256 == sha)
                if not session.scalar(users):
                    artifact = session.get(Artifact, sha)
                    unused.append(artifact.uri)
                    session.delete(artifact)
        for uri in unused:  # after the commit: a failed transaction must not lose a file a package needs
            self.store.delete(uri)
        return {}

    def history(self, identifier: str) -> dict:
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            entries = session.scalars(
                select(HistoryEntry).where(HistoryEntry.package_id == package.id).order_by(HistoryEntry.id)
            )
            return {
                "ModelPackageArn": package_arn(package),
                "History": [
                    {
                        "Time": as_utc(e.at).isoformat(),
                        "Who": e.who,
                        "Field": e.field,
                        **({"From": e.old} if e.old is not None else {}),
                        **({"To": e.new} if e.new is not None else {}),
                        **({"Reason": e.reason} if e.reason else {}),
                    }
                    for e in entries
                ],
            }

    # ---------------------------------------------------------------- tags

    def add_tags(self, request: dict) -> dict:
        """AddTags: a key already there takes the new value."""
        data = parse_request("AddTags", request)
        with self.transaction() as session:
            self.tag(session, self._tagged_resource(session, data["ResourceArn"]), data["Tags"])
        return {"Tags": data["Tags"]}

    def list_tags(self, request: dict) -> dict:
        data = parse_request("ListTags", request)
        with self.transaction() as session:
            arn = self._tagged_resource(session, data["ResourceArn"])
            query = select(Tag).where(Tag.resource_arn == arn).order_by(Tag.key)
            tags, token = self.page(session, query, data)
            return {"Tags": [{"Key": tag.key, "Value": tag.value} for tag in tags], **token}

    def delete_tags(self, request: dict) -> dict:
        data = parse_request("DeleteTags", request)
        with self.transaction() as session:
            arn = self._tagged_resource(session, data["ResourceArn"])
            session.execute(delete(Tag).where(Tag.resource_arn == arn, Tag.key.in_(data["TagKeys"])))
        return {}

    def _tagged_resource(self, session: Session, arn: str) -> str:
        """The ARN of the group, package or card ``arn`` names, as this registry writes it."""
        kind, _, name = arn.rsplit(":", 1)[-1].partition("/")
        if kind == "model-package-group":
            return group_arn(self._group(session, name).name)
        if kind == "model-package":
            return package_arn(self.find_package(session, arn))
        if kind == "model-card":
            if session.scalar(select(ModelCard.id).where(ModelCard.name == name)) is None:
                raise NotFound(f"model card {name} does not exist")
            return card_arn(name)
        raise NotFound(f"{arn} is not the ARN of a model package group, model package or model card")

    @staticmethod
    def tag(session: Session, arn: str, tags: list[dict]) -> None:
        """Give ``arn`` these tags (a key it has takes the new value), within SageMaker's limit per resource."""
        for tag in tags:
            session.execute(
                _upsert(session, Tag)
                .values(resource_arn=arn, key=tag["Key"], value=tag["Value"])
                .on_conflict_do_update(index_elements=["resource_arn", "key"], set_={"value": tag["Value"]})
            )
        count = session.scalar(select(func.count()).select_from(Tag).where(Tag.resource_arn == arn))
        if count > MAX_TAGS:
            raise RegistryError(f"Tags: {arn} would have {count} tags (allowed: at most {MAX_TAGS})")

    # ---------------------------------------------------------------- artifacts

    def verified_artifacts(self, identifier: str, into: Path) -> dict[int, Path]:
        """Each container's model.tar.gz (by container index), written into ``into/<index>/`` once its bytes
        matched the sha256 registered."""
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            links = session.scalars(select(PackageArtifact).where(PackageArtifact.package_id == package.id)).all()
            artifacts = {link.container_index: session.get(Artifact, link.sha256) for link in links}
        targets = {}
        for index, artifact in sorted(artifacts.items()):
            target = into / str(index) / "model.tar.gz"
            target.parent.mkdir(parents=True)
            target.write_bytes(self.store.read(artifact.uri, artifact.sha256))
            targets[index] = target
        return targets

    def model_directory(self, identifier: str, into: Path, container: int = 0, approved_only: bool = False) -> Path:
        """Unpack a package's model (checked against its sha256) into ``into``."""
        artifact = self._artifact(identifier, container, approved_only)
        return self.store.unpack(artifact.uri, artifact.sha256, into)

    def _artifact(self, identifier: str, container: int, approved_only: bool) -> Artifact:
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            if approved_only and package.version is not None and package.approval_status != "Approved":
                raise Conflict(
                    f"{package_arn(package)} is {package.approval_status}: only an Approved package may be "
                    "exported or deployed (update-model-package --model-approval-status Approved)"
                )
            link = session.get(PackageArtifact, (package.id, container))
            if link is None:
                raise NotFound(f"{package_arn(package)} has no model artifact for container {container}")
            return session.get(Artifact, link.sha256)

    def export_model(self, package: str, target: Path) -> str:
        """Replace ``target`` with the model of ``package`` (``GROUP``: its latest Approved version;
        ``GROUP/N`` or an ARN: that version, which must be Approved). Returns the package's ARN."""
        arn = self.resolve(package)
        staging = Path(tempfile.mkdtemp(prefix=".model-", dir=target.parent))
        try:
            self.model_directory(arn, staging, approved_only=True)
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=".old-model-", dir=target.parent))
                target.rename(retired / "model")
                staging.rename(target)
                shutil.rmtree(retired)
            else:
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        with self.transaction() as session:
            return package_arn(self.find_package(session, arn))

    def resolve(self, package: str) -> str:
        """``GROUP``: the ARN of its latest Approved version; ``GROUP/N`` or an ARN: as given."""
        key = package.rsplit(":model-package/", 1)[-1]
        return package if "/" in key else self.latest_approved(key)

    def previous_version(self, identifier: str) -> str | None:
        """The ARN of the highest version below this one still registered in its group; None for version 1, an
        unversioned package, or when every version before it was deleted."""
        with self.transaction() as session:
            package = self.find_package(session, identifier)
            if package.version is None:
                return None
            previous = session.scalar(
                select(Package)
                .where(Package.group_id == package.group_id, Package.version < package.version)
                .order_by(Package.version.desc())
                .limit(1)
            )
            return package_arn(previous) if previous else None

    def latest_approved(self, group: str) -> str:
        """The ARN of a group's highest Approved version."""
        with self.transaction() as session:
            group_row = self._group(session, group)
            package = session.scalar(
                select(Package)
                .where(Package.group_id == group_row.id, Package.approval_status == "Approved")
                .order_by(Package.version.desc())
                .limit(1)
            )
            if package is None:
                raise NotFound(f"model package group {group_row.name} has no Approved version yet")
            return package_arn(package)

    def recover(self) -> int:
        """Finish what killed registrations left: their staging directories are removed, and the ``.incoming-*``
        copies of earlier versions that nobody is writing; an artifact claimed by a dead process and recorded by no
        package is deleted, then the claim. Returns how many artifacts were removed."""
        self.store.recover_staging(_alive)
        removed = 0
        with self.transaction() as session:
            _lock_claims(session)
            claims = list(session.scalars(select(ArtifactClaim)))
            live = {c.sha256 for c in claims if _alive(c.owner)}
            self.store.sweep_incoming(live)
            for claim in claims:
                if claim.sha256 in live:
                    continue  # someone is storing these bytes right now
                if session.get(Artifact, claim.sha256) is None:
                    self.store.delete(self.store.uri_for(claim.sha256))
                    removed += 1
                session.delete(claim)
        return removed


def documenting_cards(session: Session, arn: str) -> list[str]:
    """The names of the cards whose latest version links to the package ``arn``
    (``model_package_details.model_package_arn``)."""
    linked = ModelCardVersion.content["model_package_details"]["model_package_arn"].as_string()
    latest = (ModelCardVersion.card_id == ModelCard.id) & (ModelCardVersion.version == ModelCard.latest_version)
    query = select(ModelCard.name).join(ModelCardVersion, latest).where(linked == arn).order_by(ModelCard.name)
    return list(session.scalars(query))


def _lock_claims(session: Session) -> None:
    """Claims are taken and recovered one transaction at a time (SQLite's BEGIN IMMEDIATE already does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7210532)"))


def _upsert(session: Session, table):
    """An INSERT that can take ON CONFLICT, in the session's dialect (SQLite or PostgreSQL)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def _ensure_artifact(session: Session, sha256: str, uri: str, size: int) -> None:
    """Insert the artifact's row unless a concurrent registration of the same bytes already did."""
    session.execute(_upsert(session, Artifact).values(sha256=sha256, uri=uri, size=size).on_conflict_do_nothing())


def _alive(owner: str) -> bool:
    """Whether a claim's owner may still be registering: another host is given the benefit of the doubt."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _stage(lifecycle: dict) -> str | None:
    return f"{lifecycle['Stage']}/{lifecycle['StageStatus']}" if lifecycle else None


def _validation_failure(description: dict) -> str | None:
    statuses = description.get("ModelPackageStatusDetails", {}).get("ValidationStatuses", [])
    return "; ".join(s["FailureReason"] for s in statuses if s.get("FailureReason")) or None
