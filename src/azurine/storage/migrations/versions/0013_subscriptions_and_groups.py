"""subscriptions and resource groups: ARM's platform resources, which accounts were implicitly in until now

An install's existing state keeps working: every subscription an account, a quota limit or a role assignment
names becomes a subscription (the default one always), and every resource group an account is in, or a role
assignment is given at, becomes a group, in the location of its accounts (else the server's region,
`AZURINE_REGION`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-12
"""

import os
import re
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
BUILT_IN_TENANT = "00000000-0000-0000-0000-00000000a2e0"
GROUP_SCOPE = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)", re.IGNORECASE)
SUBSCRIPTION_SCOPE = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def upgrade() -> None:
    subscriptions = op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    groups = op.create_table(
        "resource_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subscription_id", sa.String(64), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(90), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_resource_groups_lower_name", "resource_groups", ["subscription_id", sa.text("lower(name)")],
                    unique=True)

    bind = op.get_bind()
    region = os.environ.get("AZURINE_REGION", "local")
    found: dict[str, str] = {DEFAULT_SUBSCRIPTION: "Azurine"}
    placed: dict[tuple[str, str], tuple[str, str]] = {}  # (subscription, lowercased group) -> (name, location)
    for subscription, group, location in bind.execute(sa.text(
            "SELECT subscription_id, resource_group, location FROM accounts ORDER BY created_at")):
        found.setdefault(subscription.lower(), subscription)
        placed.setdefault((subscription.lower(), group.lower()), (group, location))
    for (subscription,) in bind.execute(sa.text("SELECT DISTINCT subscription_id FROM quota_limits")):
        found.setdefault(subscription.lower(), subscription)
    for (scope,) in bind.execute(sa.text("SELECT scope FROM role_assignments")):
        named = SUBSCRIPTION_SCOPE.match(scope)
        if named:
            found.setdefault(named[1].lower(), named[1])
        in_group = GROUP_SCOPE.match(scope)
        if in_group:
            placed.setdefault((in_group[1].lower(), in_group[2].lower()), (in_group[2], region))
    now = datetime.now(UTC)
    op.bulk_insert(subscriptions, [
        {"id": key, "display_name": name, "tenant_id": BUILT_IN_TENANT, "state": "Enabled", "created_at": now}
        for key, name in found.items()])
    op.bulk_insert(groups, [
        {"id": str(uuid.uuid4()), "subscription_id": subscription, "name": name[:90], "location": location,
         "tags": {}, "created_at": now}
        for (subscription, _), (name, location) in placed.items()])


def downgrade() -> None:
    op.drop_index("ux_resource_groups_lower_name", table_name="resource_groups")
    op.drop_table("resource_groups")
    op.drop_table("subscriptions")
