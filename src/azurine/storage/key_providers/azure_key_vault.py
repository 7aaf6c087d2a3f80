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
import logging
from collections.abc import Callable
from typing import Any

import httpx

from azurine.storage.key_providers.base import AZURE_KEY_VAULT, KeyRef, KeyUnavailable, Wrapped, status_text
from azurine.storage.key_providers.names import name_problem, segment, version_problem

log = logging.getLogger("azurine.keys")

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
    # what goes wrong here describes the host (its credential sources, paths, tools): the operator's log has it
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        log.warning("Azure Key Vault needs the azure-identity package for its tokens; install it beside Azurine")
        raise KeyUnavailable("this server cannot get a token for Azure Key Vault") from None
    try:
        credential = (DefaultAzureCredential(managed_identity_client_id=ref.identity_client_id)
                      if ref.identity_client_id else DefaultAzureCredential())
        return credential.get_token(SCOPE).token
    except Exception as error:  # azure-identity raises several kinds; each means no token
        log.warning("no token for Azure Key Vault %s (identity %r): %s", ref.vault_uri,
                    ref.identity_client_id or "default", error)
        raise KeyUnavailable("this server cannot get a token for Azure Key Vault") from None


class AzureKeyVault:
    def __init__(self, token: TokenSource = azure_identity_token, client: httpx.Client | None = None) -> None:
        self._token = token
        self._client = client or httpx.Client(timeout=10)

    def _call(self, method: str, url: str, ref: KeyRef, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, url, params={"api-version": API_VERSION}, json=body,
                                            headers={"Authorization": f"Bearer {self._token(ref)}"})
        except httpx.HTTPError as error:
            log.warning("the key vault %s cannot be reached for the key %r: %s", ref.vault_uri, ref.name, error)
            raise KeyUnavailable(f"the key vault {ref.vault_uri} cannot be reached") from None
        if response.status_code != 200:
            # the vault's own message can name identities, tenants and policies: the operator's log has it
            log.warning("the key vault %s refused the key %r (%s): %s", ref.vault_uri, ref.name,
                        response.status_code, response.text[:2000])
            raise KeyUnavailable(f"the key vault {ref.vault_uri} refused the key '{ref.name}' "
                                 f"({status_text(response.status_code)})")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise KeyUnavailable(f"the key vault {ref.vault_uri} answered no JSON object for the key '{ref.name}'")
        return answer

    def _key_url(self, ref: KeyRef, version: str = "") -> str:
        """The key's URL, once its name and version are known to be Key Vault's; nothing is sent otherwise."""
        problem = name_problem(AZURE_KEY_VAULT, ref.name) or version_problem(AZURE_KEY_VAULT, version)
        if problem:
            raise KeyUnavailable(f"the key in {ref.vault_uri} is not usable: {problem}")
        url = f"{ref.vault_uri.rstrip('/')}/keys/{segment(ref.name)}"
        return f"{url}/{segment(version)}" if version else url

    def wrap(self, ref: KeyRef, data_key: bytes) -> Wrapped:
        self._key_url(ref, ref.version)  # refused before a token is asked for
        version = ref.version or self.latest_version(ref)
        answer = self._call("POST", self._key_url(ref, version) + "/wrapkey", ref,
                            {"alg": ALGORITHM, "value": _b64url(data_key)})
        return Wrapped(str(answer.get("kid", "")).rstrip("/").rsplit("/", 1)[-1] or version,
                       _from_b64url(str(answer["value"])))

    def unwrap(self, ref: KeyRef, blob: bytes) -> bytes:
        if not ref.version:
            raise KeyUnavailable(f"the key '{ref.name}' in {ref.vault_uri} has no version to unwrap with")
        answer = self._call("POST", self._key_url(ref, ref.version) + "/unwrapkey", ref,
                            {"alg": ALGORITHM, "value": _b64url(blob)})
        return _from_b64url(str(answer["value"]))

    def latest_version(self, ref: KeyRef) -> str:
        bundle = self._call("GET", self._key_url(ref), ref)
        if not (bundle.get("attributes") or {}).get("enabled", True):
            raise KeyUnavailable(f"the key '{ref.name}' in {ref.vault_uri} is disabled")
        kid = str((bundle.get("key") or {}).get("kid", ""))
        if not kid:
            raise KeyUnavailable(f"the key vault {ref.vault_uri} answered no key id for '{ref.name}'")
        return kid.rstrip("/").rsplit("/", 1)[-1]
