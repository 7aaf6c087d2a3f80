"""The identity and access stages of the data plane: an account key, or a bearer token whose principal holds a
role with the operation's data action on the account.

Keys go in `api-key` (or, on `/openai/v1`, as `Authorization: Bearer <key>`); tokens go in
`Authorization: Bearer <jwt>`, from Azurine's own issuer or a trusted OpenID Connect issuer. An account with
`disableLocalAuth` takes tokens only. The errors are Azure's: 401 for a bad key or token, 401
`PermissionDenied` for a principal without the data action, 403 `AuthenticationTypeDisabled` for a key where
keys are off.
"""

from __future__ import annotations

import time

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from azurine import settings_table
from azurine.api.errors import AzureError, invalid_key
from azurine.identity.access import AccessControl, data_operation
from azurine.identity.bearer import verify_bearer_token
from azurine.identity.issuers import OidcIssuers
from azurine.identity.tokens import COGNITIVE_AUDIENCES, TOKEN_CACHE_SECONDS, InvalidToken, Principal
from azurine.storage.state import AccountRecord, StateStore

BAD_TOKEN = ("Unauthorized. Access token is missing, invalid, audience is incorrect "
             "(https://cognitiveservices.azure.com), or have expired.")


def trusted_issuers() -> OidcIssuers:
    """`AZURINE_TRUSTED_ISSUERS`: comma-separated issuer URLs whose tokens both planes accept;
    `AZURINE_JWKS_REFETCH_SECONDS`: how often, at most, an issuer's keys are fetched again for an unknown key id."""
    configured = [i.strip() for i in settings_table.read("AZURINE_TRUSTED_ISSUERS", "").split(",") if i.strip()]
    return OidcIssuers(configured, refetch_after_s=float(settings_table.read("AZURINE_JWKS_REFETCH_SECONDS", "60")))


def looks_like_token(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def account_resource_id(account: AccountRecord) -> str:
    return (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
            f"Microsoft.CognitiveServices/accounts/{account.name}")


class VerifiedTokens:
    """Tokens already verified, for `AZURINE_TOKEN_CACHE_SECONDS` (60) or until they expire: a client sends the
    same token for up to an hour, and checking its signature each time would cost most of a request's overhead;
    checking it again after a minute lets a signing key retired at once (leaked) stop working everywhere."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._tokens: dict[str, tuple[Principal, float]] = {}
        self._keep_s = TOKEN_CACHE_SECONDS

    def get(self, token: str) -> Principal | None:
        found = self._tokens.get(token)
        if found is None:
            return None
        if found[1] <= time.time():
            self._tokens.pop(token, None)
            return None
        return found[0]

    def put(self, token: str, principal: Principal, expires: float) -> None:
        if len(self._tokens) >= self._size:  # the oldest insertions go first
            for stale in list(self._tokens)[: self._size // 10]:
                self._tokens.pop(stale, None)
        self._tokens[token] = (principal, min(expires, time.time() + self._keep_s))


def verify_bearer(store: StateStore, issuers: OidcIssuers, verified: VerifiedTokens, token: str) -> Principal:
    try:
        unverified = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise InvalidToken(BAD_TOKEN) from error
    principal = verify_bearer_token(store, issuers, token, unverified, COGNITIVE_AUDIENCES)
    verified.put(token, principal, float(unverified["payload"]["exp"]))  # verification required exp
    return principal


async def identify(request: Request, account: AccountRecord, bearer_keys: bool, store: StateStore,
                   issuers: OidcIssuers, access: AccessControl, verified: VerifiedTokens) -> None:
    scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
    credential = credential.strip() if scheme.lower() == "bearer" else ""
    key = request.headers.get("api-key")
    if key is None and credential and looks_like_token(credential):
        principal = verified.get(credential)
        if principal is None:
            try:
                principal = await run_in_threadpool(verify_bearer, store, issuers, verified, credential)
            except InvalidToken:
                raise AzureError(401, "401", BAD_TOKEN) from None
        operation = data_operation(request.method, request.url.path, account_resource_id(account))
        if access.knows(principal):  # cached assignments: no database, no thread
            allowed = access.allowed(principal, operation)
        else:
            allowed = await run_in_threadpool(access.allowed, principal, operation)
        if not allowed:
            await run_in_threadpool(access.audit, principal, operation, "denied",
                                    f"{request.method} {request.url.path}")
            raise AzureError(401, "PermissionDenied",
                             f"The principal `{principal.object_id}` lacks the required data action "
                             f"`{operation.action}` to perform `{operation.display}` operation.")
        return
    if key is None and bearer_keys:
        key = credential or None
    if str(account.properties.get("disableLocalAuth", "")).lower() == "true":
        raise AzureError(403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource.")
    if not key or not account.key_matches(key):
        raise invalid_key()
