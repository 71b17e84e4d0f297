"""Tags of every resource in one table, by ARN; the groups' own tags column moves there.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The registry's ARNs when this revision was written (region "local", a zero account).
GROUP_ARN_PREFIX = "arn:aws:sagemaker:local:000000000000:model-package-group/"


def upgrade() -> None:
    tags = op.create_table(
        "tags",
        sa.Column("resource_arn", sa.String(2048), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    groups = sa.table("model_package_groups", sa.column("name", sa.String), sa.column("tags", sa.JSON))
    rows = op.get_bind().execute(sa.select(groups.c.name, groups.c.tags)).all()
    # A key given twice keeps its last value, as AddTags does.
    moved = {
        (GROUP_ARN_PREFIX + name, tag["Key"]): tag["Value"] for name, group_tags in rows for tag in group_tags or []
    }
    if moved:
        op.bulk_insert(tags, [{"resource_arn": arn, "key": key, "value": value} for (arn, key), value in moved.items()])
    with op.batch_alter_table("model_package_groups") as batch:
        batch.drop_column("tags")


def downgrade() -> None:
    with op.batch_alter_table("model_package_groups") as batch:
        batch.add_column(sa.Column("tags", sa.JSON, nullable=False, server_default="[]"))
    op.drop_table("tags")
