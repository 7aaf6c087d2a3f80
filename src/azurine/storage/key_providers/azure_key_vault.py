"""Azure Key Vault (and Managed HSM) as a key provider: data keys wrapped by an RSA key with RSA-OAEP-256.

Wire format (Key Vault REST API 7.4): `POST {vaultUri}keys/{name}/{version}/wrapkey?api-version=7.4` with
`{"alg": "RSA-OAEP-256", "value": <base64url>}` answers `{"kid": …, "value": <base64url>}`, and `unwrapkey`
likewise; `GET {vaultUri}keys/{name}?api-version=7.4` answers the key bundle, whose `key.kid` ends in the
latest version and whose `attributes.enabled` says whether it may be used. The bearer token is for
`https://vault.azure.net/.default`, from azure-identity's `DefaultAzureCredential` (the managed identity named
by `identityClientId` when one is), which is imported only when a vault is used.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx

from azurine.storage.key_providers.base import KeyRef, KeyUnavailable, Wrapped

API_VERSION = "7.4"
ALGORITHM = "RSA-OAEP-256"
SCOPE = "https://vault.azure.net/.default"
VAULT_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".managedhsm.azure.net")

TokenSource = Callable[[KeyRef], str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def azure_identity_token(ref: KeyRef) -> str:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise KeyUnavailable("Azure Key Vault needs the azure-identity package for its tokens; "
                             "install it beside Azurine") from None
    credential = (DefaultAzureCredential(managed_identity_client_id=ref.identity_client_id)
                  if ref.identity_client_id else DefaultAzureCredential())
    try:
        return credential.get_token(SCOPE).token
    except Exception as error:  # azure-identity raises several kinds; each means no token
        raise KeyUnavailable(f"no token for Azure Key Vault: {error}") from None


class AzureKeyVault:
    def __init__(self, token: TokenSource = azure_identity_token, client: httpx.Client | None = None) -> None:
        self._token = token
        self._client = client or httpx.Client(timeout=10)

    def _call(self, method: str, url: str, ref: KeyRef, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, url, params={"api-version": API_VERSION}, json=body,
                                            headers={"Authorization": f"Bearer {self._token(ref)}"})
        except httpx.HTTPError as error:
            raise KeyUnavailable(f"the key vault {ref.vault_uri} cannot be reached: {error}") from None
        if response.status_code != 200:
            try:
                error = response.json().get("error") or {}
                reason = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            except ValueError:
                reason = response.reason_phrase
            raise KeyUnavailable(f"the key vault {ref.vault_uri} refused the key '{ref.name}' "
                                 f"({response.status_code}): {reason or response.reason_phrase}")
        return response.json()

    def _key_url(self, ref: KeyRef, version: str) -> str:
        return f"{ref.vault_uri.rstrip('/')}/keys/{ref.name}/{version}"

    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        version = ref.version or self.latest_version(ref)
        answer = self._call("POST", self._key_url(ref, version) + "/wrapkey", ref,
                            {"alg": ALGORITHM, "value": _b64url(data_key)})
        return Wrapped(str(answer.get("kid", "")).rstrip("/").rsplit("/", 1)[-1] or version,
                       _from_b64url(str(answer["value"])))

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        answer = self._call("POST", self._key_url(ref, ref.version) + "/unwrapkey", ref,
                            {"alg": ALGORITHM, "value": _b64url(blob)})
        return _from_b64url(str(answer["value"]))

    def latest_version(self, ref: KeyRef) -> str:
        bundle = self._call("GET", f"{ref.vault_uri.rstrip('/')}/keys/{ref.name}", ref)
        if not (bundle.get("attributes") or {}).get("enabled", True):
            raise KeyUnavailable(f"the key '{ref.name}' in {ref.vault_uri} is disabled")
        kid = str((bundle.get("key") or {}).get("kid", ""))
        if not kid:
            raise KeyUnavailable(f"the key vault {ref.vault_uri} answered no key id for '{ref.name}'")
        return kid.rstrip("/").rsplit("/", 1)[-1]
