"""Key providers: where the keys that wrap accounts' data keys live, behind one interface.

An account's ARM `properties.encryption` picks one. `keySource` absent or `Microsoft.CognitiveServices`: the
service key. `Microsoft.KeyVault`: the provider that `keyVaultProperties.keyVaultUri` names, which is
the built-in key store for `https://keys.azurine.local/`, Azure Key Vault for `https://<name>.vault.azure.net/`
(and the other Azure clouds' vault and Managed HSM hosts) that the operator lists in `AZURINE_KEY_VAULT_ALLOWED`,
and HashiCorp Vault's transit engine for the address configured in `AZURINE_VAULT_ADDR`. Key names and versions
are held to each store's rules here, before any store is asked (`names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from azurine.storage.key_providers.allow_list import SETTING as ALLOWED_VAULTS_SETTING
from azurine.storage.key_providers.allow_list import VaultAllowList
from azurine.storage.key_providers.azure_key_vault import VAULT_SUFFIXES, AzureKeyVault
from azurine.storage.key_providers.base import (
    AZURE_KEY_VAULT,
    LOCAL,
    SERVICE,
    VAULT,
    KeyProvider,
    KeyRef,
    KeyUnavailable,
    Wrapped,
)
from azurine.storage.key_providers.local_store import LOCAL_KEY_STORE_URI, LocalKeyStore
from azurine.storage.key_providers.names import name_problem, version_problem
from azurine.storage.key_providers.service import ServiceKey, load_service_key
from azurine.storage.key_providers.vault_transit import VaultSettings, VaultTransit

__all__ = ["KeyProviders", "KeyRef", "KeyUnavailable", "InvalidEncryption", "Wrapped", "LOCAL_KEY_STORE_URI",
           "SERVICE", "LOCAL", "VAULT", "AZURE_KEY_VAULT", "SERVICE_REF", "MICROSOFT_MANAGED", "CUSTOMER_MANAGED"]

MICROSOFT_MANAGED = "Microsoft.CognitiveServices"
CUSTOMER_MANAGED = "Microsoft.KeyVault"
SERVICE_REF = KeyRef(SERVICE)


class InvalidEncryption(ValueError):
    """An `encryption` setting that names no usable key provider; the message says what to change."""


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class KeyProviders:
    def __init__(self, service: ServiceKey, local: LocalKeyStore, vault: VaultTransit | None = None,
                 azure: AzureKeyVault | None = None, azure_allowed: VaultAllowList | None = None) -> None:
        self.service = service
        self.local = local
        self.vault = vault
        self.azure = azure or AzureKeyVault()
        self.azure_allowed = azure_allowed or VaultAllowList()

    @classmethod
    def open(cls, engine: Engine, data_dir: Path) -> KeyProviders:
        service = ServiceKey(load_service_key(data_dir))
        vault = VaultSettings.from_environment()
        return cls(service, LocalKeyStore(engine, service), VaultTransit(vault) if vault else None,
                   azure_allowed=VaultAllowList.from_environment())

    def provider(self, ref: KeyRef) -> KeyProvider:
        if ref.source == SERVICE:
            return self.service
        if ref.source == LOCAL:
            return self.local
        if ref.source == AZURE_KEY_VAULT:
            # checked again on use: a vault the operator has since taken off the list is not reached
            if not self.azure_allowed.permits(ref.vault_uri, ref.identity_client_id):
                raise KeyUnavailable(f"the key vault {ref.vault_uri} is not one this server may use")
            return self.azure
        if ref.source == VAULT and self.vault is not None:
            return self.vault
        raise KeyUnavailable(f"no key provider serves {ref.describe()} on this server")

    def ref_for(self, encryption: Mapping[str, Any] | None) -> KeyRef:
        """The key an account's `encryption` setting names; `InvalidEncryption` when it names none usable."""
        if not encryption:
            return SERVICE_REF
        if not isinstance(encryption, Mapping):
            raise InvalidEncryption("encryption must be an object with keySource and keyVaultProperties.")
        source = encryption.get("keySource") or MICROSOFT_MANAGED
        if source == MICROSOFT_MANAGED:
            return SERVICE_REF
        if source != CUSTOMER_MANAGED:
            raise InvalidEncryption(f"The keySource '{source}' is not supported; use {MICROSOFT_MANAGED} or "
                                    f"{CUSTOMER_MANAGED}.")
        properties = encryption.get("keyVaultProperties")
        if not isinstance(properties, Mapping):
            raise InvalidEncryption(f"keySource {CUSTOMER_MANAGED} needs keyVaultProperties with keyName and "
                                    "keyVaultUri.")
        name = str(properties.get("keyName") or "")
        uri = str(properties.get("keyVaultUri") or "")
        version = str(properties.get("keyVersion") or "")
        client_id = str(properties.get("identityClientId") or "")
        if not name or not uri:
            raise InvalidEncryption("keyVaultProperties needs keyName and keyVaultUri.")
        try:
            parts = urlsplit(uri)
        except ValueError:  # an unclosed IPv6 bracket, among others
            raise InvalidEncryption(f"The keyVaultUri '{uri}' is not an https URL.") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InvalidEncryption(f"The keyVaultUri '{uri}' is not an https URL.")
        host = parts.hostname.lower()
        if _origin(uri) == _origin(LOCAL_KEY_STORE_URI):
            return _checked(KeyRef(LOCAL, name, version, LOCAL_KEY_STORE_URI, client_id))
        if self.vault is not None and _origin(uri) == _origin(self.vault.settings.address):
            return _checked(KeyRef(VAULT, name, version, self.vault.settings.address + "/", client_id))
        if parts.scheme == "https" and host.endswith(VAULT_SUFFIXES):
            ref = _checked(KeyRef(AZURE_KEY_VAULT, name, version, f"https://{parts.netloc.lower()}/", client_id))
            self._check_allowed(ref)
            return ref
        raise InvalidEncryption(f"The keyVaultUri '{uri}' names no key vault this server can use: use "
                                f"{LOCAL_KEY_STORE_URI} (the built-in key store), an Azure Key Vault "
                                "(https://<name>.vault.azure.net/) or the HashiCorp Vault configured in "
                                "AZURINE_VAULT_ADDR.")

    def _check_allowed(self, ref: KeyRef) -> None:
        """An Azure key vault is reached with this server's own credentials: only the operator's choice of
        vaults, and of identities for each, may be."""
        identities = self.azure_allowed.identities_for(ref.vault_uri)
        if not identities:
            raise InvalidEncryption(f"The key vault {ref.vault_uri} is not one this server may use: its operator "
                                    f"lists the usable Azure key vaults in {ALLOWED_VAULTS_SETTING}.")
        if ref.identity_client_id.strip().lower() in identities:
            return
        if ref.identity_client_id:
            raise InvalidEncryption(f"The identityClientId '{ref.identity_client_id}' cannot be used with the key "
                                    f"vault {ref.vault_uri} on this server.")
        raise InvalidEncryption(f"The key vault {ref.vault_uri} is used on this server only with the "
                                "identityClientId its operator set for it.")


def _checked(ref: KeyRef) -> KeyRef:
    """`ref` when its name and version are ones its store accepts; they go into the store's URLs."""
    problem = name_problem(ref.source, ref.name) or version_problem(ref.source, ref.version)
    if problem:
        raise InvalidEncryption(problem)
    return ref
