"""The registry's tables (SQLAlchemy 2), model cards' included (one database, one migration history). Requests
and descriptions are kept as SageMaker-shaped JSON; the columns are what the registry queries, constrains or
changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PackageGroup(Base):
    __tablename__ = "model_package_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(256))
    # The last version handed out: incremented under the group row's lock, so numbers are never shared or reused.
    last_version: Mapped[int] = mapped_column(Integer, default=0)


class Package(Base):
    __tablename__ = "model_packages"
    __table_args__ = (UniqueConstraint("group_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("model_package_groups.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63), index=True)  # the group's name for versioned packages
    unversioned_name: Mapped[str | None] = mapped_column(String(63), unique=True)
    description: Mapped[dict] = mapped_column(JSON)  # the DescribeModelPackage answer, less the live fields
    approval_status: Mapped[str | None] = mapped_column(String(32), index=True)
    package_status: Mapped[str] = mapped_column(String(32))
    client_token: Mapped[str | None] = mapped_column(String(36), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_by: Mapped[str] = mapped_column(String(256))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Artifact(Base):
    """A model.tar.gz in the artifact store, by content; packages refer to it by its sha256."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(Integer)


class PackageArtifact(Base):
    __tablename__ = "package_artifacts"

    package_id: Mapped[int] = mapped_column(ForeignKey("model_packages.id", ondelete="CASCADE"), primary_key=True)
    container_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"), index=True)


class ArtifactClaim(Base):
    """Written and committed before an artifact is stored; removed in the transaction that records the package.
    A claim whose owner died marks an artifact that may have no package: recovery deletes it."""

    __tablename__ = "artifact_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(256))  # host:pid
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HistoryEntry(Base):
    """Append-only: every change of approval status, lifecycle stage or package status."""

    __tablename__ = "package_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("model_packages.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    who: Mapped[str] = mapped_column(String(256))
    field: Mapped[str] = mapped_column(String(64))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)


class Tag(Base):
    """One tag of a group, package or card, by the resource's ARN: Create*'s Tags, AddTags, ListTags, DeleteTags."""

    __tablename__ = "tags"

    resource_arn: Mapped[str] = mapped_column(String(2048), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class ModelCard(Base):
    __tablename__ = "model_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    # The last version handed out: incremented under the card row's lock, so two updates never share a number.
    latest_version: Mapped[int] = mapped_column(Integer)
    # model_overview.model_id, else the linked package's ARN: unique, so a model has at most one card.
    model_id: Mapped[str | None] = mapped_column(String(2048), unique=True)
    # The card version this one was cloned from {"ModelCardName", "ModelCardVersion"} and the package version it
    # documented {"ModelPackageArn", "ModelPackageVersion"} when it did; None for a card not cloned.
    carried_over_from: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_by: Mapped[str] = mapped_column(String(256))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modified_by: Mapped[str] = mapped_column(String(256))


class ModelCardVersion(Base):
    """Immutable: a content change adds a row, nothing updates one."""

    __tablename__ = "model_card_versions"
    __table_args__ = (UniqueConstraint("card_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("model_cards.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(256))


class ModelCardExport(Base):
    __tablename__ = "model_card_exports"
    __table_args__ = (UniqueConstraint("card_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("model_cards.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))  # InProgress | Completed | Failed
    location: Mapped[str | None] = mapped_column(String(1024))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
