"""`azurine billing show`: the tokens (and seconds of audio) requests actually used, per minute, account and
deployment, and the training fine-tuning jobs did (under the job's id: its hours and trained tokens); `azurine
billing regions`: where each deployment's online requests ran.

The rate limits charge an estimate when a request arrives; these are the settled counts the server's usage
ledger writes (at most a second behind), read straight from the server's database as `quota show` does.
`azurine usage …` is already the `az cognitiveservices usage`-shaped quota command, hence the name.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from azurine.cli.quota import _account_id, _store

app = typer.Typer(help="Settled token and audio usage per minute, account and deployment.", no_args_is_help=True)
console = Console()


def audio_seconds(seconds: float) -> str:
    """Seconds of audio to the hundredth, as the ledger keeps them unrounded; nothing for usage without audio."""
    return f"{seconds:,.2f}" if seconds else ""


def training_hours(seconds: float) -> str:
    """Hours of training to the ten-thousandth (a step of a small model takes under a second), or nothing."""
    return f"{seconds / 3600:,.4f}" if seconds else ""


@app.command("show")
def usage_show(
    account: str | None = typer.Option(None, help="One account's usage, by name (default: every account)."),
    minutes: int = typer.Option(60, min=1, help="How many minutes back, the current one included."),
    data_dir: Path | None = typer.Option(None, help="The server's data directory (default: ./azurine-data)."),
) -> None:
    """The requests and tokens of each minute (UTC); total is prompt + completion, estimated what the rate limit
    charged, billed the total at the deployment's price (batch deployments: half), audio the seconds of audio
    transcriptions and translations heard or speech spoke, training (h) and trained the hours of training steps and
    the tokens a fine-tuning job (named in place of a deployment) was billed for (each empty where there was
    none)."""
    store = _store(data_dir)
    account_id = _account_id(store, account, console)
    since = int(time.time() // 60) - minutes + 1
    names = store.account_names()
    table = Table("minute (UTC)", "account", "deployment", "requests", "prompt", "completion", "total", "estimated",
                  "billed", "audio (s)", "training (h)", "trained")
    for column in table.columns[3:]:
        column.justify = "right"
    for row in store.usage(account_id, since):
        table.add_row(datetime.fromtimestamp(row.minute * 60, UTC).strftime("%H:%M"),
                      names.get(row.account_id, row.account_id), row.deployment, str(row.requests),
                      str(row.prompt_tokens), str(row.completion_tokens),
                      str(row.prompt_tokens + row.completion_tokens), str(row.estimated_tokens),
                      str(row.billed_tokens), audio_seconds(row.audio_seconds), training_hours(row.training_seconds),
                      f"{row.trained_tokens:,}" if row.trained_tokens else "")
    console.print(table)


@app.command("regions")
def usage_regions(
    account: str | None = typer.Option(None, help="One account's requests, by name (default: every account)."),
    minutes: int = typer.Option(60, min=1, help="How many minutes back, the current one included."),
    data_dir: Path | None = typer.Option(None, help="The server's data directory (default: ./azurine-data)."),
) -> None:
    """Where each deployment's online requests ran (the region `x-ms-region` named: this server's own, or a model
    server's the fleet routed them to), with their requests and tokens there."""
    store = _store(data_dir)
    account_id = _account_id(store, account, console)
    since = int(time.time() // 60) - minutes + 1
    names = store.account_names()
    table = Table("account", "deployment", "region", "requests", "prompt", "completion")
    for column in table.columns[3:]:
        column.justify = "right"
    for row in store.usage_by_region(account_id, since):
        table.add_row(names.get(row.account_id, row.account_id), row.deployment, row.region, str(row.requests),
                      str(row.prompt_tokens), str(row.completion_tokens))
    console.print(table)
