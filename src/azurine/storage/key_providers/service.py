"""The service key: what wraps the data keys of accounts without a customer-managed key, and the keys of the
built-in key store.

It is 32 bytes, from `AZURINE_SERVICE_KEY` (base64) or else from the file `service.key` in the data
directory, created (mode 0600) on first use. Every process that shares one database must use the same key:
replicas and workers with data directories of their own are given it in `AZURINE_SERVICE_KEY`. A process
with a different key cannot unwrap anything and says so, rather than reading garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag

from azurine import settings_table
from azurine.storage.key_providers.base import KeyRef, KeyUnavailable, Wrapped, aead_unwrap, aead_wrap

KEY_BYTES = 32
KEY_FILE = "service.key"
AAD = b"azurine service key: data key"


def load_service_key(data_dir: Path) -> bytes:
    configured = settings_table.read("AZURINE_SERVICE_KEY", "").strip()
    if configured:
        try:
            key = base64.b64decode(configured, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(f"AZURINE_SERVICE_KEY must be {KEY_BYTES} bytes in base64")
        return key
    path = data_dir / KEY_FILE
    if not path.exists():
        _create(path)
    key = base64.b64decode(path.read_text().strip())
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte key in base64")
    return key


def _create(path: Path) -> None:
    """Written to a private temporary file and linked into place, so that processes starting together agree on
    one key and none reads a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


def key_id(key: bytes) -> str:
    """Names a service key without revealing it, so that a mismatch between processes can be reported."""
    return hashlib.sha256(b"azurine service key id\x00" + key).hexdigest()[:16]


class ServiceKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a service key is {KEY_BYTES} bytes")
        self._key = key
        self.id = key_id(key)

    def seal(self, secret: bytes, aad: bytes) -> bytes:
        return aead_wrap(self._key, secret, aad)

    def open(self, blob: bytes, aad: bytes, wrapped_by: str = "") -> bytes:
        try:
            return aead_unwrap(self._key, blob, aad)
        except InvalidTag:
            by = f" (wrapped by service key {wrapped_by})" if wrapped_by and wrapped_by != self.id else ""
            raise KeyUnavailable(f"a key stored in the database cannot be unwrapped with this server's service "
                                 f"key {self.id}{by}: every process sharing a database needs the same "
                                 "AZURINE_SERVICE_KEY") from None

    # the KeyProvider operations: the version is the service key's id
    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        return Wrapped(self.id, self.seal(data_key, AAD))

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        return self.open(blob, AAD, ref.version)

    def latest_version(self, ref: KeyRef) -> str:
        return self.id
