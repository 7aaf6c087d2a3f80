"""`azurine quota set|show`: a subscription's quota per location and usage name, set by the operator.

Azure sets quota through support requests, not through the Cognitive Services API, so this is a local
administration command on the server's database, as `token get` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from azurine import settings_table
from azurine.config import Settings

if TYPE_CHECKING:
    from azurine.storage.state import StateStore

app = typer.Typer(help="Quota per subscription, location and usage name (OpenAI.<SkuName>.<model>).",
                  no_args_is_help=True)
console = Console()


def _store(data_dir: Path | None) -> StateStore:
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.state import StateStore

    engine = make_engine(Settings.load(data_dir).database_url)
    migrate(engine)
    return StateStore(engine)


def _account_id(store: StateStore, account: str | None, console: Console) -> str | None:
    """The id of the account named `account` (None: every account); exit 1 when there is none of that name."""
    if account is None:
        return None
    record = store.account_named(account)
    if record is None:
        console.print(f"[red]No account named {account}.[/]")
        raise typer.Exit(1)
    return record.id


@app.command("set")
def quota_set(
    usage_name: str = typer.Argument(..., help="e.g. OpenAI.GlobalStandard.qwen2.5-coder-0.5b-instruct"),
    limit: int = typer.Argument(..., min=0, help="Capacity units: thousands of TPM, PTUs, or enqueued tokens."),
    location: str = typer.Option(..., "--location", "-l"),
    subscription: str = typer.Option("00000000-0000-0000-0000-000000000000",
                                     envvar=settings_table.envvar("AZURINE_SUBSCRIPTION")),
    data_dir: Path | None = typer.Option(None, help="The server's data directory [default: ./azurine-data]."),
) -> None:
    """Set one quota; deployments that would go beyond it are refused with InsufficientQuota."""
    if not usage_name.startswith("OpenAI.") or usage_name.count(".") < 2:
        console.print("[red]A usage name looks like OpenAI.<SkuName>.<model>; see `azurine usage list`.[/]")
        raise typer.Exit(2)
    _store(data_dir).set_quota_limit(subscription, location, usage_name, limit)
    console.print(f"{usage_name} in {location} for {subscription}: {limit}")


@app.command("show")
def quota_show(
    location: str = typer.Option(..., "--location", "-l"),
    subscription: str = typer.Option("00000000-0000-0000-0000-000000000000",
                                     envvar=settings_table.envvar("AZURINE_SUBSCRIPTION")),
    data_dir: Path | None = typer.Option(None, help="The server's data directory [default: ./azurine-data]."),
) -> None:
    """The quotas set for a subscription in a location (the rest use the default, AZURINE_DEFAULT_QUOTA)."""
    table = Table("usage name", "limit")
    for name, value in sorted(_store(data_dir).quota_limits(subscription, location).items()):
        table.add_row(name, str(value))
    console.print(table)
