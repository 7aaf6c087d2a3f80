"""`azurine subscription create|list|delete`: the subscriptions of this server, made by its operator.

Azure makes subscriptions through billing, not through ARM, so this is a local administration command on the
server's database, as `quota set` is. A principal sees a subscription once it holds a role in it (`azurine role
assignment create --scope /subscriptions/{id}`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from azurine.config import Settings

if TYPE_CHECKING:
    from azurine.storage.subscriptions import SubscriptionRecord, SubscriptionStore

app = typer.Typer(help="The server's subscriptions, as `az account` shows them.", no_args_is_help=True)
console = Console()
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory "
                                              "[default: ./azurine-data].")]


def _open(data_dir: Path | None) -> SubscriptionStore:
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.subscriptions import SubscriptionStore

    engine = make_engine(Settings.load(data_dir).database_url)
    migrate(engine)
    return SubscriptionStore(engine)


def _json(record: SubscriptionRecord) -> dict[str, str]:
    return {"id": record.id, "name": record.display_name, "tenantId": record.tenant_id, "state": record.state}


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise typer.BadParameter(f"'{value[:64]}' is not a GUID", param_hint="--id") from None


@app.command("create")
def subscription_create(
    name: Annotated[str, typer.Option("--name", "-n", help="The display name.")],
    subscription_id: Annotated[str | None, typer.Option("--id", help="The subscription id, a GUID "
                                                        "[default: a new one].")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a subscription and print it as JSON."""
    from azurine.identity.tokens import TENANT_ID

    if not name.strip() or len(name) > 128:
        raise typer.BadParameter("use 1 to 128 characters", param_hint="--name")
    made = _open(data_dir).add_subscription(_guid(subscription_id or str(uuid.uuid4())), name, TENANT_ID)
    if made is None:
        console.print(f"[red]A subscription {subscription_id} exists already.[/]")
        raise typer.Exit(1)
    print(json.dumps(_json(made), indent=2))


@app.command("list")
def subscription_list(
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    data_dir: DataDir = None,
) -> None:
    """Every subscription of the server."""
    records = _open(data_dir).subscriptions()
    if output == "json":
        print(json.dumps([_json(r) for r in records], indent=2))
        return
    table = Table("name", "id", "state")
    for record in records:
        table.add_row(record.display_name, record.id, record.state)
    console.print(table)


@app.command("delete")
def subscription_delete(
    subscription_id: Annotated[str, typer.Option("--id", help="The subscription id.")],
    data_dir: DataDir = None,
) -> None:
    """Delete an empty subscription: one without resource groups (`az group delete` them first)."""
    from azurine.storage.subscriptions import DEFAULT_SUBSCRIPTION, SubscriptionInUse

    wanted = _guid(subscription_id)
    if wanted == DEFAULT_SUBSCRIPTION:
        console.print("[red]The default subscription stays: the default account and `azurine` commands use it.[/]")
        raise typer.Exit(1)
    try:
        removed = _open(data_dir).remove_subscription(wanted)
    except SubscriptionInUse:
        console.print(f"[red]Subscription {wanted} still holds resource groups; delete them first.[/]")
        raise typer.Exit(1) from None
    if not removed:
        console.print(f"[red]No subscription {wanted}.[/]")
        raise typer.Exit(1)
    console.print(f"Deleted subscription {wanted}.")
