"""audio seconds: the seconds of audio each deployment heard (transcriptions, translations) or spoke, per minute

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the minutes recorded before this column counted no audio
    with op.batch_alter_table("usage_minutes") as table:
        table.add_column(sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_minutes") as table:
        table.drop_column("audio_seconds")
