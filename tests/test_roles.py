"""RBAC evaluation: every built-in role against a table of operations, scopes covering what lies beneath."""

from __future__ import annotations

import pytest

from azurine.identity.access import Operation, arm_operation, data_operation
from azurine.identity.roles import BUILT_IN_ROLES, ROLES_BY_NAME, RoleAssignment, covers, is_allowed

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
GROUP = f"{SUB}/resourceGroups/rg"
ACCOUNT = f"{GROUP}/providers/Microsoft.CognitiveServices/accounts/contoso"
OPENAI = "Microsoft.CognitiveServices/accounts/OpenAI"
D = "00000000-0000-0000-0000-00000000a2e0"  # the principals' directory

# (operation, data action?) → the roles that may perform it
TABLE = {
    (f"{OPENAI}/deployments/chat/completions/action", True): {
        "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor", "Cognitive Services User"},
    (f"{OPENAI}/deployments/embeddings/action", True): {
        "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor", "Cognitive Services User"},
    (f"{OPENAI}/files/write", True): {
        "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor", "Cognitive Services User"},
    (f"{OPENAI}/deployments/read", True): {
        "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor", "Cognitive Services User"},
    (f"{OPENAI}/fine-tunes/write", True): {"Cognitive Services OpenAI Contributor", "Cognitive Services User"},
    ("Microsoft.CognitiveServices/accounts/read", False): {
        "Owner", "Contributor", "Reader", "Monitoring Reader", "Cognitive Services Contributor",
        "Cognitive Services User", "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor"},
    ("Microsoft.Insights/metrics/read", False): {
        "Owner", "Contributor", "Reader", "Monitoring Reader", "Cognitive Services Contributor"},
    ("Microsoft.CognitiveServices/accounts/write", False): {"Owner", "Contributor", "Cognitive Services Contributor"},
    ("Microsoft.CognitiveServices/accounts/listKeys/action", False): {
        "Owner", "Contributor", "Cognitive Services Contributor", "Cognitive Services User"},
    ("Microsoft.CognitiveServices/accounts/deployments/write", False): {
        "Owner", "Contributor", "Cognitive Services Contributor", "Cognitive Services OpenAI Contributor"},
    # reading cost: Cost Management's query, which readers may run as on Azure
    ("Microsoft.CostManagement/query/read", False): {
        "Owner", "Contributor", "Reader", "Monitoring Reader", "Cost Management Reader"},
    ("Microsoft.CostManagement/query/action", False): {"Owner", "Contributor"},
    ("Microsoft.Authorization/roleAssignments/write", False): {"Owner"},
    ("Microsoft.Authorization/roleAssignments/read", False): {
        "Owner", "Contributor", "Reader", "Monitoring Reader", "Cognitive Services Contributor",
        "Cognitive Services OpenAI User", "Cognitive Services OpenAI Contributor"},
}


@pytest.mark.parametrize(("operation", "data"), list(TABLE))
def test_each_role_may_do_exactly_its_operations(operation: str, data: bool) -> None:
    allowed = {role.name for role in BUILT_IN_ROLES.values()
               if is_allowed([RoleAssignment(ACCOUNT, role.id, "p", D)], "p", ACCOUNT, operation, data, directory=D)}
    assert allowed == TABLE[(operation, data)]


def test_an_assignment_covers_its_scope_and_what_lies_beneath() -> None:
    user = ROLES_BY_NAME["cognitive services openai user"].id
    chat = f"{OPENAI}/deployments/chat/completions/action"
    for scope in (SUB, GROUP, ACCOUNT):
        assert is_allowed([RoleAssignment(scope, user, "p", D)], "p", ACCOUNT, chat, True, directory=D)
    other_account = f"{GROUP}/providers/Microsoft.CognitiveServices/accounts/fabrikam"
    assert not is_allowed([RoleAssignment(other_account, user, "p", D)], "p", ACCOUNT, chat, True, directory=D)
    assert not is_allowed([RoleAssignment(ACCOUNT, user, "someone-else", D)], "p", ACCOUNT, chat, True, directory=D)
    assert not is_allowed([RoleAssignment(ACCOUNT, user, "p", "https://other.example")], "p", ACCOUNT, chat, True,
                          directory=D)  # the same object id in another directory is someone else
    assert not is_allowed([RoleAssignment(ACCOUNT, user, "p", "")], "p", ACCOUNT, chat, True, directory="")
    assert not covers(f"{GROUP}/providers/Microsoft.CognitiveServices/accounts/con", ACCOUNT)  # not a prefix match


def test_role_ids_may_be_full_resource_ids_and_any_case() -> None:
    owner = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/8E3AF657-A8FF-443C-A75C-2FE8C4BCB635"
    assert is_allowed([RoleAssignment(SUB.upper(), owner, "P", D)], "p", ACCOUNT,
                      "microsoft.cognitiveservices/accounts/delete", False, directory=D)


def test_management_roles_grant_no_data_actions() -> None:
    chat = f"{OPENAI}/deployments/chat/completions/action"
    for name in ("owner", "contributor", "reader", "cognitive services contributor"):
        assert not is_allowed([RoleAssignment(ACCOUNT, ROLES_BY_NAME[name].id, "p", D)], "p", ACCOUNT, chat, True,
                              directory=D)


@pytest.mark.parametrize(("method", "path", "scope", "action"), [
    ("PUT", f"{ACCOUNT}/deployments/chat", f"{ACCOUNT}/deployments/chat",
     "Microsoft.CognitiveServices/accounts/deployments/write"),
    ("GET", f"{ACCOUNT}/deployments", f"{ACCOUNT}/deployments",
     "Microsoft.CognitiveServices/accounts/deployments/read"),
    ("POST", f"{ACCOUNT}/listKeys", ACCOUNT, "Microsoft.CognitiveServices/accounts/listKeys/action"),
    ("DELETE", ACCOUNT, ACCOUNT, "Microsoft.CognitiveServices/accounts/delete"),
    ("PATCH", ACCOUNT, ACCOUNT, "Microsoft.CognitiveServices/accounts/write"),
    ("POST", f"{ACCOUNT}/raiBlocklists/words/addRaiBlocklistItems", f"{ACCOUNT}/raiBlocklists/words",
     "Microsoft.CognitiveServices/accounts/raiBlocklists/addRaiBlocklistItems/action"),
    ("PUT", f"{ACCOUNT}/providers/Microsoft.Authorization/roleAssignments/1234",
     f"{ACCOUNT}/providers/Microsoft.Authorization/roleAssignments/1234",
     "Microsoft.Authorization/roleAssignments/write"),
    ("GET", f"{SUB}/providers/Microsoft.CognitiveServices/locations/eastus/models",
     f"{SUB}/providers/Microsoft.CognitiveServices/locations/eastus/models",
     "Microsoft.CognitiveServices/locations/models/read"),
])
def test_arm_paths_name_their_operations(method: str, path: str, scope: str, action: str) -> None:
    operation = arm_operation(method, path)
    assert (operation.scope, operation.action, operation.data) == (scope, action, False)


def test_data_plane_paths_name_their_data_actions() -> None:
    chat = data_operation("POST", "/openai/deployments/gpt/chat/completions", ACCOUNT)
    assert chat == Operation(ACCOUNT, f"{OPENAI}/deployments/chat/completions/action", True,
                             "POST /openai/deployments/{deployment-id}/chat/completions")
    assert data_operation("POST", "/openai/v1/embeddings", ACCOUNT).action == f"{OPENAI}/deployments/embeddings/action"
    assert data_operation("GET", "/openai/files/file-1/content", ACCOUNT).action == f"{OPENAI}/files/read"
    assert data_operation("POST", "/openai/batches/b/cancel", ACCOUNT).action == f"{OPENAI}/batches/cancel/action"
