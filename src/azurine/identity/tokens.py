"""Azurine's built-in token issuer: ES256 JWTs shaped like Entra ID access tokens.

The signing keys live in the database, so every replica verifies what any replica (or the
`azurine token get` command) signed. A key signs for `AZURINE_SIGNING_KEY_DAYS` (30 by default), then a new
one takes over; the old one keeps verifying for a token lifetime and is published in the JWKS until then.

Tokens from the OAuth2 endpoints name the server's public address as issuer
(`{base}/{tenant}/v2.0`, Entra's v2 form), so a client or another server can find its OpenID configuration
there; tokens minted from the command line, which knows no address, name `ISSUER`.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from azurine import settings_table
from azurine.storage.state import SigningKey, StateStore

TENANT_ID = "00000000-0000-0000-0000-00000000a2e0"
# the directory of the built-in issuer's principals; an external issuer's is never this (see `issuers.py`)
BUILT_IN_DIRECTORY = TENANT_ID
ISSUER = f"https://azurine.local/{TENANT_ID}/"
MANAGEMENT_AUDIENCES = ("https://management.azure.com/", "https://management.azure.com",
                        "https://management.core.windows.net/")
COGNITIVE_AUDIENCES = ("https://cognitiveservices.azure.com", "https://ai.azure.com")
LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300
# the public form of the issuer: any https (or http, for a loopback test) address, then the tenant, then v2.0
OWN_ISSUER = re.compile(rf"^https?://[^/]+(/[^/]+)*/{TENANT_ID}/v2\.0$")
# how long a verified token or a looked-up public key is trusted without asking the database again
TOKEN_CACHE_SECONDS = float(settings_table.read("AZURINE_TOKEN_CACHE_SECONDS", "60"))


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for. `directory` is the tenant or issuer that vouches for `object_id`, set by the issuer
    that verified the token, never by its claims: an object id means one principal only within its directory."""

    object_id: str
    tenant_id: str
    name: str
    directory: str


def _new_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_issuer(base_url: str) -> str:
    """The issuer named by tokens from the OAuth2 endpoints of a server reached at `base_url`."""
    configured = settings_table.read("AZURINE_PUBLIC_URL", "").strip()
    return f"{(configured or base_url).rstrip('/')}/{TENANT_ID}/v2.0"


def is_own_issuer(issuer: object) -> bool:
    return isinstance(issuer, str) and (issuer == ISSUER or OWN_ISSUER.match(issuer) is not None)


def _rotation_age_s() -> float:
    return float(settings_table.read("AZURINE_SIGNING_KEY_DAYS", "30")) * 86400


def signing_key(store: StateStore) -> SigningKey:
    """The active signing key: made on first use, replaced once it is older than the rotation age."""
    key = store.active_signing_key()
    if key is None:
        return store.add_signing_key(str(uuid.uuid4()), _new_key())
    if time.time() - key.created_at > _rotation_age_s():
        rotate_signing_key(store)
        key = store.active_signing_key()
        assert key is not None
    return key


def rotate_signing_key(store: StateStore, *, retire_now: bool = False) -> str:
    """Start signing with a new key; the old one verifies the tokens it signed until they expire, or from now
    on nothing with `retire_now` (a key that may have leaked). The new key id."""
    kid = str(uuid.uuid4())
    store.rotate_signing_key(kid, _new_key(), 0 if retire_now else LIFETIME_SECONDS + CLOCK_SKEW_SECONDS)
    _public_keys.clear()
    return kid


def issue_token(store: StateStore, audience: str = MANAGEMENT_AUDIENCES[0],
                object_id: str | None = None, name: str = "Azurine administrator", *,
                issuer: str = ISSUER, app_id: str | None = None) -> tuple[str, int]:
    """A bearer token for `audience` and when it expires (epoch seconds), by default the built-in
    administrator's. With `app_id`, an application's token (client credentials, managed identity), shaped as
    Entra shapes those."""
    if object_id is None:
        object_id = store.admin_object_id()
    key = signing_key(store)
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": audience.rstrip("/") + ("/" if audience.startswith("https://management") else ""),
        "iss": issuer, "iat": now, "nbf": now, "exp": now + LIFETIME_SECONDS, "oid": object_id,
        "sub": object_id, "tid": TENANT_ID, "uti": uuid.uuid4().hex[:22]}
    if app_id is None:
        claims.update(name=name, ver="1.0", appid="azurine-cli")
    else:
        claims.update(app_displayname=name, azp=app_id, appid=app_id, idtyp="app",
                      ver="2.0" if issuer != ISSUER else "1.0")
    token = jwt.encode(claims, key.private_pem, algorithm="ES256", headers={"kid": key.kid, "typ": "JWT"})
    return token, claims["exp"]


def jwks(store: StateStore) -> dict[str, list[dict[str, Any]]]:
    """The keys that verify this issuer's tokens, as a JSON Web Key Set."""
    signing_key(store)  # a relying party may read the keys before the first token is signed
    keys = []
    for key in store.verifying_keys():
        public = serialization.load_pem_private_key(key.private_pem.encode(), None).public_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        keys.append({**jwk, "kid": key.kid, "use": "sig", "alg": "ES256"})
    return {"keys": keys}


# kid → (public key, when looked up): a retired key stops verifying within TOKEN_CACHE_SECONDS everywhere
_public_keys: dict[str, tuple[Any, float]] = {}


def _public_key(store: StateStore, kid: str) -> Any:
    cached = _public_keys.get(kid)
    if cached is not None and time.monotonic() - cached[1] < TOKEN_CACHE_SECONDS:
        return cached[0]
    key = store.signing_key(kid)
    if key is None:
        _public_keys.pop(kid, None)
        return None
    public = serialization.load_pem_private_key(key.private_pem.encode(), None).public_key()
    _public_keys[kid] = (public, time.monotonic())
    return public


def knows_key(store: StateStore, token: str) -> bool:
    """Whether the token names one of this issuer's verifying keys."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return False
    return isinstance(kid, str) and _public_key(store, kid) is not None


def decode_verified(token: str, key: Any, algorithm: str, audiences: tuple[str, ...], issuer: str) -> dict[str, Any]:
    """The claims of a token signed with `key`, for one of `audiences`, from `issuer`, current within the clock
    skew; otherwise InvalidToken with the message Azure gives for the reason. Every issuer's tokens end here."""
    try:
        return jwt.decode(token, key, algorithms=[algorithm], audience=list(audiences), issuer=issuer,
                          leeway=CLOCK_SKEW_SECONDS, options={"require": ["exp", "aud", "iss"]})
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("The access token expiry UTC time is earlier than current UTC time.") from error
    except jwt.ImmatureSignatureError as error:
        raise InvalidToken("The access token is not yet valid.") from error
    except jwt.InvalidAudienceError as error:
        raise InvalidToken("The access token has been obtained for wrong audience or resource.") from error
    except (jwt.PyJWTError, TypeError, ValueError) as error:  # TypeError: a key of another type than `algorithm`
        raise InvalidToken("The access token is invalid.") from error


def verify_token(store: StateStore, token: str, audiences: tuple[str, ...],
                 unverified: dict[str, Any] | None = None) -> Principal:
    """The principal of a token of this issuer; `unverified`, the token already read without its signature."""
    try:
        if unverified is None:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        kid = unverified["header"].get("kid")
        issuer = unverified["payload"].get("iss")
    except jwt.PyJWTError as error:
        raise InvalidToken("The access token is invalid.") from error
    public = _public_key(store, kid) if isinstance(kid, str) else None
    if public is None or not is_own_issuer(issuer):
        raise InvalidToken("The access token is invalid.")
    claims = decode_verified(token, public, "ES256", audiences, str(issuer))
    return Principal(object_id=claims.get("oid", ""), tenant_id=claims.get("tid", ""),
                     name=claims.get("name") or claims.get("app_displayname", ""), directory=BUILT_IN_DIRECTORY)
