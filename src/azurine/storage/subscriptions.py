"""Subscriptions and their resource groups: the ARM platform resources accounts live in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError

from azurine.storage.database import session_factory
from azurine.storage.tables import Account, ResourceGroupRow, SubscriptionRow

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "azurine"


@dataclass(frozen=True)
class SubscriptionRecord:
    id: str
    display_name: str
    tenant_id: str
    state: str
    created_at: datetime


@dataclass(frozen=True)
class GroupRecord:
    id: str
    subscription_id: str
    name: str
    location: str
    tags: dict[str, Any] = field(default_factory=dict)


class SubscriptionInUse(Exception):
    """The subscription still holds resource groups."""


def _subscription(row: SubscriptionRow) -> SubscriptionRecord:
    return SubscriptionRecord(row.id, row.display_name, row.tenant_id, row.state, row.created_at)


def _group(row: ResourceGroupRow) -> GroupRecord:
    return GroupRecord(row.id, row.subscription_id, row.name, row.location, dict(row.tags or {}))


class SubscriptionStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = session_factory(engine)

    # subscriptions ---------------------------------------------------------------------------------------

    def subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        with self._sessions() as session:
            row = session.get(SubscriptionRow, subscription_id.lower())
            return _subscription(row) if row else None

    def subscriptions(self) -> list[SubscriptionRecord]:
        with self._sessions() as session:
            rows = session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.display_name, SubscriptionRow.id))
            return [_subscription(r) for r in rows]

    def add_subscription(self, subscription_id: str, display_name: str, tenant_id: str) -> SubscriptionRecord | None:
        """The new subscription, or None when one with that id exists."""
        try:
            with self._sessions.begin() as session:
                row = SubscriptionRow(id=subscription_id.lower(), display_name=display_name, tenant_id=tenant_id,
                                      state="Enabled")
                session.add(row)
                session.flush()
                return _subscription(row)
        except IntegrityError:
            return None

    def remove_subscription(self, subscription_id: str) -> bool:
        """Remove an empty subscription; SubscriptionInUse while it holds resource groups."""
        with self._sessions.begin() as session:
            held = session.scalar(select(func.count()).select_from(ResourceGroupRow)
                                  .where(ResourceGroupRow.subscription_id == subscription_id.lower()))
            if held:
                raise SubscriptionInUse(subscription_id)
            return session.execute(delete(SubscriptionRow)
                                   .where(SubscriptionRow.id == subscription_id.lower())).rowcount > 0

    # resource groups -------------------------------------------------------------------------------------

    def group(self, subscription_id: str, name: str) -> GroupRecord | None:
        with self._sessions() as session:
            row = session.scalar(select(ResourceGroupRow).where(
                ResourceGroupRow.subscription_id == subscription_id.lower(),
                func.lower(ResourceGroupRow.name) == name.lower()))
            return _group(row) if row else None

    def groups(self, subscription_id: str) -> list[GroupRecord]:
        with self._sessions() as session:
            rows = session.scalars(select(ResourceGroupRow)
                                   .where(ResourceGroupRow.subscription_id == subscription_id.lower())
                                   .order_by(func.lower(ResourceGroupRow.name)))
            return [_group(r) for r in rows]

    def put_group(self, subscription_id: str, name: str, location: str,
                  tags: dict[str, Any] | None) -> tuple[GroupRecord, bool]:
        """Create the group, or set the tags of the one there (tags None: leave them); True when created. Two
        creations at once leave one group: the loser reads the winner's."""
        try:
            with self._sessions.begin() as session:
                row = session.scalar(select(ResourceGroupRow).where(
                    ResourceGroupRow.subscription_id == subscription_id.lower(),
                    func.lower(ResourceGroupRow.name) == name.lower()))
                if row is not None:
                    if tags is not None:
                        row.tags = tags
                    return _group(row), False
                row = ResourceGroupRow(id=str(uuid.uuid4()), subscription_id=subscription_id.lower(), name=name,
                                       location=location, tags=tags or {})
                session.add(row)
                session.flush()
                return _group(row), True
        except IntegrityError:
            found = self.group(subscription_id, name)
            if found is None:
                raise
            return found, False

    def group_accounts(self, subscription_id: str, name: str) -> list[str]:
        """The ids of the accounts in a group."""
        with self._sessions() as session:
            return list(session.scalars(select(Account.id).where(
                func.lower(Account.subscription_id) == subscription_id.lower(),
                func.lower(Account.resource_group) == name.lower())))

    def remove_group(self, subscription_id: str, name: str) -> bool:
        with self._sessions.begin() as session:
            return session.execute(delete(ResourceGroupRow).where(
                ResourceGroupRow.subscription_id == subscription_id.lower(),
                func.lower(ResourceGroupRow.name) == name.lower())).rowcount > 0
