"""What every key provider shares: the key it is asked for, the answer when that key cannot be used, and the
operations a provider offers (wrap and unwrap an account's data key, name the latest version of a key)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# where an account's data key is wrapped
SERVICE = "service"  # the service key: keySource Microsoft.CognitiveServices
LOCAL = "local"  # the key store built into Azurine
VAULT = "vault"  # HashiCorp Vault's transit engine
AZURE_KEY_VAULT = "azure-key-vault"

NONCE_BYTES = 12


class KeyUnavailable(Exception):
    """The key that wraps an account's data key cannot be used now: disabled, deleted, refused or unreachable."""


@dataclass(frozen=True)
class KeyRef:
    """A key of a provider. An empty `version` means the latest one: what a versionless key setting follows."""

    source: str
    name: str = ""
    version: str = ""
    vault_uri: str = ""
    identity_client_id: str = ""  # the managed identity that reaches an Azure key vault

    def at(self, version: str) -> KeyRef:
        return KeyRef(self.source, self.name, version, self.vault_uri, self.identity_client_id)

    def describe(self) -> str:
        if self.source == SERVICE:
            return "the service key"
        version = f" version {self.version}" if self.version else ""
        return f"key '{self.name}'{version} in {self.vault_uri}"


@dataclass(frozen=True)
class Wrapped:
    version: str  # the version of the key that wrapped it, which unwrapping needs
    blob: bytes


class KeyProvider(Protocol):
    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        """Wrap under `ref`, or under the latest version when `ref` names none."""
        ...

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        """Unwrap with the version `ref` names (the one that wrapped)."""
        ...

    def latest_version(self, ref: KeyRef) -> str: ...


def status_text(code: int) -> str:
    """An upstream's status for a caller: the number and its standard phrase, never the phrase the upstream sent,
    which is its own text."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def aead_wrap(key: bytes, data_key: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data_key, aad)


def aead_unwrap(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Raises `InvalidTag` when `key` is not the key that wrapped `blob`, or `blob` was altered."""
    if len(blob) <= NONCE_BYTES:
        raise InvalidTag()
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
