"""`azurine key-store create|rotate|disable|enable|list`: the built-in key store's customer-managed keys.

An account uses one with `encryption: {keySource: "Microsoft.KeyVault", keyVaultProperties: {keyName,
keyVersion, keyVaultUri: "https://keys.azurine.local/"}}`. Like `quota`, these work on the server's
database directly: a key store is administered beside the service, not through the Cognitive Services API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from azurine.config import Settings

if TYPE_CHECKING:
    from azurine.storage.data_keys import DataKeys
    from azurine.storage.key_providers.local_store import KeyVersion

app = typer.Typer(help="Customer-managed keys of the built-in key store (keyVaultUri https://keys.azurine.local/).",
                  no_args_is_help=True)
console = Console()

DataDir = Annotated[Path | None, typer.Option(help="The server's data directory (default: ./azurine-data).")]
Version = Annotated[str | None, typer.Option(help="One version (default: every version of the key).")]


def _keys(data_dir: Path | None) -> DataKeys:
    from azurine.storage.data_keys import DataKeys
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.key_providers import KeyProviders

    settings = Settings.load(data_dir)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return DataKeys(engine, KeyProviders.open(engine, settings.data_dir))


def _show(versions: list[KeyVersion]) -> None:
    table = Table("name", "version", "#", "enabled", "created (UTC)")
    for v in versions:
        table.add_row(v.name, v.version, str(v.number), "yes" if v.enabled else "[red]no[/]",
                      datetime.fromtimestamp(v.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@app.command("create")
def create(name: str, data_dir: DataDir = None) -> None:
    """A new key with its first version."""
    try:
        made = _keys(data_dir).providers.local.create(name)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    _show([made])


@app.command("rotate")
def rotate(name: str, data_dir: DataDir = None) -> None:
    """A new version, then every account that follows the key's latest version moves to it (its data key is
    wrapped again; its content is not touched). Accounts pinned to a version stay on it."""
    from azurine.storage.key_providers import LOCAL

    keys = _keys(data_dir)
    try:
        made = keys.providers.local.rotate(name)
    except LookupError as error:
        console.print(f"[red]{error.args[0]}[/]")
        raise typer.Exit(1) from None
    moved, failed = keys.rewrap_following(LOCAL, name)
    _show([made])
    console.print(f"{moved} account data {'key' if moved == 1 else 'keys'} now wrapped by version {made.version}")
    for account_id, reason in failed:
        console.print(f"[yellow]account {account_id} stays on its version: {reason}[/]")
    if failed:
        raise typer.Exit(1)


def _set(name: str, enabled: bool, version: str | None, data_dir: Path | None) -> None:
    try:
        changed = _keys(data_dir).providers.local.set_enabled(name, enabled, version)
    except LookupError as error:
        console.print(f"[red]{error.args[0]}[/]")
        raise typer.Exit(1) from None
    _show(changed)


@app.command("disable")
def disable(name: str, version: Version = None, data_dir: DataDir = None) -> None:
    """Disable the key, or one version: accounts whose data key it wraps can read and write none of their
    content, and their requests are refused, until it is enabled again (within AZURINE_KEY_CACHE_SECONDS)."""
    _set(name, False, version, data_dir)


@app.command("enable")
def enable(name: str, version: Version = None, data_dir: DataDir = None) -> None:
    """Enable the key, or one version, again."""
    _set(name, True, version, data_dir)


@app.command("list")
def list_keys(data_dir: DataDir = None) -> None:
    """Every key and version."""
    _show(_keys(data_dir).providers.local.versions())
