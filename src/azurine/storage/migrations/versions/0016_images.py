"""images: generated images kept for their signed links, and deployments served from the operator's weights

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("model_path", sa.String(2048), nullable=True))
        table.add_column(sa.Column("engine_options", sa.JSON(), nullable=True))
    op.create_table(
        "generated_images",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_generated_images_expires_at", "generated_images", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_generated_images_expires_at", "generated_images")
    op.drop_table("generated_images")
    with op.batch_alter_table("deployments") as table:
        table.drop_column("engine_options")
        table.drop_column("model_path")
