"""fine-tuning metering: the training seconds and trained tokens of each job in the usage ledger, and the periods
each deployment existed in, from which a fine-tuned deployment's hosting hours are billed

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-14
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the minutes recorded before these columns held no training
    with op.batch_alter_table("usage_minutes") as table:
        table.add_column(sa.Column("training_seconds", sa.Float(), nullable=False, server_default="0"))
        table.add_column(sa.Column("trained_tokens", sa.BigInteger(), nullable=False, server_default="0"))
    periods = op.create_table(
        "deployment_periods",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("sku", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_deployment_periods_account", "deployment_periods", ["account_id", "deployment"])
    # the deployments that exist now have existed since they were created
    rows = op.get_bind().execute(sa.text(
        "SELECT id, account_id, name, model_name, sku_name, created_at FROM deployments")).all()
    op.bulk_insert(periods, [
        {"id": row.id, "account_id": row.account_id, "deployment": row.name, "model": row.model_name,
         "sku": row.sku_name, "started_at": _seconds(row.created_at), "ended_at": None} for row in rows])


def _seconds(value: object) -> float:
    """A stored creation time as unix seconds: SQLite hands back text, PostgreSQL a datetime."""
    if value is None:
        return datetime.now(UTC).timestamp()
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def downgrade() -> None:
    op.drop_index("ix_deployment_periods_account", "deployment_periods")
    op.drop_table("deployment_periods")
    with op.batch_alter_table("usage_minutes") as table:
        table.drop_column("trained_tokens")
        table.drop_column("training_seconds")
