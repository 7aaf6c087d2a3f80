"""`azurine role assignment …` (as `az role assignment`) over ARM, and `azurine audit show` from the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from azurine.cli.arm_client import DEFAULT_ENDPOINT
from azurine.cli.manage import CaBundle, DataDir, Endpoint, Subscription, Token, arm
from azurine.identity.roles import BUILT_IN_ROLES, ROLES_BY_NAME

AUTHORIZATION_VERSION = "2022-04-01"
role_app = typer.Typer(help="Role assignments (Azure RBAC), as `az role`.", no_args_is_help=True)
assignment_app = typer.Typer(help="Give, list and remove roles at a scope.", no_args_is_help=True)
role_app.add_typer(assignment_app, name="assignment")
audit_app = typer.Typer(help="The audit log: changes, key reads, role changes and denied requests.",
                        no_args_is_help=True)
console = Console()

# help text is rich markup, where "[/…]" would read as a closing tag
Scope = Annotated[str, typer.Option("--scope", help=escape("/subscriptions/{s}[/resourceGroups/{g}[/providers/"
                                                           "Microsoft.CognitiveServices/accounts/{a}]]"))]


def _role_id(role: str) -> str:
    found = ROLES_BY_NAME.get(role.lower()) or BUILT_IN_ROLES.get(role.rsplit("/", 1)[-1].lower())
    if found is None:
        raise typer.BadParameter(f"no role '{role}'; one of: {', '.join(r.name for r in BUILT_IN_ROLES.values())}",
                                 param_hint="--role")
    return found.id


def _row(table: Table, assignment: dict[str, Any]) -> None:
    props = assignment["properties"]
    role = BUILT_IN_ROLES.get(props["roleDefinitionId"].rsplit("/", 1)[-1].lower())
    table.add_row(assignment["name"], props["principalId"], role.name if role else props["roleDefinitionId"],
                  props["scope"])


@assignment_app.command("create")
def assignment_create(assignee: Annotated[str, typer.Option("--assignee", help="The principal's object id.")],
                      role: Annotated[str, typer.Option("--role", help="A role's name or id.")], scope: Scope,
                      assignee_type: Annotated[str, typer.Option("--assignee-principal-type")] = "User",
                      assignee_tenant: Annotated[str | None, typer.Option(
                          "--assignee-tenant", help="The principal's directory: a trusted Entra tenant's id or "
                          "issuer's URL. By default, the directory of whoever gives the role.")] = None,
                      endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = "",
                      token: Token = None, ca_bundle: CaBundle = None, data_dir: DataDir = None) -> None:
    """Give `--role` to `--assignee` at `--scope`."""
    scope = "/" + scope.strip("/")
    properties = {"roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{_role_id(role)}",
                  "principalId": assignee, "principalType": assignee_type}
    if assignee_tenant:
        properties["principalTenantId"] = assignee_tenant
    body = {"properties": properties}
    with arm(endpoint, subscription or scope.split("/")[2], token, ca_bundle, data_dir) as client:
        made = client.call("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
                                  f"?api-version={AUTHORIZATION_VERSION}", body)
    table = Table("name", "principal", "role", "scope")
    _row(table, made)
    console.print(table)


@assignment_app.command("list")
def assignment_list(scope: Scope, assignee: Annotated[str | None, typer.Option("--assignee")] = None,
                    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = "",
                    token: Token = None, ca_bundle: CaBundle = None, data_dir: DataDir = None) -> None:
    """The assignments at, above and beneath `--scope`."""
    scope = "/" + scope.strip("/")
    query = f"?api-version={AUTHORIZATION_VERSION}" + (f"&$filter=principalId eq '{assignee}'" if assignee else "")
    with arm(endpoint, subscription or scope.split("/")[2], token, ca_bundle, data_dir) as client:
        found = client.call("GET", f"{scope}/providers/Microsoft.Authorization/roleAssignments{query}")
    table = Table("name", "principal", "role", "scope")
    for assignment in found["value"]:
        _row(table, assignment)
    console.print(table)


@assignment_app.command("delete")
def assignment_delete(name: Annotated[str, typer.Option("--name", help="The assignment's name (a GUID).")],
                      scope: Scope, endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = "",
                      token: Token = None, ca_bundle: CaBundle = None, data_dir: DataDir = None) -> None:
    scope = "/" + scope.strip("/")
    with arm(endpoint, subscription or scope.split("/")[2], token, ca_bundle, data_dir) as client:
        client.call("DELETE", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
                              f"?api-version={AUTHORIZATION_VERSION}")
    console.print(f"Removed role assignment {name}.")


@audit_app.command("show")
def audit_show(minutes: Annotated[int, typer.Option(min=1, help="How many minutes back.")] = 60,
               denied: Annotated[bool, typer.Option("--denied", help="Only refusals.")] = False,
               limit: Annotated[int, typer.Option(min=1)] = 100,
               data_dir: Annotated[Path | None, typer.Option(help="The server's data directory.")] = None) -> None:
    """The newest audit events: who did (or was refused) what, where and when."""
    from azurine.cli.quota import _store
    from azurine.storage.access import AccessStore

    store = AccessStore(_store(data_dir).engine)
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    table = Table("time (UTC)", "principal", "action", "scope", "outcome")
    for event in store.audit_events(since, "denied" if denied else None, limit):
        table.add_row(event.at.strftime("%Y-%m-%d %H:%M:%S"), event.principal, event.action, event.scope,
                      event.outcome)
    console.print(table)
