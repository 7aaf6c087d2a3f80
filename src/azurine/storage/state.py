"""Reads and writes of accounts and deployments, handed out as plain frozen values."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.tables import Account, Deployment


def new_key() -> str:
    """A key shaped as Azure's: 32 hexadecimal characters."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class AccountRecord:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    kind: str
    location: str
    custom_subdomain: str | None
    key1: str
    key2: str

    def key_matches(self, candidate: str) -> bool:
        return any(secrets.compare_digest(candidate.encode(), k.encode()) for k in (self.key1, self.key2))


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    account_id: str
    name: str
    model_format: str
    model_name: str
    model_version: str
    sku_name: str
    sku_capacity: int
    rai_policy_name: str
    upstream_url: str | None
    upstream_model: str | None
    upstream_api_key: str | None
    created_at: float
    updated_at: float


def _account(row: Account) -> AccountRecord:
    return AccountRecord(
        id=row.id, name=row.name, subscription_id=row.subscription_id, resource_group=row.resource_group,
        kind=row.kind, location=row.location, custom_subdomain=row.custom_subdomain,
        key1=row.key1, key2=row.key2,
    )


def _deployment(row: Deployment) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id, account_id=row.account_id, name=row.name, model_format=row.model_format,
        model_name=row.model_name, model_version=row.model_version, sku_name=row.sku_name,
        sku_capacity=row.sku_capacity, rai_policy_name=row.rai_policy_name,
        upstream_url=row.upstream_url, upstream_model=row.upstream_model,
        upstream_api_key=row.upstream_api_key,
        created_at=row.created_at.timestamp(), updated_at=row.updated_at.timestamp(),
    )


class StateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def has_accounts(self) -> bool:
        with self._sessions() as session:
            return bool(session.scalar(select(func.count()).select_from(Account)))

    def account_named(self, name: str) -> AccountRecord | None:
        """The account whose name or custom subdomain is `name` (both case-insensitive, as DNS is)."""
        lowered = name.lower()
        with self._sessions() as session:
            row = session.scalar(
                select(Account).where(
                    (func.lower(Account.name) == lowered) | (func.lower(Account.custom_subdomain) == lowered)
                )
            )
            return _account(row) if row else None

    def first_account(self) -> AccountRecord | None:
        with self._sessions() as session:
            row = session.scalar(select(Account).order_by(Account.created_at).limit(1))
            return _account(row) if row else None

    def create_account(
        self, name: str, *, location: str, subscription_id: str, resource_group: str,
        kind: str = "OpenAI", key1: str | None = None, custom_subdomain: str | None = None,
    ) -> AccountRecord:
        with self._sessions.begin() as session:
            row = Account(
                id=str(uuid.uuid4()), name=name, subscription_id=subscription_id,
                resource_group=resource_group, kind=kind, location=location, sku_name="S0",
                custom_subdomain=custom_subdomain, key1=key1 or new_key(), key2=new_key(), properties={},
            )
            session.add(row)
            session.flush()
            return _account(row)

    def deployment(self, account_id: str, name: str) -> DeploymentRecord | None:
        with self._sessions() as session:
            row = session.scalar(
                select(Deployment).where(Deployment.account_id == account_id, Deployment.name == name)
            )
            return _deployment(row) if row else None

    def deployments(self, account_id: str) -> list[DeploymentRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Deployment).where(Deployment.account_id == account_id).order_by(Deployment.name)
            )
            return [_deployment(r) for r in rows]

    def create_deployment(
        self, account_id: str, name: str, *, model_name: str, model_version: str, model_format: str,
        sku_name: str, sku_capacity: int, upstream_url: str | None = None,
        upstream_model: str | None = None, upstream_api_key: str | None = None,
    ) -> DeploymentRecord:
        with self._sessions.begin() as session:
            row = Deployment(
                id=str(uuid.uuid4()), account_id=account_id, name=name, model_format=model_format,
                model_name=model_name, model_version=model_version, sku_name=sku_name,
                sku_capacity=sku_capacity, rai_policy_name="Microsoft.DefaultV2",
                version_upgrade_option="OnceNewDefaultVersionAvailable", upstream_url=upstream_url,
                upstream_model=upstream_model, upstream_api_key=upstream_api_key,
            )
            session.add(row)
            session.flush()
            return _deployment(row)
