"""The key store built into Azurine: customer keys with versions that can be disabled and enabled again.

Each version is 32 random bytes, kept in the database wrapped by the service key; the versions wrap accounts'
data keys with AES-256-GCM. Its keys are named in an account's `keyVaultProperties` with the reserved vault
URI `LOCAL_KEY_STORE_URI`. A disabled version unwraps nothing, so the accounts whose data keys it wraps can
read none of their content until it is enabled again.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.key_providers.base import KeyRef, KeyUnavailable, Wrapped, aead_unwrap, aead_wrap
from azurine.storage.key_providers.service import ServiceKey
from azurine.storage.tables import CustomerKeyRow

LOCAL_KEY_STORE_URI = "https://keys.azurine.local/"
KEY_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")  # as Azure Key Vault names keys


@dataclass(frozen=True)
class KeyVersion:
    name: str
    version: str
    number: int
    enabled: bool
    created_at: float


def _material_aad(name: str, version: str) -> bytes:
    return f"azurine local key\x00{name}\x00{version}".encode()


def _wrap_aad(name: str, version: str) -> bytes:
    return f"azurine local key: data key\x00{name}\x00{version}".encode()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LocalKeyStore:
    def __init__(self, engine: Engine, service: ServiceKey) -> None:
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._service = service

    # -- managing keys (the `azurine keys` command) -------------------------------------------------------

    def create(self, name: str) -> KeyVersion:
        if not KEY_NAME.match(name):
            raise ValueError("a key name is 1 to 127 letters, digits and hyphens")
        with self._sessions() as session:
            if session.scalar(select(func.count()).where(CustomerKeyRow.name == name)):
                raise ValueError(f"the key '{name}' exists already; rotate it for a new version")
        return self._add_version(name)

    def rotate(self, name: str) -> KeyVersion:
        if not self.versions(name):
            raise LookupError(f"there is no key '{name}'")
        return self._add_version(name)

    def _add_version(self, name: str) -> KeyVersion:
        version = uuid.uuid4().hex
        material = self._service.seal(os.urandom(32), _material_aad(name, version))
        with self._sessions.begin() as session:
            number = int(session.scalar(select(func.coalesce(func.max(CustomerKeyRow.number), 0))
                                        .where(CustomerKeyRow.name == name)) or 0) + 1
            row = CustomerKeyRow(name=name, version=version, number=number, material=material, enabled=True,
                                 created_at=datetime.now(UTC))
            session.add(row)
            session.flush()
            return self._record(row)

    def set_enabled(self, name: str, enabled: bool, version: str | None = None) -> list[KeyVersion]:
        """Every version of the key, or the one named; what changed."""
        with self._sessions.begin() as session:
            query = update(CustomerKeyRow).where(CustomerKeyRow.name == name)
            if version:
                query = query.where(CustomerKeyRow.version == version)
            if session.execute(query.values(enabled=enabled)).rowcount == 0:
                raise LookupError(f"there is no key '{name}'" + (f" with version {version}" if version else ""))
        return [v for v in self.versions(name) if not version or v.version == version]

    def versions(self, name: str | None = None) -> list[KeyVersion]:
        with self._sessions() as session:
            query = select(CustomerKeyRow)
            if name is not None:
                query = query.where(CustomerKeyRow.name == name)
            rows = session.scalars(query.order_by(CustomerKeyRow.name, CustomerKeyRow.number)).all()
            return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: CustomerKeyRow) -> KeyVersion:
        return KeyVersion(row.name, row.version, row.number, row.enabled, _aware(row.created_at).timestamp())

    # -- the KeyProvider operations -----------------------------------------------------------------------

    def _material(self, name: str, version: str) -> tuple[str, bytes]:
        with self._sessions() as session:
            query = select(CustomerKeyRow).where(CustomerKeyRow.name == name)
            if version:
                query = query.where(CustomerKeyRow.version == version)
            row = session.scalars(query.order_by(CustomerKeyRow.number.desc()).limit(1)).first()
            if row is None:
                raise KeyUnavailable(f"the key '{name}'" + (f" version {version}" if version else "")
                                     + f" does not exist in {LOCAL_KEY_STORE_URI}")
            if not row.enabled:
                raise KeyUnavailable(f"the key '{name}' version {row.version} in {LOCAL_KEY_STORE_URI} is disabled")
            return row.version, self._service.open(row.material, _material_aad(row.name, row.version))

    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        version, key = self._material(ref.name, ref.version)
        return Wrapped(version, aead_wrap(key, data_key, _wrap_aad(ref.name, version)))

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        version, key = self._material(ref.name, ref.version)
        return aead_unwrap(key, blob, _wrap_aad(ref.name, version))

    def latest_version(self, ref: KeyRef) -> str:
        with self._sessions() as session:
            version = session.scalar(select(CustomerKeyRow.version).where(CustomerKeyRow.name == ref.name)
                                     .order_by(CustomerKeyRow.number.desc()).limit(1))
        if version is None:
            raise KeyUnavailable(f"the key '{ref.name}' does not exist in {LOCAL_KEY_STORE_URI}")
        return version
