"""Which operation a request is, in Azure RBAC's words, and whether its principal may perform it.

Management requests are ARM paths, so their action follows from the path and the method, as ARM derives it:
`PUT …/accounts/{a}/deployments/{d}` is `Microsoft.CognitiveServices/accounts/deployments/write` on that
deployment; `POST …/accounts/{a}/listKeys` is `Microsoft.CognitiveServices/accounts/listKeys/action`. Data-plane
requests map to the data actions Azure's OpenAI roles name (`…/OpenAI/deployments/chat/completions/action`).

A principal is the pair of its directory (the tenant or issuer that vouches for it) and its object id, as in
Entra, where a role assignment's principal is a principal of the assignment's tenant: the same object id asserted
by another issuer is someone else. Assignments are read per principal and kept for `ttl_s`, so a request costs no
database read while a role given or taken away takes effect within that time on every replica.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from azurine.identity.roles import OPENAI, RoleAssignment, is_allowed
from azurine.identity.tokens import BUILT_IN_DIRECTORY, Principal
from azurine.storage.access import AccessStore, AuditRecord
from azurine.storage.cache import ExpiringCache

VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class Operation:
    scope: str  # the resource the operation is on; assignments at it or above it apply
    action: str
    data: bool
    display: str = ""  # how Azure names the operation in a denial: "POST /openai/deployments/{deployment-id}/…"


def arm_operation(method: str, path: str) -> Operation:
    parts = [p for p in path.split("/") if p]
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return Operation("/" + "/".join(parts), f"Microsoft.Resources/{VERBS.get(method, 'read')}", False)
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    namespace, rest, resource = (parts[at + 1] if at + 1 < len(parts) else ""), parts[at + 2:], parts
    action_name = None
    if method == "POST" and len(rest) % 2 == 1 and len(rest) >= 3:  # …/accounts/{a}/listKeys
        action_name, rest, resource = rest[-1], rest[:-1], parts[:-1]
    resource_type = "/".join([namespace, *rest[0::2]])  # a collection's own type too, when listing it
    verb = f"{action_name}/action" if action_name else VERBS.get(method, f"{method.lower()}/action")
    return Operation("/" + "/".join(resource), f"{resource_type}/{verb}", False)


# data-plane routes (after an /accounts/{name} prefix is removed) → the data action Azure's roles name
_DATA_ROUTES: tuple[tuple[str, re.Pattern[str], str, str], ...] = tuple(
    (method, re.compile(pattern), action, display) for method, pattern, action, display in (
        ("POST", r"^/openai/deployments/[^/]+/chat/completions$", "deployments/chat/completions/action",
         "/openai/deployments/{deployment-id}/chat/completions"),
        ("POST", r"^/openai/deployments/[^/]+/completions$", "deployments/completions/action",
         "/openai/deployments/{deployment-id}/completions"),
        ("POST", r"^/openai/deployments/[^/]+/embeddings$", "deployments/embeddings/action",
         "/openai/deployments/{deployment-id}/embeddings"),
        ("POST", r"^/openai/deployments/[^/]+/audio/(transcriptions|translations|speech)$",
         "deployments/audio/action", "/openai/deployments/{deployment-id}/audio"),
        ("POST", r"^/openai/v1/audio/(transcriptions|translations|speech)$", "deployments/audio/action",
         "/openai/v1/audio"),
        ("POST", r"^/openai/deployments/[^/]+/images/generations$", "images/generations/action",
         "/openai/deployments/{deployment-id}/images/generations"),
        ("POST", r"^/openai/v1/images/generations$", "images/generations/action", "/openai/v1/images/generations"),
        ("POST", r"^/openai/v1/chat/completions$", "deployments/chat/completions/action",
         "/openai/v1/chat/completions"),
        ("POST", r"^/openai/v1/completions$", "deployments/completions/action", "/openai/v1/completions"),
        ("POST", r"^/openai/v1/embeddings$", "deployments/embeddings/action", "/openai/v1/embeddings"),
        ("POST", r"^/openai/v1/responses$", "responses/write", "/openai/v1/responses"),
        ("POST", r"^/openai/responses$", "responses/write", "/openai/responses"),
        ("POST", r"^/openai(/v1)?/responses/[^/]+/cancel$", "responses/write",
         "/openai/responses/{response-id}/cancel"),
        ("DELETE", r"^/openai(/v1)?/responses/[^/]+$", "responses/delete", "/openai/responses/{response-id}"),
        ("GET", r"^/openai(/v1)?/responses/[^/]+(/input_items)?$", "responses/read", "/openai/responses/{response-id}"),
        ("POST", r"^/openai(/v1)?/batches/[^/]+/cancel$", "batches/cancel/action", "/openai/batches/{batch-id}/cancel"),
        ("POST", r"^/openai(/v1)?/batches$", "batches/write", "/openai/batches"),
        ("GET", r"^/openai(/v1)?/batches(/[^/]+)?$", "batches/read", "/openai/batches"),
        ("POST", r"^/openai(/v1)?/fine_tuning/jobs(/[^/]+/(cancel|pause|resume))?$", "fine-tunes/write",
         "/openai/fine_tuning/jobs"),
        ("DELETE", r"^/openai(/v1)?/fine_tuning/jobs/[^/]+$", "fine-tunes/delete",
         "/openai/fine_tuning/jobs/{fine-tuning-job-id}"),
        ("GET", r"^/openai(/v1)?/fine_tuning/jobs(/[^/]+(/events|/checkpoints)?)?$", "fine-tunes/read",
         "/openai/fine_tuning/jobs"),
        ("POST", r"^/openai(/v1)?/files$", "files/write", "/openai/files"),
        ("DELETE", r"^/openai(/v1)?/files/[^/]+$", "files/delete", "/openai/files/{file-id}"),
        ("GET", r"^/openai(/v1)?/files(/[^/]+(/content)?)?$", "files/read", "/openai/files"),
        ("GET", r"^/openai(/v1)?/deployments(/[^/]+)?$", "deployments/read", "/openai/deployments"),
        ("GET", r"^/openai(/v1)?/models(/[^/]+)?$", "models/read", "/openai/models"),
        ("DELETE", r"^/openai(/v1)?/models/[^/]+$", "models/delete", "/openai/models/{model-id}"),
    ))


def data_operation(method: str, path: str, account_resource_id: str) -> Operation:
    for route_method, pattern, action, display in _DATA_ROUTES:
        if method == route_method and pattern.match(path):
            return Operation(account_resource_id, f"{OPENAI}/{action}", True, f"{method} {display}")
    return Operation(account_resource_id, f"{OPENAI}/{VERBS.get(method, 'read')}", True, f"{method} {path}")


class AccessControl:
    """RBAC decisions with each principal's assignments cached for `ttl_s`. A principal is an object id within a
    directory, and an assignment applies only to its own directory's principal of that id. The built-in
    administrator, who `azurine token get` speaks for, is the built-in directory's principal of the install's
    random administrator id; it holds Owner over everything and no data actions."""

    def __init__(self, store: AccessStore, ttl_s: float = 1.0) -> None:
        self.store = store
        self._cache: ExpiringCache[tuple[str, str], list[RoleAssignment]] = ExpiringCache(ttl_s)
        self._administrator: str | None = None

    @staticmethod
    def _key(principal: Principal) -> tuple[str, str]:
        return principal.directory, principal.object_id.lower()

    def _assignments(self, principal: Principal) -> list[RoleAssignment]:
        directory, object_id = key = self._key(principal)
        found = self._cache.read_through(key, lambda: [
            RoleAssignment(a.scope, a.role_definition_id, a.principal_id, a.principal_tenant)
            for a in self.store.assignments(object_id) if a.principal_tenant == directory])
        return found or []

    def scopes(self, principal: Principal) -> list[str]:
        """The scopes where the principal holds a role (what ARM shows it: the subscriptions above them)."""
        return [assignment.scope for assignment in self._assignments(principal)]

    def knows(self, principal: Principal) -> bool:
        """Whether the principal's assignments are cached and fresh (a decision then reads no database)."""
        return self._administrator is not None and self._cache.get(self._key(principal)) is not None

    def forget(self) -> None:
        """Drop the cache (this replica changed an assignment: it applies here at once)."""
        self._cache.forget()

    def audit(self, principal: Principal, operation: Operation, outcome: str, detail: str = "") -> None:
        if principal.directory != BUILT_IN_DIRECTORY:  # the object id alone would not say whose it is
            detail = f"{detail} (a principal of {principal.directory})"
        self.store.audit([AuditRecord(datetime.now(UTC), principal.object_id, operation.action, operation.scope,
                                      outcome, detail)])

    def is_administrator(self, principal: Principal) -> bool:
        if self._administrator is None:  # made once per install, never changed: read once
            self._administrator = self.store.admin_object_id().lower()
        return principal.directory == BUILT_IN_DIRECTORY and principal.object_id.lower() == self._administrator

    def allowed(self, principal: Principal, operation: Operation) -> bool:
        if not operation.data and self.is_administrator(principal):
            return True
        return is_allowed(self._assignments(principal), principal.object_id, operation.scope, operation.action,
                          operation.data, directory=principal.directory)
