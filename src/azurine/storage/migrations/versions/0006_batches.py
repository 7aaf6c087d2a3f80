"""batches: batch jobs and their lines, durable line by line; usage billed at each deployment's price

Revision ID: 0006
Revises: 0005_files
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("times", sa.JSON(), nullable=False),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("enqueued_tokens", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_account_created", "batches", ["account_id", "created_at"])
    op.create_table(
        "batch_lines",
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("estimate", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("finished_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_batch_lines_state", "batch_lines", ["batch_id", "state"])
    with op.batch_alter_table("usage_minutes") as table:
        table.add_column(sa.Column("billed_tokens", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_minutes") as table:
        table.drop_column("billed_tokens")
    op.drop_index("ix_batch_lines_state", "batch_lines")
    op.drop_table("batch_lines")
    op.drop_index("ix_batches_account_created", "batches")
    op.drop_index("ix_batches_status", "batches")
    op.drop_table("batches")
