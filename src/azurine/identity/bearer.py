"""One bearer token, whichever issuer signed it: Azurine's own (its key is in the database) or a trusted
OpenID Connect issuer. Both planes verify tokens here, each with its own audiences."""

from __future__ import annotations

from typing import Any

from azurine.identity.issuers import OidcIssuers, verify_external
from azurine.identity.tokens import Principal, is_own_issuer, knows_key, verify_token
from azurine.storage.state import StateStore


def verify_bearer_token(store: StateStore, issuers: OidcIssuers, token: str, unverified: dict[str, Any],
                        audiences: tuple[str, ...]) -> Principal:
    """The token's principal, or InvalidToken. `unverified` is the token read without its signature
    (`jwt.decode_complete`), read once because reading a token costs more than checking an ES256 signature.
    Another Azurine server names an issuer of the same shape as this one's, and is told apart by its keys,
    which this one lacks."""
    issuer = unverified["payload"].get("iss")
    if is_own_issuer(issuer) and (not issuers.trusts(str(issuer)) or knows_key(store, token)):
        return verify_token(store, token, audiences, unverified)
    return verify_external(issuers, token, audiences)
