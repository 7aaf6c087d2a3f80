"""`azurine principal …` (as `az ad sp` and `az identity`) and `azurine token …`: the built-in issuer's directory
and keys, from the database in --data-dir, as the operator of the server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from azurine.config import Settings

if TYPE_CHECKING:
    from azurine.identity.directory import Directory
    from azurine.storage.principals import PrincipalRecord
    from azurine.storage.state import StateStore

principal_app = typer.Typer(help="Users, service principals and managed identities of the built-in issuer.",
                            no_args_is_help=True)
secret_app = typer.Typer(help="A service principal's client secrets.", no_args_is_help=True)
principal_app.add_typer(secret_app, name="secret")
token_app = typer.Typer(help="Tokens and signing keys of Azurine's built-in issuer.", no_args_is_help=True)
console = Console()

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory "
                                              "[default: ./azurine-data].")]


class Kind(StrEnum):
    user = "user"
    service_principal = "service-principal"
    managed_identity = "managed-identity"


def _open(data_dir: Path | None) -> tuple[Directory, StateStore]:
    from azurine.identity.directory import Directory
    from azurine.storage.access import AccessStore
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.principals import PrincipalStore
    from azurine.storage.state import StateStore

    engine = make_engine(Settings.load(data_dir).database_url)
    migrate(engine)
    store = StateStore(engine)
    return Directory(PrincipalStore(engine), store, AccessStore(engine)), store


def _found(directory: Directory, name: str) -> PrincipalRecord:
    principal = directory.principals.get(name)
    if principal is None:
        console.print(f"[red]No principal '{name}' (by name, object id or application id).[/]")
        raise typer.Exit(1)
    return principal


@principal_app.command("create")
def principal_create(
    name: Annotated[str, typer.Argument(help="The display name, unique.")],
    kind: Annotated[Kind, typer.Option("--kind", help="What the principal is.")] = Kind.service_principal,
    years: Annotated[float, typer.Option("--years", help="A service principal's first secret lasts this long.")] = 0.5,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="The server's URL, to print a managed "
                                                 "identity's IDENTITY_ENDPOINT.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a principal and print, once, the credential it signs in with (as JSON)."""
    from azurine.identity.tokens import TENANT_ID
    from azurine.storage.principals import PrincipalExists

    directory, _ = _open(data_dir)
    try:
        if kind is Kind.user:
            user = directory.create_user(name)
            out = {"id": user.object_id, "displayName": user.display_name, "tenant": TENANT_ID}
        elif kind is Kind.service_principal:
            sp, secret = directory.create_service_principal(name, timedelta(days=365 * years))
            out = {"appId": sp.app_id, "displayName": sp.display_name, "password": secret, "tenant": TENANT_ID,
                   "id": sp.object_id}
        else:
            identity, header = directory.create_managed_identity(name)
            out = {"clientId": identity.app_id, "principalId": identity.object_id, "name": identity.display_name,
                   "tenantId": TENANT_ID, "IDENTITY_HEADER": header,
                   "IDENTITY_ENDPOINT": f"{endpoint.rstrip('/')}/msi/token" if endpoint else "/msi/token"}
    except PrincipalExists as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    print(json.dumps(out, indent=2))


@principal_app.command("list")
def principal_list(data_dir: DataDir = None) -> None:
    directory, _ = _open(data_dir)
    table = Table("display name", "kind", "object id", "application (client) id", "enabled")
    for p in directory.principals.list():
        table.add_row(p.display_name, p.kind, p.object_id, p.app_id or "", "yes" if p.enabled else "no")
    console.print(table)


@principal_app.command("delete")
def principal_delete(name: Annotated[str, typer.Argument(help="Display name, object id or app id.")],
                     data_dir: DataDir = None) -> None:
    """Delete a principal and its secrets; tokens it holds stay valid until they expire, as in Entra ID."""
    directory, _ = _open(data_dir)
    principal = _found(directory, name)
    directory.delete(principal)
    console.print(f"Deleted {principal.kind} {principal.display_name} ({principal.object_id}).")


@principal_app.command("disable")
def principal_disable(name: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    """Refuse the principal new tokens."""
    directory, _ = _open(data_dir)
    directory.set_enabled(_found(directory, name), False)
    console.print(f"Disabled {name}.")


@principal_app.command("enable")
def principal_enable(name: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    directory, _ = _open(data_dir)
    directory.set_enabled(_found(directory, name), True)
    console.print(f"Enabled {name}.")


@secret_app.command("add")
def secret_add(name: Annotated[str, typer.Argument(help="The service principal.")],
               years: Annotated[float, typer.Option("--years")] = 0.5, data_dir: DataDir = None) -> None:
    """Add a client secret, printed once, beside the existing ones (rotate, then delete the old one)."""
    directory, _ = _open(data_dir)
    principal = _found(directory, name)
    if principal.kind != "ServicePrincipal":
        console.print(f"[red]{name} is a {principal.kind}; only service principals have client secrets.[/]")
        raise typer.Exit(1)
    secret = directory.add_secret(principal.object_id, timedelta(days=365 * years))
    print(json.dumps({"appId": principal.app_id, "password": secret}, indent=2))


@secret_app.command("list")
def secret_list(name: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    directory, _ = _open(data_dir)
    table = Table("key id", "hint", "expires")
    for secret in directory.principals.secrets(_found(directory, name).object_id):
        table.add_row(secret.key_id, secret.hint + "…", secret.expires_at.isoformat())
    console.print(table)


@secret_app.command("delete")
def secret_delete(key_id: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    directory, _ = _open(data_dir)
    if not directory.remove_secret(key_id):
        console.print(f"[red]No secret {key_id}.[/]")
        raise typer.Exit(1)
    console.print(f"Deleted secret {key_id}.")


@token_app.command("get")
def token_get(
    resource: Annotated[str, typer.Option(help="The audience: the management plane, or "
                                          "https://cognitiveservices.azure.com")] = "https://management.azure.com/",
    principal: Annotated[str | None, typer.Option("--principal", help="A user or other principal of the "
                                                  "directory [default: the built-in administrator].")] = None,
    data_dir: DataDir = None,
) -> None:
    """Print a token, as `az account get-access-token` does."""
    from azurine.identity.tokens import TENANT_ID, issue_token
    from azurine.storage.bootstrap import DEFAULT_SUBSCRIPTION

    directory, store = _open(data_dir)
    if principal is None:
        token, expires = issue_token(store, resource)
    else:
        found = _found(directory, principal)
        token, expires = issue_token(store, resource, found.object_id, found.display_name, app_id=found.app_id)
    print(json.dumps({
        "accessToken": token,
        "expiresOn": datetime.fromtimestamp(expires).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": expires,
        "subscription": DEFAULT_SUBSCRIPTION,
        "tenant": TENANT_ID,
        "tokenType": "Bearer",
        "expiresOnUtc": datetime.fromtimestamp(expires, UTC).isoformat(),
    }, indent=2))


@token_app.command("rotate-key")
def token_rotate_key(
    retire_now: Annotated[bool, typer.Option("--retire-now", help="Stop trusting the old keys at once (a key "
                                             "that may have leaked), not after the tokens they signed expire.")]
    = False,
    data_dir: DataDir = None,
) -> None:
    """Sign from now on with a new key; the JWKS publishes both until the old one retires."""
    directory, _ = _open(data_dir)
    kid = directory.rotate_signing_key(retire_now)
    console.print(f"Signing with key {kid}." + (" The old keys verify nothing from now on." if retire_now else ""))


@token_app.command("keys")
def token_keys(data_dir: DataDir = None) -> None:
    """The signing keys that verify tokens, newest first."""
    _, store = _open(data_dir)
    table = Table("key id", "created", "signs")
    for key in store.verifying_keys():
        table.add_row(key.kid, datetime.fromtimestamp(key.created_at, UTC).isoformat(), "yes" if key.active else "no")
    console.print(table)
