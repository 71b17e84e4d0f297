"""Model cards: cards, their immutable versions, their export jobs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_cards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("model_id", sa.String(2048), unique=True),
        sa.Column("created_at", WHEN, nullable=False, index=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("modified_at", WHEN, nullable=False),
        sa.Column("modified_by", sa.String(256), nullable=False),
    )
    op.create_table(
        "model_card_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "card_id", sa.Integer, sa.ForeignKey("model_cards.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.UniqueConstraint("card_id", "version"),
    )
    op.create_table(
        "model_card_exports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "card_id", sa.Integer, sa.ForeignKey("model_cards.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("location", sa.String(1024)),
        sa.Column("failure_reason", sa.Text),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("modified_at", WHEN, nullable=False),
        sa.UniqueConstraint("card_id", "name"),
    )


def downgrade() -> None:
    for table in ("model_card_exports", "model_card_versions", "model_cards"):
        op.drop_table(table)
