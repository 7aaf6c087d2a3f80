"""The Azure key vaults, and the managed identities for each, that accounts may name (`AZURINE_KEY_VAULT_ALLOWED`).

An Azure key vault is reached with the server's own Azure credentials, so a vault that any tenant could name
would let one tenant use the server's access to vaults it was never meant to touch. The operator lists the
usable vaults, comma-separated: `https://contoso.vault.azure.net` lets accounts use that vault with the host's
default credential (no `identityClientId`), and `https://contoso.vault.azure.net#<client id>` lets them use it
with that managed identity of the host. Nothing listed (the default): no Azure key vault can be used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from azurine import settings_table
from azurine.storage.key_providers.azure_key_vault import VAULT_SUFFIXES

SETTING = "AZURINE_KEY_VAULT_ALLOWED"


def vault_origin(uri: str) -> str:
    """One vault however its URI was written: scheme and host in lower case, no path."""
    parts = urlsplit(uri.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(frozen=True)
class VaultAllowList:
    entries: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (vault origin, identity client id)

    def permits(self, vault_uri: str, identity_client_id: str) -> bool:
        return (vault_origin(vault_uri), identity_client_id.strip().lower()) in self.entries

    def identities_for(self, vault_uri: str) -> set[str]:
        """The identities the vault may be used with; "" is the host's default credential; none: not listed."""
        origin = vault_origin(vault_uri)
        return {identity for vault, identity in self.entries if vault == origin}

    @classmethod
    def parse(cls, text: str) -> VaultAllowList:
        entries = set()
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            parts = urlsplit(entry)
            host = (parts.hostname or "").lower()
            if parts.scheme != "https" or not host.endswith(VAULT_SUFFIXES) or parts.path.strip("/") or parts.query:
                raise ValueError(f"{SETTING} lists Azure key vaults as https://<name>.vault.azure.net, each "
                                 f"optionally followed by #<managed identity client id>, not {entry!r}")
            entries.add((vault_origin(entry), parts.fragment.strip().lower()))
        return cls(frozenset(entries))

    @classmethod
    def from_environment(cls) -> VaultAllowList:
        return cls.parse(settings_table.read(SETTING, ""))
