"""HashiCorp Vault's transit secrets engine as a key provider.

Wire format (Vault HTTP API, transit engine): `POST {addr}/v1/{mount}/encrypt/{name}` with
`{"plaintext": <base64>}` (and `key_version` to pin one) answers `{"data": {"ciphertext": "vault:v<N>:…"}}`;
`POST {addr}/v1/{mount}/decrypt/{name}` with `{"ciphertext": …}` answers `{"data": {"plaintext": <base64>}}`;
`GET {addr}/v1/{mount}/keys/{name}` answers `{"data": {"latest_version": N, …}}`. The token goes in
`X-Vault-Token`, a namespace in `X-Vault-Namespace`. Revoking is Vault's to do: a token or policy withdrawn,
`min_decryption_version` raised, or the key deleted; each makes these calls fail, which is all Azurine needs.

Configured by `AZURINE_VAULT_ADDR`, `AZURINE_VAULT_TOKEN`, `AZURINE_VAULT_TRANSIT_MOUNT` (default `transit`)
and `AZURINE_VAULT_NAMESPACE`; an account selects it with a `keyVaultUri` at the configured address.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from typing import Any

import httpx

from azurine.storage.key_providers.base import KeyRef, KeyUnavailable, Wrapped

VERSION_PREFIX = re.compile(r"^vault:v(\d+):")


@dataclass(frozen=True)
class VaultSettings:
    address: str
    token: str
    mount: str = "transit"
    namespace: str = ""

    @classmethod
    def from_environment(cls) -> VaultSettings | None:
        address = os.environ.get("AZURINE_VAULT_ADDR", "").strip()
        if not address:
            return None
        return cls(address.rstrip("/"), os.environ.get("AZURINE_VAULT_TOKEN", ""),
                   os.environ.get("AZURINE_VAULT_TRANSIT_MOUNT", "transit").strip("/"),
                   os.environ.get("AZURINE_VAULT_NAMESPACE", ""))


class VaultTransit:
    def __init__(self, settings: VaultSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(timeout=10)

    def _call(self, method: str, path: str, ref: KeyRef, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"X-Vault-Token": self.settings.token}
        if self.settings.namespace:
            headers["X-Vault-Namespace"] = self.settings.namespace
        url = f"{self.settings.address}/v1/{self.settings.mount}/{path}/{ref.name}"
        try:
            response = self._client.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise KeyUnavailable(f"Vault at {self.settings.address} cannot be reached: {error}") from None
        if response.status_code != 200:
            try:
                reasons = "; ".join(str(e) for e in response.json().get("errors") or []) or response.reason_phrase
            except ValueError:
                reasons = response.reason_phrase
            raise KeyUnavailable(f"Vault refused {path} with the transit key '{ref.name}' "
                                 f"({response.status_code}): {reasons}")
        data = response.json().get("data")
        if not isinstance(data, dict):
            raise KeyUnavailable(f"Vault answered {path} for the transit key '{ref.name}' without data")
        return data

    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        body: dict[str, Any] = {"plaintext": base64.b64encode(data_key).decode()}
        if ref.version:
            body["key_version"] = int(ref.version)
        ciphertext = str(self._call("POST", "encrypt", ref, body).get("ciphertext", ""))
        found = VERSION_PREFIX.match(ciphertext)
        if found is None:
            raise KeyUnavailable(f"Vault's ciphertext for the transit key '{ref.name}' has no version prefix")
        return Wrapped(found.group(1), ciphertext.encode())

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        data = self._call("POST", "decrypt", ref, {"ciphertext": blob.decode()})
        return base64.b64decode(str(data.get("plaintext", "")))

    def latest_version(self, ref: KeyRef) -> str:
        return str(self._call("GET", "keys", ref).get("latest_version", ""))
