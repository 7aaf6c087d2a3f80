"""responses: stored responses of the Responses API, each linked to the one it continues, and the input items of
each, sealed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("previous_id", sa.String(64), sa.ForeignKey("responses.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_responses_expires_at", "responses", ["expires_at"])
    op.create_index("ix_responses_previous_id", "responses", ["previous_id"])
    op.create_table(
        "response_items",
        sa.Column("response_id", sa.String(64), sa.ForeignKey("responses.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_response_items_item", "response_items", ["response_id", "item_id"])


def downgrade() -> None:
    op.drop_index("ix_response_items_item", "response_items")
    op.drop_table("response_items")
    op.drop_index("ix_responses_previous_id", "responses")
    op.drop_index("ix_responses_expires_at", "responses")
    op.drop_table("responses")
