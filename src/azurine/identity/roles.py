"""Azure RBAC as Azure evaluates it: role definitions of actions and data actions with wildcards, assigned to
principals at a scope that covers everything beneath it.

A principal may perform an operation at a resource when one of its assignments is at the resource's scope or
above it (subscription ⊃ resource group ⊃ account), and that role's actions (for management operations) or
data actions (for data-plane operations) match the operation, minus the role's not-actions. Matching is
case-insensitive, and `*` stands for any run of characters, `/` included, as in Azure.

The built-in definitions below keep Azure's role ids and names; their permission lists are what Azurine's
operations need of the published definitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class RoleDefinition:
    id: str  # Azure's GUID, the last segment of the roleDefinitionId
    name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleAssignment:
    scope: str  # /subscriptions/{s}[/resourceGroups/{g}[/providers/Microsoft.CognitiveServices/accounts/{a}]]
    role_id: str
    principal_id: str
    directory: str  # the tenant or issuer of the principal: the same object id elsewhere is someone else


OPENAI = "Microsoft.CognitiveServices/accounts/OpenAI"
BUILT_IN_ROLES = {role.id: role for role in (
    RoleDefinition(
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        actions=("*",)),
    RoleDefinition(
        "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
        actions=("*",), not_actions=("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                                     "Microsoft.Authorization/elevateAccess/Action")),
    RoleDefinition(
        "acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader",
        "View all resources, but does not allow you to make any changes.", actions=("*/read",)),
    RoleDefinition(
        "43d0d8ad-25c7-4714-9337-8ba259a9fe05", "Monitoring Reader", "Can read all monitoring data.",
        actions=("*/read", "Microsoft.OperationalInsights/workspaces/search/action", "Microsoft.Support/*")),
    RoleDefinition(
        "72fafb9e-0641-4937-9268-a91bfd8191a3", "Cost Management Reader",
        "Can view cost data and configuration (e.g. budgets, exports)",
        actions=("Microsoft.Consumption/*/read", "Microsoft.CostManagement/*/read",
                 "Microsoft.Billing/billingPeriods/read", "Microsoft.Resources/subscriptions/read",
                 "Microsoft.Resources/subscriptions/resourceGroups/read")),
    RoleDefinition(
        "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68", "Cognitive Services Contributor",
        "Lets you create, read, update, delete and manage keys of Cognitive Services.",
        actions=("Microsoft.Authorization/*/read", "Microsoft.CognitiveServices/*", "Microsoft.Features/features/read",
                 "Microsoft.Insights/alertRules/*", "Microsoft.Insights/diagnosticSettings/*",
                 "Microsoft.Insights/logDefinitions/read", "Microsoft.Insights/metricdefinitions/read",
                 "Microsoft.Insights/metrics/read", "Microsoft.Resources/deployments/*",
                 "Microsoft.Resources/subscriptions/resourceGroups/read")),
    RoleDefinition(
        "a97b65f3-24c7-4388-baec-2e87135dc908", "Cognitive Services User",
        "Lets you read and list keys of Cognitive Services.",
        actions=("Microsoft.CognitiveServices/*/read", "Microsoft.CognitiveServices/accounts/listkeys/action",
                 "Microsoft.Insights/alertRules/read", "Microsoft.Resources/subscriptions/resourceGroups/read"),
        data_actions=("Microsoft.CognitiveServices/*",)),
    RoleDefinition(
        "a001fd3d-188f-4b5d-821b-7da978bf7442", "Cognitive Services OpenAI Contributor",
        "Full access including the ability to fine-tune, deploy and generate text.",
        actions=("Microsoft.CognitiveServices/*/read", "Microsoft.Authorization/roleAssignments/read",
                 "Microsoft.Authorization/roleDefinitions/read",
                 "Microsoft.CognitiveServices/accounts/deployments/write",
                 "Microsoft.CognitiveServices/accounts/deployments/delete",
                 "Microsoft.CognitiveServices/accounts/raiPolicies/read",
                 "Microsoft.CognitiveServices/accounts/raiPolicies/write",
                 "Microsoft.CognitiveServices/accounts/raiPolicies/delete"),
        data_actions=(f"{OPENAI}/*",)),
    RoleDefinition(
        "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd", "Cognitive Services OpenAI User",
        "Read access to view files, models, deployments. The ability to create completion and embedding calls.",
        actions=("Microsoft.CognitiveServices/*/read", "Microsoft.Authorization/roleAssignments/read",
                 "Microsoft.Authorization/roleDefinitions/read"),
        data_actions=(f"{OPENAI}/*/read", f"{OPENAI}/engines/completions/action",
                      f"{OPENAI}/engines/search/action", f"{OPENAI}/engines/generate/action",
                      f"{OPENAI}/deployments/search/action", f"{OPENAI}/deployments/completions/action",
                      f"{OPENAI}/deployments/chat/completions/action", f"{OPENAI}/deployments/embeddings/action",
                      f"{OPENAI}/deployments/audio/action",
                      f"{OPENAI}/deployments/extensions/chat/completions/action",
                      f"{OPENAI}/images/generations/action", f"{OPENAI}/files/*", f"{OPENAI}/batches/*",
                      f"{OPENAI}/responses/*")),
)}
ROLES_BY_NAME = {role.name.lower(): role for role in BUILT_IN_ROLES.values()}


@lru_cache(maxsize=1024)
def _pattern(permission: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in permission.split("*")) + "$", re.IGNORECASE)


def _matches(permissions: Iterable[str], operation: str) -> bool:
    return any(_pattern(permission).match(operation) for permission in permissions)


def role_permits(role: RoleDefinition, operation: str, data: bool) -> bool:
    if data:
        return _matches(role.data_actions, operation) and not _matches(role.not_data_actions, operation)
    return _matches(role.actions, operation) and not _matches(role.not_actions, operation)


def covers(scope: str, resource: str) -> bool:
    """Whether an assignment at `scope` applies to `resource` (the same scope or one beneath it)."""
    scope, resource = scope.rstrip("/").lower(), resource.rstrip("/").lower()
    return resource == scope or resource.startswith(scope + "/")


def is_allowed(assignments: Iterable[RoleAssignment], principal_id: str, resource: str, operation: str,
               data: bool, roles: dict[str, RoleDefinition] = BUILT_IN_ROLES, *, directory: str) -> bool:
    """Whether `principal_id` of `directory` may perform `operation` at `resource`; an assignment of no known
    directory ("") grants nothing."""
    for assignment in assignments:
        if (assignment.principal_id.lower() != principal_id.lower() or not assignment.directory
                or assignment.directory != directory or not covers(assignment.scope, resource)):
            continue
        role = roles.get(assignment.role_id.rsplit("/", 1)[-1].lower())
        if role is not None and role_permits(role, operation, data):
            return True
    return False
