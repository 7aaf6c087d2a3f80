"""Encryption at rest: the sealer that encrypts every piece of stored customer content with its account's
data key (AES-256-GCM).

A sealed blob is the marker `ENVELOPE` (0x01), the 16-byte id of the data key, a 12-byte nonce, then the
ciphertext and its 16-byte tag. The account id and the key id are authenticated with it, so a blob moved to
another account, or altered, does not open. Blobs written before (marker `PLAIN`) are still read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine

from azurine.storage.content import PLAIN, ContentSealer
from azurine.storage.data_keys import DataKeys
from azurine.storage.key_providers import KeyProviders

ENVELOPE = b"\x01"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES


class CorruptContent(ValueError):
    """A sealed blob that does not open: altered, truncated, or sealed for another account or data key."""


def _aad(account_id: str, key_id: bytes) -> bytes:
    return b"azurine content\x00" + account_id.encode() + b"\x00" + key_id


class EnvelopeSealer(ContentSealer):
    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    @classmethod
    def open(cls, engine: Engine, data_dir: Path) -> EnvelopeSealer:
        return cls(DataKeys(engine, KeyProviders.open(engine, data_dir)))

    def seal(self, account_id: str, data: bytes) -> bytes:
        key = self.keys.get(account_id)
        nonce = os.urandom(NONCE_BYTES)
        return ENVELOPE + key.id + nonce + AESGCM(key.key).encrypt(nonce, data, _aad(account_id, key.id))

    def unseal(self, account_id: str, blob: bytes) -> bytes:
        if blob[:1] != ENVELOPE:
            return super().unseal(account_id, blob)  # PLAIN, or a marker nobody here reads
        if len(blob) < HEADER_BYTES + TAG_BYTES:
            raise CorruptContent(f"stored content of account {account_id} is cut short")
        key_id, nonce = blob[1:1 + KEY_ID_BYTES], blob[1 + KEY_ID_BYTES:HEADER_BYTES]
        key = self.keys.get(account_id)
        if key.id != key_id:
            raise CorruptContent(f"stored content of account {account_id} was sealed under data key "
                                 f"{key_id.hex()}, not the account's {key.id.hex()}")
        try:
            return AESGCM(key.key).decrypt(nonce, blob[HEADER_BYTES:], _aad(account_id, key_id))
        except InvalidTag:
            raise CorruptContent(f"stored content of account {account_id} does not authenticate: "
                                 "altered, or sealed for another account") from None


__all__ = ["ENVELOPE", "PLAIN", "CorruptContent", "EnvelopeSealer"]
