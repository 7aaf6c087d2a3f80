"""management plane: ARM properties, child resources, operations, signing keys, quota limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _arm_columns() -> list[sa.Column]:
    return [
        sa.Column("tags", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("etag", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_by", sa.String(64), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for column in _arm_columns():
            batch.add_column(column)
        batch.add_column(sa.Column("identity", sa.JSON(), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        for column in _arm_columns():
            batch.add_column(column)
        batch.add_column(sa.Column("properties", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "account_children",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("parent", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        *_arm_columns(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "kind", "parent", "name"),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quota_limits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("usage_name", sa.String(256), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.UniqueConstraint("subscription_id", "location", "usage_name"),
    )


def downgrade() -> None:
    op.drop_table("quota_limits")
    op.drop_table("signing_keys")
    op.drop_table("operations")
    op.drop_table("account_children")
    with op.batch_alter_table("deployments") as batch:
        for name in ("properties", "updated_by", "created_by", "etag", "tags"):
            batch.drop_column(name)
    with op.batch_alter_table("accounts") as batch:
        for name in ("identity", "updated_by", "created_by", "etag", "tags"):
            batch.drop_column(name)
