"""principals: users, service principals and workload identities of the built-in issuer; signing-key retirement

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("object_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("app_id", sa.String(36), nullable=True, unique=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "principal_secrets",
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("object_id", sa.String(36), sa.ForeignKey("principals.object_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("hint", sa.String(8), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_principal_secrets_object_id", "principal_secrets", ["object_id"])
    op.create_index("ix_principal_secrets_secret_sha256", "principal_secrets", ["secret_sha256"], unique=True)
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(sa.Column("retires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("retires_at")
    op.drop_index("ix_principal_secrets_secret_sha256", "principal_secrets")
    op.drop_index("ix_principal_secrets_object_id", "principal_secrets")
    op.drop_table("principal_secrets")
    op.drop_table("principals")
