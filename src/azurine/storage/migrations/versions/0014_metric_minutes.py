"""metric minutes: Azure Monitor metrics per account, metric, minute and dimension values

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_minutes",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("dimensions", sa.String(1024), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("total", sa.Float(), nullable=False, server_default="0"),
        sa.Column("minimum", sa.Float(), nullable=False, server_default="0"),
        sa.Column("maximum", sa.Float(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("account_id", "metric", "minute", "dimensions"),
    )


def downgrade() -> None:
    op.drop_table("metric_minutes")
