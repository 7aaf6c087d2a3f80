"""The names and versions each key provider accepts, and the quoting of what goes into its URLs.

A key's name and version come from an account's settings, which are the tenant's to write, and they end up in
the path of a request the server makes with its own credentials. So they are held to each store's naming rule
before any request, and quoted as path segments besides, so that no value can climb out of its segment.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from azurine.storage.key_providers.base import AZURE_KEY_VAULT, LOCAL, SERVICE, VAULT

# Azure Key Vault's rule, which the built-in key store shares; Vault's transit keys may also have underscores
AZURE_KEY_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
VAULT_KEY_NAME = re.compile(r"[0-9A-Za-z_-]{1,127}")
# Azure Key Vault's versions are 32 hex digits, as are the built-in store's (uuid4().hex); Vault's count from 1
HEX_VERSION = re.compile(r"[0-9A-Fa-f]{32}")
VAULT_VERSION = re.compile(r"[1-9][0-9]{0,9}")

_NAMES = {LOCAL: AZURE_KEY_NAME, AZURE_KEY_VAULT: AZURE_KEY_NAME, VAULT: VAULT_KEY_NAME}
_VERSIONS = {LOCAL: HEX_VERSION, AZURE_KEY_VAULT: HEX_VERSION, VAULT: VAULT_VERSION}
_NAME_RULES = {AZURE_KEY_NAME: "1 to 127 letters, digits and hyphens",
               VAULT_KEY_NAME: "1 to 127 letters, digits, hyphens and underscores"}
_VERSION_RULES = {HEX_VERSION: "32 hexadecimal digits", VAULT_VERSION: "a whole number from 1"}


def name_problem(source: str, name: str) -> str | None:
    """Why `name` is not a key name of the provider `source`, or None when it is one."""
    rule = _NAMES.get(source)
    if source == SERVICE or rule is None or rule.fullmatch(name):
        return None
    return f"The keyName must be {_NAME_RULES[rule]}."


def version_problem(source: str, version: str) -> str | None:
    """Why `version` is not a key version of the provider `source`, or None; empty means the latest."""
    rule = _VERSIONS.get(source)
    if not version or rule is None or rule.fullmatch(version):
        return None
    return f"The keyVersion must be {_VERSION_RULES[rule]}, or absent to follow the latest version."


def segment(value: str) -> str:
    """`value` as one URL path segment: `/`, `?`, `#`, `%` and dots cannot change the path it is put in."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted
