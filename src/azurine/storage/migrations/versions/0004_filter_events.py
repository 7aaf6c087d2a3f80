"""filter events: every prompt refused and answer cut by a blocking content filter

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "filter_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
    )
    op.create_index("ix_filter_events_account_at", "filter_events", ["account_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_filter_events_account_at", "filter_events")
    op.drop_table("filter_events")
