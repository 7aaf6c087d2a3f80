"""The built-in issuer's directory: principals and their client secrets, handed out as plain frozen values.

A secret is stored only as its SHA-256 and found by it, so checking one is an indexed lookup that takes the
same time whichever secret was sent.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.tables import PrincipalRow, PrincipalSecret

KINDS = ("User", "ServicePrincipal", "ManagedIdentity")


class PrincipalExists(ValueError):
    pass


@dataclass(frozen=True)
class PrincipalRecord:
    object_id: str
    kind: str
    display_name: str
    app_id: str | None
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class SecretRecord:
    key_id: str
    object_id: str
    hint: str
    expires_at: datetime


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _principal(row: PrincipalRow) -> PrincipalRecord:
    return PrincipalRecord(row.object_id, row.kind, row.display_name, row.app_id, row.enabled,
                           _aware(row.created_at))


class PrincipalStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def create(self, kind: str, display_name: str) -> PrincipalRecord:
        if kind not in KINDS:
            raise ValueError(f"a principal is one of {', '.join(KINDS)}, not {kind}")
        with self._sessions() as session:
            taken = session.scalar(select(PrincipalRow).where(PrincipalRow.display_name == display_name))
        if taken is not None:
            raise PrincipalExists(f"a principal named {display_name!r} exists already ({taken.object_id})")
        app_id = str(uuid.uuid4()) if kind != "User" else None
        row = PrincipalRow(object_id=str(uuid.uuid4()), kind=kind, display_name=display_name, app_id=app_id,
                           enabled=True, created_at=datetime.now(UTC))
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                return _principal(row)
        except IntegrityError as error:
            raise PrincipalExists(f"a principal named {display_name!r} exists already") from error

    def get(self, name_or_id: str) -> PrincipalRecord | None:
        """A principal by object id, client (app) id or display name."""
        with self._sessions() as session:
            row = session.get(PrincipalRow, name_or_id.lower()) or session.scalar(
                select(PrincipalRow).where((PrincipalRow.app_id == name_or_id.lower())
                                           | (PrincipalRow.display_name == name_or_id)))
            return _principal(row) if row else None

    def list(self) -> list[PrincipalRecord]:
        with self._sessions() as session:
            return [_principal(row) for row in session.scalars(select(PrincipalRow).order_by(PrincipalRow.created_at))]

    def delete(self, object_id: str) -> bool:
        with self._sessions.begin() as session:
            for secret in session.scalars(select(PrincipalSecret).where(PrincipalSecret.object_id == object_id)):
                session.delete(secret)
            row = session.get(PrincipalRow, object_id)
            if row is None:
                return False
            session.delete(row)
            return True

    def set_enabled(self, object_id: str, enabled: bool) -> None:
        with self._sessions.begin() as session:
            row = session.get(PrincipalRow, object_id)
            if row is not None:
                row.enabled = enabled

    def add_secret(self, object_id: str, secret: str, lifetime: timedelta) -> SecretRecord:
        now = datetime.now(UTC)
        row = PrincipalSecret(key_id=str(uuid.uuid4()), object_id=object_id, hint=secret[:3],
                              secret_sha256=digest(secret), created_at=now, expires_at=now + lifetime)
        with self._sessions.begin() as session:
            session.add(row)
        return SecretRecord(row.key_id, object_id, row.hint, now + lifetime)

    def secrets(self, object_id: str) -> list[SecretRecord]:
        with self._sessions() as session:
            rows = session.scalars(select(PrincipalSecret).where(PrincipalSecret.object_id == object_id)
                                   .order_by(PrincipalSecret.created_at))
            return [SecretRecord(r.key_id, r.object_id, r.hint, _aware(r.expires_at)) for r in rows]

    def remove_secret(self, key_id: str) -> bool:
        with self._sessions.begin() as session:
            row = session.get(PrincipalSecret, key_id)
            if row is None:
                return False
            session.delete(row)
            return True

    def by_secret(self, secret: str) -> tuple[PrincipalRecord, SecretRecord] | None:
        """The principal holding `secret`, and the secret's record, whether or not it has expired."""
        with self._sessions() as session:
            found = session.scalar(select(PrincipalSecret).where(PrincipalSecret.secret_sha256 == digest(secret)))
            if found is None:
                return None
            owner = session.get(PrincipalRow, found.object_id)
            if owner is None:
                return None
            return _principal(owner), SecretRecord(found.key_id, found.object_id, found.hint,
                                                   _aware(found.expires_at))
