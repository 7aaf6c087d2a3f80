"""The built-in issuer over HTTP, at Entra ID's paths so that MSAL and azure-identity find it as they find Entra:

- `GET /{tenant}/v2.0/.well-known/openid-configuration` and `GET /{tenant}/discovery/v2.0/keys` (the JWKS);
- `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant (secret in the body or in Basic auth);
- `GET /msi/token`: App Service's managed-identity protocol (`IDENTITY_ENDPOINT`, `X-IDENTITY-HEADER`).

Errors are OAuth2's (`error`, `error_description` beginning with the AADSTS number, `error_codes`), not Azure's
API envelope: token clients parse those. A client address whose token requests keep failing is told to wait
(429 with `Retry-After`, `AZURINE_TOKEN_FAILURES_PER_MINUTE`) before its requests are looked at or audited.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from azurine.api.context import services
from azurine.api.network_stage import shown_address
from azurine.identity.directory import ECHO_MAX, TokenRefused, expires_in
from azurine.identity.throttle import FailureThrottle
from azurine.identity.tokens import TENANT_ID, jwks, public_issuer
from azurine.storage.access import clip

router = APIRouter()
TENANTS = {TENANT_ID}  # one directory per server; a tenant alias could join it here


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def oauth_error(refused: TokenRefused) -> JSONResponse:
    correlation = str(uuid.uuid4())
    prefix = f"AADSTS{refused.aadsts}: " if refused.aadsts else ""
    return JSONResponse({
        "error": refused.error, "error_description": f"{prefix}{refused.description} Trace ID: {correlation}",
        "error_codes": [refused.aadsts] if refused.aadsts else [],
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"), "trace_id": correlation,
        "correlation_id": correlation}, status_code=refused.status)


def _tenant_not_found(tenant: str) -> JSONResponse:
    return oauth_error(TokenRefused(400, "invalid_tenant", 90002,
                                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                    "and are signing into the correct cloud."))


@router.get("/{tenant}/v2.0/.well-known/openid-configuration")
async def openid_configuration(tenant: str, request: Request) -> JSONResponse:
    if tenant not in TENANTS:
        return _tenant_not_found(tenant)
    base = _base(request)
    issuer = public_issuer(base)
    root = issuer[: -len("/v2.0")]
    return JSONResponse({
        "issuer": issuer,
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "tenant_region_scope": None,
        "cloud_instance_name": root.split("//", 1)[-1].split("/", 1)[0],
    })


@router.get("/{tenant}/discovery/v2.0/keys")
async def signing_keys(tenant: str, request: Request) -> JSONResponse:
    if tenant not in TENANTS:
        return _tenant_not_found(tenant)
    return JSONResponse(await run_in_threadpool(jwks, services(request).store))


def _client_from_basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(client_id), unquote(secret)


def _throttle(request: Request) -> FailureThrottle:
    throttle = getattr(request.app.state, "token_failures", None)
    if not isinstance(throttle, FailureThrottle):
        throttle = request.app.state.token_failures = FailureThrottle.from_environment()
    return throttle


def _caller(request: Request) -> str:
    """The client's address, behind trusted proxies the one they vouch for."""
    return shown_address(request, services(request).network, unknown="unknown")


@router.post("/{tenant}/oauth2/v2.0/token")
async def token(tenant: str, request: Request) -> JSONResponse:
    throttle, caller = _throttle(request), _caller(request)
    wait_s = throttle.wait_s(caller)
    if wait_s:
        refused = oauth_error(TokenRefused(429, "temporarily_unavailable", 90055,
                                           "Too many failed token requests from this client address. Retry after "
                                           f"{wait_s} seconds."))
        refused.headers["Retry-After"] = str(wait_s)
        return refused
    response = await _token(tenant, request)
    if response.status_code >= 400:
        throttle.failed(caller)
    return response


async def _token(tenant: str, request: Request) -> JSONResponse:
    if tenant not in TENANTS:
        return _tenant_not_found(tenant)
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return oauth_error(TokenRefused(400, "invalid_request", 900144,
                                        "The request body must contain the following parameter: 'grant_type'."))
    try:
        form = await request.form()
    except StarletteHTTPException:  # a field over Starlette's size limit: a bad request, and a failed one
        return oauth_error(TokenRefused(400, "invalid_request", 0,
                                        "The request body could not be read: a field is longer than accepted."))
    fields: dict[str, str] = {k: v for k, v in form.items() if isinstance(v, str)}
    grant = fields.get("grant_type", "")
    if not grant:
        return oauth_error(TokenRefused(400, "invalid_request", 900144,
                                        "The request body must contain the following parameter: 'grant_type'."))
    if grant != "client_credentials":
        return oauth_error(TokenRefused(400, "unsupported_grant_type", 70003,
                                        f"The app requested an unsupported grant type '{clip(grant, ECHO_MAX)}'."))
    client_id, secret = _client_from_basic(request) or (fields.get("client_id", ""), fields.get("client_secret", ""))
    if not client_id:
        return oauth_error(TokenRefused(400, "invalid_request", 900144,
                                        "The request body must contain the following parameter: 'client_id'."))
    directory = services(request).directory
    try:
        granted = await run_in_threadpool(directory.client_credentials, client_id, secret, fields.get("scope", ""),
                                          public_issuer(_base(request)))
    except TokenRefused as refused:
        return oauth_error(refused)
    lifetime = expires_in(granted)
    body: dict[str, Any] = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                            "access_token": granted.access_token}
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/msi/token")
async def managed_identity_token(request: Request) -> JSONResponse:
    throttle, caller = _throttle(request), _caller(request)
    wait_s = throttle.wait_s(caller)
    if wait_s:
        return JSONResponse({"statusCode": 429, "message": "Too many failed token requests from this client "
                                                          f"address. Retry after {wait_s} seconds."},
                            status_code=429, headers={"Retry-After": str(wait_s)})
    response = await _managed_identity_token(request)
    if response.status_code >= 400:
        throttle.failed(caller)
    return response


async def _managed_identity_token(request: Request) -> JSONResponse:
    params = request.query_params
    if params.get("api-version") != "2019-08-01":
        return JSONResponse({"statusCode": 400, "message": "The api-version must be 2019-08-01."}, status_code=400)
    resource = params.get("resource", "")
    if not resource:
        return JSONResponse({"statusCode": 400, "message": "The resource parameter is required."}, status_code=400)
    directory = services(request).directory
    try:
        granted = await run_in_threadpool(directory.managed_identity, request.headers.get("x-identity-header", ""),
                                          resource, params.get("client_id"), public_issuer(_base(request)))
    except TokenRefused as refused:
        return JSONResponse({"statusCode": refused.status, "message": refused.description},
                            status_code=refused.status)
    return JSONResponse({"access_token": granted.access_token, "expires_on": str(granted.expires_on),
                         "resource": resource, "token_type": "Bearer"})
