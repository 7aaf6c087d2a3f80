"""accounts and deployments

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("resource_group", sa.String(90), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("sku_name", sa.String(16), nullable=False),
        sa.Column("custom_subdomain", sa.String(64), nullable=True, unique=True),
        sa.Column("key1", sa.String(64), nullable=False),
        sa.Column("key2", sa.String(64), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model_format", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("sku_name", sa.String(32), nullable=False),
        sa.Column("sku_capacity", sa.Integer(), nullable=False),
        sa.Column("rai_policy_name", sa.String(128), nullable=False),
        sa.Column("version_upgrade_option", sa.String(64), nullable=False),
        sa.Column("upstream_url", sa.String(2048), nullable=True),
        sa.Column("upstream_model", sa.String(256), nullable=True),
        sa.Column("upstream_api_key", sa.String(512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("deployments")
    op.drop_table("accounts")
