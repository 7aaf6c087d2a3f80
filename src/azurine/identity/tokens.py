"""Azurine's built-in token issuer: ES256 JWTs shaped like Entra ID access tokens.

The signing keys live in the database, so every replica verifies what any replica (or the
`azurine token get` command) signed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from azurine.storage.state import SigningKey, StateStore

TENANT_ID = "00000000-0000-0000-0000-00000000a2e0"
ADMIN_OBJECT_ID = "00000000-0000-0000-0000-0000000000ad"
ISSUER = f"https://azurine.local/{TENANT_ID}/"
MANAGEMENT_AUDIENCES = ("https://management.azure.com/", "https://management.azure.com",
                        "https://management.core.windows.net/")
COGNITIVE_AUDIENCES = ("https://cognitiveservices.azure.com", "https://ai.azure.com")
LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    object_id: str
    tenant_id: str
    name: str


def _new_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def signing_key(store: StateStore) -> SigningKey:
    """The active signing key, made on first use."""
    return store.active_signing_key() or store.add_signing_key(str(uuid.uuid4()), _new_key())


def issue_token(store: StateStore, audience: str = MANAGEMENT_AUDIENCES[0],
                object_id: str = ADMIN_OBJECT_ID, name: str = "Azurine administrator") -> tuple[str, int]:
    """A bearer token for `audience` and when it expires (epoch seconds)."""
    key = signing_key(store)
    now = int(time.time())
    claims = {"aud": audience.rstrip("/") + ("/" if audience.startswith("https://management") else ""),
              "iss": ISSUER, "iat": now, "nbf": now, "exp": now + LIFETIME_SECONDS, "oid": object_id,
              "sub": object_id, "tid": TENANT_ID, "name": name, "ver": "1.0", "appid": "azurine-cli"}
    token = jwt.encode(claims, key.private_pem, algorithm="ES256", headers={"kid": key.kid})
    return token, claims["exp"]


_public_keys: dict[str, Any] = {}  # kid → public key: a key id never changes its key, so this never goes stale


def _public_key(store: StateStore, kid: str) -> Any:
    if kid not in _public_keys:
        key = store.signing_key(kid)
        if key is None:
            return None
        _public_keys[kid] = serialization.load_pem_private_key(key.private_pem.encode(), None).public_key()
    return _public_keys[kid]


def verify_token(store: StateStore, token: str, audiences: tuple[str, ...]) -> Principal:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as error:
        raise InvalidToken("The access token is invalid.") from error
    public = _public_key(store, kid) if kid else None
    if public is None:
        raise InvalidToken("The access token is invalid.")
    try:
        claims = jwt.decode(token, public, algorithms=["ES256"], audience=list(audiences), issuer=ISSUER,
                            leeway=CLOCK_SKEW_SECONDS, options={"require": ["exp", "aud", "iss"]})
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("The access token expiry UTC time is earlier than current UTC time.") from error
    except jwt.InvalidAudienceError as error:
        raise InvalidToken("The access token has been obtained for wrong audience or resource.") from error
    except jwt.PyJWTError as error:
        raise InvalidToken("The access token is invalid.") from error
    return Principal(object_id=claims.get("oid", ""), tenant_id=claims.get("tid", ""), name=claims.get("name", ""))
