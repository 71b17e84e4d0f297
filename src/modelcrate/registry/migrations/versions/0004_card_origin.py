"""Where a card was carried over from: the card, its version and the package it documented.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_cards") as batch:
        batch.add_column(sa.Column("carried_over_from", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("model_cards") as batch:
        batch.drop_column("carried_over_from")
