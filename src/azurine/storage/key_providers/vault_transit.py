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
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx

from azurine import settings_table
from azurine.storage.key_providers.base import VAULT, KeyRef, KeyUnavailable, Wrapped, status_text
from azurine.storage.key_providers.names import name_problem, segment, version_problem

log = logging.getLogger("azurine.keys")
VERSION_PREFIX = re.compile(r"^vault:v(\d+):")


@dataclass(frozen=True)
class VaultSettings:
    address: str
    token: str
    mount: str = "transit"
    namespace: str = ""

    @classmethod
    def from_environment(cls) -> VaultSettings | None:
        address = settings_table.read("AZURINE_VAULT_ADDR", "").strip()
        if not address:
            return None
        return cls(address.rstrip("/"), settings_table.read("AZURINE_VAULT_TOKEN", ""),
                   settings_table.read("AZURINE_VAULT_TRANSIT_MOUNT", "transit").strip("/"),
                   settings_table.read("AZURINE_VAULT_NAMESPACE", ""))


class VaultTransit:
    def __init__(self, settings: VaultSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(timeout=10)

    def _call(self, method: str, path: str, ref: KeyRef, body: dict[str, Any] | None = None) -> dict[str, Any]:
        problem = name_problem(VAULT, ref.name)
        if problem:  # a setting stored before names were checked: nothing of it goes to Vault
            raise KeyUnavailable(f"the transit key name is not usable: {problem}")
        headers = {"X-Vault-Token": self.settings.token}
        if self.settings.namespace:
            headers["X-Vault-Namespace"] = self.settings.namespace
        url = f"{self.settings.address}/v1/{self.settings.mount}/{path}/{segment(ref.name)}"
        try:
            response = self._client.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as error:
            log.warning("Vault at %s cannot be reached for %s of the transit key %r: %s", self.settings.address,
                        path, ref.name, error)
            raise KeyUnavailable(f"the key store at {ref.vault_uri} cannot be reached") from None
        if response.status_code != 200:
            # Vault's own words name its paths, policies and tokens: the operator's to read, not the caller's
            log.warning("Vault refused %s with the transit key %r (%s): %s", path, ref.name, response.status_code,
                        response.text[:2000])
            raise KeyUnavailable(f"the key store at {ref.vault_uri} refused {path} with the key '{ref.name}' "
                                 f"({status_text(response.status_code)})")
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, dict):
            raise KeyUnavailable(f"the key store at {ref.vault_uri} answered {path} for the key '{ref.name}' "
                                 "without data")
        return data

    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        body: dict[str, Any] = {"plaintext": base64.b64encode(data_key).decode()}
        problem = version_problem(VAULT, ref.version)
        if problem:
            raise KeyUnavailable(f"the transit key version is not usable: {problem}")
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
