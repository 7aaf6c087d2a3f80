"""Accounts' data keys: one random AES-256 key per account, stored only wrapped by the key that protects it
(the service key, or the account's customer-managed key), unwrapped into memory for a short while.

The unwrapped keys live for `AZURINE_KEY_CACHE_SECONDS` (default 60) and never reach disk, so a key that is
disabled or revoked at its provider stops every replica within that time. A failure to unwrap is kept for
the same time, so an account whose key is gone does not call its provider on every request.

Changing an account's key, or rotating the key it follows, unwraps the data key and wraps it again under
the new key: nothing stored under the data key changes, so this takes a moment and needs no downtime.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from azurine import settings_table
from azurine.storage.cache import ExpiringCache
from azurine.storage.database import session_factory
from azurine.storage.key_providers import SERVICE, InvalidEncryption, KeyProviders, KeyRef, KeyUnavailable
from azurine.storage.tables import Account, DataKeyRow

log = logging.getLogger("azurine.keys")

DATA_KEY_BYTES = 32
DEFAULT_CACHE_SECONDS = 60.0


def cache_seconds() -> float:
    return float(settings_table.read("AZURINE_KEY_CACHE_SECONDS") or DEFAULT_CACHE_SECONDS)


@dataclass(frozen=True)
class DataKey:
    id: bytes  # 16 bytes, named in every blob sealed under this key
    key: bytes = b""

    def __repr__(self) -> str:  # never the key itself in a log or a traceback
        return f"DataKey(id={self.id.hex()})"


def _ref(row: DataKeyRow) -> KeyRef:
    return KeyRef(row.source, row.key_name, row.key_version, row.key_vault_uri, row.identity_client_id)


def _same_setting(row: DataKeyRow, ref: KeyRef) -> bool:
    """Whether `ref` is the key setting the row is already under (a pinned version, or following the latest)."""
    current = KeyRef(row.source, row.key_name, "" if row.follows_latest else row.key_version, row.key_vault_uri,
                     row.identity_client_id)
    return current == ref


class DataKeys:
    def __init__(self, engine: Engine, providers: KeyProviders, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.providers = providers
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._cache: ExpiringCache[str, DataKey | KeyUnavailable] = ExpiringCache(
            cache_seconds() if ttl is None else ttl, clock)

    # -- reading ------------------------------------------------------------------------------------------

    def peek(self, account_id: str) -> DataKey | KeyUnavailable | None:
        """What memory holds for the account: its key, why it is unavailable, or nothing (look it up)."""
        return self._cache.get(account_id)

    def get(self, account_id: str) -> DataKey:
        """The account's data key, made on first use under the key its settings name; `KeyUnavailable` when
        the key that wraps it cannot be used now."""
        found = self._cache.read_through(account_id, lambda: self._load_or_why(account_id))
        if isinstance(found, KeyUnavailable):
            raise found
        return found  # type: ignore[return-value]  # a load gives a key or the reason there is none

    def forget(self, account_id: str | None = None) -> None:
        self._cache.forget(account_id)

    def _load_or_why(self, account_id: str) -> DataKey | KeyUnavailable:
        """The key, or why it cannot be used now: kept alike, so that an unusable key is not asked for again on
        every request of the cache's moment."""
        try:
            return self._load(account_id)
        except KeyUnavailable as error:
            return error

    def _load(self, account_id: str) -> DataKey:
        with self._sessions() as session:
            row = session.get(DataKeyRow, account_id)
        if row is None:
            return self._create(account_id)
        key = self._unwrap(row)
        if row.follows_latest and row.source != SERVICE:
            self._follow_latest(row, key)
        return DataKey(bytes.fromhex(row.key_id), key)

    def _unwrap(self, row: DataKeyRow) -> bytes:
        ref = _ref(row)
        try:
            key = self.providers.provider(ref).unwrap(ref, row.wrapped)
        except InvalidTag:
            raise KeyUnavailable(f"the data key of the account does not unwrap with {ref.describe()}") from None
        if len(key) != DATA_KEY_BYTES:
            raise KeyUnavailable(f"{ref.describe()} unwrapped no data key")
        return key

    def _follow_latest(self, row: DataKeyRow, key: bytes) -> None:
        """A versionless key setting moves to the key's newest version, however the key was rotated."""
        ref = _ref(row).at("")
        try:
            provider = self.providers.provider(ref)
            if provider.latest_version(ref) != row.key_version:
                self._store(row.account_id, ref, key)
        except KeyUnavailable as error:
            log.warning("account %s stays on %s: %s", row.account_id, _ref(row).describe(), error)

    def _create(self, account_id: str) -> DataKey:
        with self._sessions() as session:
            properties: dict[str, Any] | None = session.scalar(select(Account.properties)
                                                               .where(Account.id == account_id))
        if properties is None:
            raise KeyUnavailable(f"there is no account {account_id} to hold a data key")
        try:
            ref = self.providers.ref_for(properties.get("encryption"))
        except InvalidEncryption as error:
            raise KeyUnavailable(str(error)) from None
        made = self._insert(account_id, ref)
        if made is not None:
            return made
        with self._sessions() as session:  # another process made it first: theirs is the one
            row = session.get(DataKeyRow, account_id)
        if row is None:
            raise KeyUnavailable(f"the data key of account {account_id} could not be stored")
        return DataKey(bytes.fromhex(row.key_id), self._unwrap(row))

    def _insert(self, account_id: str, ref: KeyRef) -> DataKey | None:
        """A new data key under `ref`, or None when the account has one already."""
        key = os.urandom(DATA_KEY_BYTES)
        key_id = uuid.uuid4().hex
        wrapped = self.providers.provider(ref).wrap(ref, key)
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                session.add(DataKeyRow(account_id=account_id, key_id=key_id, source=ref.source, key_name=ref.name,
                                       key_vault_uri=ref.vault_uri, key_version=wrapped.version,
                                       follows_latest=not ref.version, identity_client_id=ref.identity_client_id,
                                       wrapped=wrapped.blob, created_at=now, updated_at=now))
        except IntegrityError:
            with self._sessions() as session:
                if session.get(DataKeyRow, account_id) is None:  # not a race: the account is gone
                    raise
            return None
        return DataKey(bytes.fromhex(key_id), key)

    # -- changing the key that wraps ----------------------------------------------------------------------

    def probe(self, ref: KeyRef) -> None:
        """Wrap and unwrap a throwaway key with `ref`, as Azure checks access when a key is set."""
        provider = self.providers.provider(ref)
        sample = os.urandom(DATA_KEY_BYTES)
        wrapped = provider.wrap(ref, sample)
        try:
            back = provider.unwrap(ref.at(wrapped.version), wrapped.blob)
        except InvalidTag:
            back = b""
        if back != sample:
            raise KeyUnavailable(f"{ref.describe()} does not unwrap what it wrapped")

    def configure(self, account_id: str, ref: KeyRef) -> bool:
        """Put the account's data key under `ref` (made there if the account has none yet); whether it moved.

        The current key is asked afresh, never the cache: a revoked key cannot be left behind this way."""
        with self._sessions() as session:
            row = session.get(DataKeyRow, account_id)
        if row is None:
            self.forget(account_id)
            if self._insert(account_id, ref) is None:  # made meanwhile by a first seal: move that one
                return self.configure(account_id, ref)
            return True
        if _same_setting(row, ref):
            return False
        self._store(account_id, ref, self._unwrap(row))
        self.forget(account_id)
        return True

    def _store(self, account_id: str, ref: KeyRef, key: bytes) -> None:
        wrapped = self.providers.provider(ref).wrap(ref, key)
        with self._sessions.begin() as session:
            row = session.get(DataKeyRow, account_id, with_for_update=True)
            if row is None:
                return
            row.source, row.key_name, row.key_vault_uri = ref.source, ref.name, ref.vault_uri
            row.key_version, row.follows_latest = wrapped.version, not ref.version
            row.identity_client_id, row.wrapped = ref.identity_client_id, wrapped.blob
            row.updated_at = datetime.now(UTC)

    def rewrap_following(self, source: str, name: str) -> tuple[int, list[tuple[str, str]]]:
        """After a key rotates: every data key that follows its latest version, wrapped again under it. The
        number moved, and the accounts that could not be with the reason."""
        with self._sessions() as session:
            rows = session.scalars(select(DataKeyRow).where(DataKeyRow.source == source,
                                                            DataKeyRow.key_name == name,
                                                            DataKeyRow.follows_latest.is_(True))).all()
        moved, failed = 0, []
        for row in rows:
            try:
                ref = _ref(row).at("")
                if self.providers.provider(ref).latest_version(ref) == row.key_version:
                    continue
                self._store(row.account_id, ref, self._unwrap(row))
                self.forget(row.account_id)
                moved += 1
            except KeyUnavailable as error:
                failed.append((row.account_id, str(error)))
        return moved, failed
