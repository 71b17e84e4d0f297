"""The registry's first tables: groups, packages, artifacts, claims, history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_package_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("description", sa.String(1024)),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("last_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "model_packages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("model_package_groups.id"), index=True),
        sa.Column("version", sa.Integer),
        sa.Column("name", sa.String(63), nullable=False, index=True),
        sa.Column("unversioned_name", sa.String(63), unique=True),
        sa.Column("description", sa.JSON, nullable=False),
        sa.Column("approval_status", sa.String(32), index=True),
        sa.Column("package_status", sa.String(32), nullable=False),
        sa.Column("client_token", sa.String(36), unique=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False, index=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("modified_at", WHEN, nullable=False),
        sa.UniqueConstraint("group_id", "version"),
    )
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_table(
        "package_artifacts",
        sa.Column("package_id", sa.Integer, sa.ForeignKey("model_packages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("container_index", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), nullable=False, index=True),
    )
    op.create_table(
        "artifact_claims",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_table(
        "package_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "package_id",
            sa.Integer,
            sa.ForeignKey("model_packages.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("who", sa.String(256), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("old", sa.Text),
        sa.Column("new", sa.Text),
        sa.Column("reason", sa.Text),
    )


def downgrade() -> None:
    for table in (
        "package_history",
        "artifact_claims",
        "package_artifacts",
        "artifacts",
        "model_packages",
        "model_package_groups",
    ):
        op.drop_table(table)
