"""The model cards' tables, on the registry's metadata (one database, one migration history)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelcrate.registry.models import Base


class ModelCard(Base):
    __tablename__ = "model_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    # The last version handed out: incremented under the card row's lock, so two updates never share a number.
    latest_version: Mapped[int] = mapped_column(Integer)
    # model_overview.model_id, else the linked package's ARN: unique, so a model has at most one card.
    model_id: Mapped[str | None] = mapped_column(String(2048), unique=True)
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
