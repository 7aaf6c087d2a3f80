"""The built-in issuer's directory: who may ask for a token, and the tokens they get.

Three kinds of principal, as in Entra ID: users (given tokens by an operator's `azurine token get`), service
principals (an application id and client secrets, for the OAuth2 client-credentials grant) and managed
identities (a workload given the endpoint and header of the App Service managed-identity protocol, which
`azure-identity`'s `ManagedIdentityCredential` speaks). Failures carry Entra's OAuth2 error and AADSTS code, so
MSAL and azure-identity report them as they would report Entra's.

Token requests come from anyone, so what they name is checked before it is used (a client id is a GUID, as
Entra requires) and echoed or audited only in part.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azurine.identity.tokens import (
    COGNITIVE_AUDIENCES,
    LIFETIME_SECONDS,
    MANAGEMENT_AUDIENCES,
    TENANT_ID,
    issue_token,
    rotate_signing_key,
)
from azurine.storage.access import AccessStore, AuditRecord, clip
from azurine.storage.principals import PrincipalRecord, PrincipalStore
from azurine.storage.state import StateStore

SECRET_LIFETIME = timedelta(days=180)  # Entra's recommended, and its portal's default, client-secret lifetime
# the resources a token can be had for, each as its scope's resource part → the token's audience
RESOURCES = {
    **{audience.rstrip("/"): audience for audience in COGNITIVE_AUDIENCES},
    "https://management.azure.com": MANAGEMENT_AUDIENCES[0],
    "https://management.core.windows.net": MANAGEMENT_AUDIENCES[0],
}
IGNORED_SCOPES = {"openid", "profile", "offline_access"}
ECHO_MAX = 256  # the most of a caller's value an error message repeats
DIRECTORY_SCOPE = f"/tenants/{TENANT_ID}"
OPERATOR = "operator"  # who the audit log names for changes made from the command line


@dataclass
class TokenRefused(Exception):
    """An OAuth2 error response: the status, `error`, the AADSTS number and `error_description`."""

    status: int
    error: str
    aadsts: int
    description: str


@dataclass(frozen=True)
class GrantedToken:
    access_token: str
    expires_on: int
    audience: str


def new_secret() -> str:
    """40 URL-safe characters, never starting with `-`: command lines take such a value for an option (`az login
    --password -Xy…` fails with "expected one argument"), as they would for one in 64 secrets otherwise."""
    while (secret := secrets.token_urlsafe(30)).startswith("-"):
        pass
    return secret


def is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) in (32, 36, 38)  # the forms Entra takes: bare, hyphenated, braced


def audience_of(resource: str) -> str | None:
    """The audience of a token asked for by resource (`https://cognitiveservices.azure.com`) or by scope
    (`https://cognitiveservices.azure.com/.default`)."""
    resource = resource.strip()
    if resource.endswith("/.default"):
        resource = resource[: -len("/.default")]
    return RESOURCES.get(resource.rstrip("/"))


class Directory:
    """Every change and every token asked for goes to the audit log, as Entra's audit and sign-in logs."""

    def __init__(self, principals: PrincipalStore, store: StateStore, audit_log: AccessStore) -> None:
        self.principals = principals
        self._store = store
        self._audit_log = audit_log

    def _audit(self, who: str, action: str, outcome: str, detail: str) -> None:
        self._audit_log.audit([AuditRecord(datetime.now(UTC), who, f"Azurine.Directory/{action}", DIRECTORY_SCOPE,
                                           outcome, detail)])

    def create_user(self, name: str) -> PrincipalRecord:
        user = self.principals.create("User", name)
        self._audit(OPERATOR, "users/create", "allowed", f"{user.object_id} {name}")
        return user

    def create_service_principal(self, name: str, lifetime: timedelta = SECRET_LIFETIME) -> tuple[PrincipalRecord, str]:
        principal = self.principals.create("ServicePrincipal", name)
        self._audit(OPERATOR, "servicePrincipals/create", "allowed", f"{principal.object_id} {name}")
        return principal, self.add_secret(principal.object_id, lifetime)

    def create_managed_identity(self, name: str) -> tuple[PrincipalRecord, str]:
        """The identity and its header secret (`IDENTITY_HEADER`), which does not expire: a platform hands it to
        the workload, as App Service does."""
        principal = self.principals.create("ManagedIdentity", name)
        self._audit(OPERATOR, "managedIdentities/create", "allowed", f"{principal.object_id} {name}")
        return principal, self.add_secret(principal.object_id, timedelta(days=365 * 100))

    def add_secret(self, object_id: str, lifetime: timedelta = SECRET_LIFETIME) -> str:
        secret = new_secret()
        record = self.principals.add_secret(object_id, secret, lifetime)
        self._audit(OPERATOR, "secrets/create", "allowed", f"{object_id} key {record.key_id}")
        return secret

    def remove_secret(self, key_id: str) -> bool:
        removed = self.principals.remove_secret(key_id)
        if removed:
            self._audit(OPERATOR, "secrets/delete", "allowed", f"key {key_id}")
        return removed

    def delete(self, principal: PrincipalRecord) -> None:
        self.principals.delete(principal.object_id)
        self._audit(OPERATOR, "principals/delete", "allowed", f"{principal.object_id} {principal.display_name}")

    def set_enabled(self, principal: PrincipalRecord, enabled: bool) -> None:
        self.principals.set_enabled(principal.object_id, enabled)
        self._audit(OPERATOR, "principals/enable" if enabled else "principals/disable", "allowed",
                    f"{principal.object_id} {principal.display_name}")

    def rotate_signing_key(self, retire_now: bool) -> str:
        kid = rotate_signing_key(self._store, retire_now=retire_now)
        self._audit(OPERATOR, "signingKeys/rotate", "allowed", f"new key {kid}" + (", old keys retired" if retire_now
                                                                                    else ""))
        return kid

    def client_credentials(self, client_id: str, client_secret: str, scope: str, issuer: str) -> GrantedToken:
        """The client-credentials grant of a service principal."""
        try:
            granted = self._client_credentials(client_id, client_secret, scope, issuer)
        except TokenRefused as refused:
            self._audit(client_id if is_guid(client_id) else "unknown", "tokens/clientCredentials", "denied",
                        f"{refused.error} AADSTS{refused.aadsts} for {clip(scope, ECHO_MAX)}")
            raise
        self._audit(client_id, "tokens/clientCredentials", "allowed", f"{granted.audience}")
        return granted

    def _client_credentials(self, client_id: str, client_secret: str, scope: str, issuer: str) -> GrantedToken:
        if not is_guid(client_id):
            raise TokenRefused(400, "invalid_request", 700016,
                               f"Application with identifier '{clip(client_id, ECHO_MAX)}' was not found in the "
                               f"directory '{TENANT_ID}'. The client_id must be the application's id, a GUID.")
        scopes = [s for s in scope.split() if s not in IGNORED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenRefused(400, "invalid_scope", 1002012,
                               f"The provided value for scope {clip(scope, ECHO_MAX)} is not valid. Client "
                               "credential flows must have a scope value with /.default suffixed to the resource "
                               "identifier (application ID URI).")
        audience = audience_of(scopes[0])
        if audience is None:
            raise TokenRefused(400, "invalid_resource", 500011,
                               f"The resource principal named {clip(scopes[0][: -len('/.default')], ECHO_MAX)} was "
                               f"not found in the tenant named {TENANT_ID}.")
        principal = self.principals.get(client_id) if client_id else None
        if principal is None or principal.app_id != client_id.lower() or principal.kind != "ServicePrincipal":
            raise TokenRefused(400, "unauthorized_client", 700016,
                               f"Application with identifier '{client_id}' was not found in the directory "
                               f"'{TENANT_ID}'.")
        found = self.principals.by_secret(client_secret) if client_secret else None
        if found is None or found[0].object_id != principal.object_id:
            raise TokenRefused(401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in the request is the "
                               f"client secret value, not the client secret ID, for a secret added to app "
                               f"'{client_id}'.")
        if found[1].expires_at <= datetime.now(UTC):
            raise TokenRefused(401, "invalid_client", 7000222,
                               f"The provided client secret keys for app '{client_id}' are expired.")
        if not principal.enabled:
            raise TokenRefused(400, "unauthorized_client", 7000112, f"Application '{client_id}' is disabled.")
        return self._grant(principal, audience, issuer)

    def managed_identity(self, identity_header: str, resource: str, client_id: str | None,
                         issuer: str) -> GrantedToken:
        """A token for the managed identity whose header secret this is."""
        try:
            granted = self._managed_identity(identity_header, resource, client_id, issuer)
        except TokenRefused as refused:
            self._audit(client_id if client_id and is_guid(client_id) else "unknown", "tokens/managedIdentity",
                        "denied", f"{refused.error} for {clip(resource, ECHO_MAX)}")
            raise
        self._audit(client_id or "managed identity", "tokens/managedIdentity", "allowed", granted.audience)
        return granted

    def _managed_identity(self, identity_header: str, resource: str, client_id: str | None,
                          issuer: str) -> GrantedToken:
        if client_id and not is_guid(client_id):
            raise TokenRefused(400, "invalid_request", 0, "The client_id parameter must be a managed identity's "
                                                          "client id, a GUID.")
        found = self.principals.by_secret(identity_header) if identity_header else None
        if found is None or found[0].kind != "ManagedIdentity" or not found[0].enabled:
            raise TokenRefused(401, "invalid_client", 0, "The X-IDENTITY-HEADER is missing or is not valid.")
        principal = found[0]
        if client_id and client_id.lower() != principal.app_id:
            raise TokenRefused(400, "invalid_request", 0, f"No managed identity found for specified ClientId "
                                                          f"{client_id}.")
        audience = audience_of(resource)
        if audience is None:
            raise TokenRefused(400, "invalid_resource", 500011,
                               f"The resource principal named {clip(resource, ECHO_MAX)} was not found in the "
                               f"tenant named {TENANT_ID}.")
        return self._grant(principal, audience, issuer)

    def _grant(self, principal: PrincipalRecord, audience: str, issuer: str) -> GrantedToken:
        token, expires = issue_token(self._store, audience, principal.object_id, principal.display_name,
                                     issuer=issuer, app_id=principal.app_id)
        return GrantedToken(token, expires, audience)


def expires_in(granted: GrantedToken) -> int:
    return max(0, min(LIFETIME_SECONDS, granted.expires_on - int(time.time())))
