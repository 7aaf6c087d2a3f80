"""Bearer tokens from trusted issuers: Azurine's own, and OpenID Connect providers (Entra ID, Keycloak, …).

An external issuer is trusted by its issuer URL. Its signing keys come from the `jwks_uri` of its OpenID
configuration (`{issuer}/.well-known/openid-configuration`), are cached, and are fetched again when a token
names a key id not seen yet (a provider rotates keys by publishing the new one first), at most once per
`refetch_after_s` per issuer so that tokens with made-up key ids cannot make Azurine hammer the provider.

Entra ID issues two forms for one tenant: v1 tokens say `https://sts.windows.net/{tenant}/` and v2 tokens
`https://login.microsoftonline.com/{tenant}/v2.0`; both are trusted when either is configured, and both read
their keys from the tenant's v2 configuration.

Only asymmetric signatures are accepted (RS256/384/512, PS256, ES256/384): `alg: none` and HMAC tokens, whose
"key" would be public, are refused before any key is looked at, and a key verifies only the algorithms of its type.

A principal is an object id within a directory, and the directory is the issuer's, whatever the token claims: an
Entra tenant is named by its id (both issuer forms are one tenant), any other issuer by its URL. So a trusted
issuer speaks for its own principals only, never for the built-in directory's or another issuer's.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from azurine.identity.tokens import BUILT_IN_DIRECTORY, InvalidToken, Principal, decode_verified

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}  # an algorithm's family → the JWK key type that verifies it
ENTRA_V1 = re.compile(r"^https://sts\.windows\.net/(?P<tenant>[^/]+)/$")
ENTRA_V2 = re.compile(r"^https://login\.microsoftonline\.com/(?P<tenant>[^/]+)/v2\.0$")
INVALID = "The access token is invalid."


def issuer_forms(issuer: str) -> tuple[str, ...]:
    """The issuer strings one configured issuer stands for (Entra's v1 and v2 forms of a tenant)."""
    issuer = issuer.rstrip("/") if not ENTRA_V1.match(issuer) else issuer
    for pattern in (ENTRA_V1, ENTRA_V2):
        match = pattern.match(issuer)
        if match:
            tenant = match["tenant"]
            return (f"https://sts.windows.net/{tenant}/", f"https://login.microsoftonline.com/{tenant}/v2.0")
    return (issuer,)


def directory_of(issuer: str) -> str:
    """The directory whose principals an issuer's tokens name: an Entra tenant's id, or any other issuer's URL."""
    for pattern in (ENTRA_V1, ENTRA_V2):
        match = pattern.match(issuer)
        if match:
            return match["tenant"].lower()
    return issuer.rstrip("/")


def configuration_url(issuer: str) -> str:
    v1 = ENTRA_V1.match(issuer)
    if v1:  # v1 tokens are signed with the same keys the tenant's v2 configuration lists
        return f"https://login.microsoftonline.com/{v1['tenant']}/v2.0/.well-known/openid-configuration"
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


@dataclass
class _Keys:
    keys: dict[str, PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0


class OidcIssuers:
    """The external issuers, each with its cached signing keys; thread-safe."""

    def __init__(self, issuers: list[str], *, refetch_after_s: float = 60.0, max_age_s: float = 3600.0,
                 timeout_s: float = 5.0, verify: Any = True) -> None:
        self._canonical: dict[str, str] = {}  # any accepted form → the configured issuer whose keys it uses
        for configured in issuers:
            for form in issuer_forms(configured):
                self._canonical[form] = form
        self._keys: dict[str, _Keys] = {}
        self._lock = threading.Lock()
        self._refetch_after_s = refetch_after_s
        self._max_age_s = max_age_s  # a key the issuer withdrew stops verifying within this time
        self._timeout_s = timeout_s
        self._verify = verify

    def trusts(self, issuer: str) -> bool:
        return issuer in self._canonical

    def directory(self, named: str) -> str | None:
        """The directory a role assignment names (the built-in tenant, a trusted Entra tenant's id or a trusted
        issuer in either of its forms), or None when none of those is named."""
        named = named.strip()
        if named.lower() == BUILT_IN_DIRECTORY:
            return BUILT_IN_DIRECTORY
        trusted = {directory_of(issuer) for issuer in self._canonical} - {BUILT_IN_DIRECTORY}
        for candidate in (named.lower(), directory_of(named), directory_of(named + "/")):
            if candidate in trusted:
                return candidate
        return None

    def key(self, issuer: str, kid: str) -> PyJWK:
        with self._lock:
            cached = self._keys.setdefault(issuer, _Keys())
            age = time.monotonic() - cached.fetched_at
            if kid in cached.keys and age < self._max_age_s:
                return cached.keys[kid]
            if kid not in cached.keys and age < self._refetch_after_s and cached.fetched_at:
                raise InvalidToken(INVALID)
        try:
            fetched = self._fetch(issuer)  # outside the lock: a slow provider must not stall other issuers
        except InvalidToken:
            if kid in cached.keys:  # the provider is down: the keys it last published still hold
                return cached.keys[kid]
            raise
        with self._lock:
            self._keys[issuer] = _Keys(fetched, time.monotonic())
        if kid not in fetched:
            raise InvalidToken(INVALID)
        return fetched[kid]

    def _fetch(self, issuer: str) -> dict[str, PyJWK]:
        try:
            with httpx.Client(timeout=self._timeout_s, verify=self._verify) as http:
                configuration = http.get(configuration_url(issuer)).raise_for_status().json()
                document = http.get(configuration["jwks_uri"]).raise_for_status().json()
        except (httpx.HTTPError, KeyError, ValueError) as error:
            raise InvalidToken(f"The signing keys of issuer {issuer} could not be read.") from error
        keys = {}
        for entry in document.get("keys", []):
            if entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[entry["kid"]] = PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError):
                continue  # a key type this library cannot use is not one our tokens can be signed with
        return keys


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidToken(INVALID) from error


def verify_external(issuers: OidcIssuers, token: str, audiences: tuple[str, ...]) -> Principal:
    """The principal of a token from a trusted external issuer; InvalidToken for anything else."""
    header, claims = _unverified(token)
    if header.get("alg") not in ALGORITHMS:
        raise InvalidToken(INVALID)
    issuer = str(claims.get("iss", ""))
    if not issuers.trusts(issuer) or not header.get("kid"):
        raise InvalidToken(INVALID)
    directory = directory_of(issuer)
    if directory == BUILT_IN_DIRECTORY:  # only the built-in issuer speaks for the built-in directory
        raise InvalidToken(INVALID)
    key = issuers.key(issuer, str(header["kid"]))
    if key.key_type != KEY_TYPES[str(header["alg"])[:2]]:
        raise InvalidToken(INVALID)
    verified = decode_verified(token, key.key, str(header["alg"]), audiences, issuer)
    return Principal(object_id=str(verified.get("oid") or verified.get("sub") or ""),
                     tenant_id=str(verified.get("tid", "")),
                     name=str(verified.get("name") or verified.get("preferred_username") or verified.get("appid")
                              or verified.get("azp") or ""), directory=directory)
