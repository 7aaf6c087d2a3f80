"""One bearer token, whichever issuer signed it: Azurine's own (its key is in the database) or a trusted
OpenID Connect issuer. Both planes verify tokens here, each with its own audiences."""

from __future__ import annotations

from azurine.identity.issuers import OidcIssuers, verify_external
from azurine.identity.tokens import Principal, is_own_issuer, knows_key, verify_token
from azurine.storage.state import StateStore


def verify_bearer_token(store: StateStore, issuers: OidcIssuers, token: str, issuer: object,
                        audiences: tuple[str, ...]) -> Principal:
    """The token's principal, or InvalidToken. `issuer` is the token's unverified `iss`: another Azurine server
    names an issuer of the same shape as this one's, and is told apart by its keys, which this one lacks."""
    if is_own_issuer(issuer) and (not issuers.trusts(str(issuer)) or knows_key(store, token)):
        return verify_token(store, token, audiences)
    return verify_external(issuers, token, audiences)
