"""`azurine cost show|advise`: what the recorded usage costs at Azure's prices, and whether PTUs would cost less.

Both read the usage ledger's minutes straight from the server's database, as `billing show` does, and price them with
the price table (`catalog/prices.toml`, or the file `--prices` or `AZURINE_PRICES` names). The arithmetic is in
`azurine.usage.cost`; this module reads, and prints.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from azurine.catalog import load_catalog
from azurine.cli.quota import _account_id, _store
from azurine.cli.usage import audio_seconds

# pricing and reading the usage need the state store, and importing SQLAlchemy and Alembic for it took 0.27 s at the
# start of every command (0.6 s in all for `azurine account list`): the two commands here import them when they run
if TYPE_CHECKING:
    from azurine.storage.state import UsageRow
    from azurine.usage.cost import CostLine, CostReport, Deployed, Hosted, Period
    from azurine.usage.prices import PriceTable

app = typer.Typer(help="What the recorded usage costs at Azure's prices, and whether PTUs would cost less.",
                  no_args_is_help=True)
console = Console()

_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
SINCE_HELP = ("How far back: a duration (90m, 12h, 30d, 2w) or a UTC date or time (2025-06-01, 2025-06-01T12:00); "
              "up to now.")
PRICES_HELP = "A price file to use (default: the one AZURINE_PRICES names, else the table packaged with Azurine)."
DATA_DIR_HELP = "The server's data directory (default: ./azurine-data)."


class By(StrEnum):
    deployment = "deployment"
    day = "day"


def _now() -> float:
    return time.time()


def period_since(since: str, now: float) -> Period:
    """The whole minutes from `since` up to and including the current one."""
    from azurine.usage.cost import Period

    end = int(now // 60) + 1
    duration = _DURATION.fullmatch(since.strip().lower())
    if duration:
        return Period(end - int(duration.group(1)) * _MINUTES[duration.group(2)], end)
    try:
        start = datetime.fromisoformat(since.strip())
    except ValueError:
        raise typer.BadParameter(f"{since!r} is neither a duration (30d, 12h) nor a date (2025-06-01)",
                                 param_hint="--since") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    minute = int(start.timestamp() // 60)
    if minute >= end:
        raise typer.BadParameter(f"{since} is not in the past", param_hint="--since")
    return Period(minute, end)


def _prices(path: Path | None) -> PriceTable:
    from azurine.usage.prices import PriceFileError, load_prices

    try:
        return load_prices(path)
    except PriceFileError as error:
        console.print(f"[red]Cannot use the price file: {escape(str(error))}[/]")
        raise typer.Exit(2) from None


@dataclass(frozen=True)
class Read:
    """What a cost command reads: the account names, the period, the ledger's minutes in it, what is known of each
    deployment (and fine-tuning job) they were recorded under, and the fine-tuned deployments' hosting periods."""

    names: dict[str, str]
    period: Period
    rows: list[UsageRow]
    deployments: dict[tuple[str, str], Deployed]
    hosted: list[Hosted]
    live: frozenset[tuple[str, str]]  # the deployments that exist now


def _read(data_dir: Path | None, account: str | None, since: str) -> Read:
    from azurine.storage.content import ContentSealer
    from azurine.storage.fine_tuning import FineTuningStore
    from azurine.usage.billed import billed_deployments, hosted_periods

    now = _now()
    period = period_since(since, now)
    store = _store(data_dir)
    account_id = _account_id(store, account, console)
    names = store.account_names()
    ids = [account_id] if account_id else sorted(names)
    # only the jobs' models are read, never their sealed adapters, so no data key is needed
    jobs = FineTuningStore(store.engine, ContentSealer())
    with console.status("Reading the usage ledger…"):
        rows = [row for row in store.usage(account_id, period.start_minute) if row.minute < period.end_minute]
        deployments = billed_deployments(store, jobs, load_catalog(), ids, period)
        hosted = hosted_periods(store, ids, period, now)
        live = frozenset((account_id, d.name) for account_id in ids for d in store.deployments(account_id))
    return Read(names, period, rows, deployments, hosted, live)


def _when(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M")


def _amount(value: float) -> str:
    return f"{value:,.2f}" if value != int(value) else f"{int(value):,}"


def _hours(value: float) -> str:
    return f"{value:,.2f}" if value else ""


def _fine_tuning(line: CostLine) -> list[str]:
    """The fine-tuning columns: hours of training, trained tokens, hours of hosting (empty where there were none)."""
    return [_hours(line.training_seconds / 3600), f"{line.trained_tokens:,}" if line.trained_tokens else "",
            _hours(line.hosting_hours)]


def _print_unpriced(report: CostReport, names: dict[str, str]) -> None:
    for entry in report.unpriced:
        account_id, _, rest = entry.partition("/")
        console.print(f"[yellow]Not priced: {escape(names.get(account_id, account_id))}/{escape(rest)}[/]")


@app.command("show")
def cost_show(
    account: str | None = typer.Option(None, help="One account's costs, by name (default: every account)."),
    by: By = typer.Option(By.deployment, help="One row per deployment, or per day (UTC)."),
    since: str = typer.Option("30d", help=SINCE_HELP),
    prices: Path | None = typer.Option(None, help=PRICES_HELP),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
) -> None:
    """What the recorded usage cost: tokens at the deployment type's price per million (batch deployments at 50%),
    audio at the model's price per audio hour where it has one (Whisper), provisioned deployments by PTU-hours (the
    PTUs they have now, for the hours of the period they existed in)."""
    from azurine.quota.capacity import PROVISIONED
    from azurine.usage.cost import CostLine, cost_by_day, cost_by_deployment, span, usd

    table_of_prices = _prices(prices)
    read = _read(data_dir, account, since)
    names, period, rows, deployments = read.names, read.period, read.rows, read.deployments
    console.print(f"From {_when(period.start_minute)} to {_when(period.end_minute)} UTC ({span(period.hours)}), at "
                  f"the prices of {escape(table_of_prices.source)}")
    numbers = ("requests", "prompt", "completion", "audio (s)", "PTU-hours", "training (h)", "trained",
               "hosting (h)", "cost (USD)")
    if by is By.deployment:
        report = cost_by_deployment(rows, deployments, table_of_prices, period, read.hosted)
        table = Table("account", "deployment", "model", "type", *numbers)
        for line in report.lines:
            table.add_row(escape(names.get(line.account_id, line.account_id)), escape(line.key), escape(line.model),
                          line.sku, f"{line.requests:,}", f"{line.prompt_tokens:,}", f"{line.completion_tokens:,}",
                          audio_seconds(line.audio_seconds), _amount(line.ptu_hours) if line.sku in PROVISIONED else "",
                          *_fine_tuning(line), usd(line.cost) if line.priced else "—")
        lead = 4
    else:
        report = cost_by_day(rows, deployments, table_of_prices, period, read.hosted)
        table = Table("day (UTC)", *numbers)
        for line in report.lines:
            table.add_row(line.key, f"{line.requests:,}", f"{line.prompt_tokens:,}", f"{line.completion_tokens:,}",
                          audio_seconds(line.audio_seconds), _amount(line.ptu_hours) if line.ptu_hours else "",
                          *_fine_tuning(line), usd(line.cost))
        lead = 1
    for column in table.columns[lead:]:
        column.justify = "right"
    table.add_section()
    table.add_row("total", *[""] * (lead - 1), f"{sum(line.requests for line in report.lines):,}",
                  f"{sum(line.prompt_tokens for line in report.lines):,}",
                  f"{sum(line.completion_tokens for line in report.lines):,}",
                  audio_seconds(sum(line.audio_seconds for line in report.lines)),
                  _amount(sum(line.ptu_hours for line in report.lines)) if any(
                      line.ptu_hours for line in report.lines) else "",
                  *_fine_tuning(CostLine(key="total", training_seconds=sum(li.training_seconds for li in report.lines),
                                         trained_tokens=sum(li.trained_tokens for li in report.lines),
                                         hosting_hours=sum(li.hosting_hours for li in report.lines))),
                  usd(report.total))
    console.print(table)
    _print_unpriced(report, names)


@app.command("advise")
def cost_advise(
    account: str | None = typer.Option(None, help="One account's deployments, by name (default: every account)."),
    deployment: str | None = typer.Option(None, help="One deployment, by name (default: every one with traffic in "
                                          "the period, and every provisioned one)."),
    since: str = typer.Option("30d", help=SINCE_HELP),
    prices: Path | None = typer.Option(None, help=PRICES_HELP),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
) -> None:
    """Pay-as-you-go against PTUs for each deployment's recorded traffic: the PTUs its busiest minute needs (rounded
    up to what can be bought) and their hourly price over the same hours, the break-even volume with its arithmetic,
    the utilization the busiest hour would give those PTUs, and the cheaper of the two."""
    from azurine.quota.capacity import PROVISIONED
    from azurine.usage.cost import NoAdvice, advise, span, usd

    table_of_prices = _prices(prices)
    read = _read(data_dir, account, since)
    names, period, rows = read.names, read.period, read.rows
    # the advisor weighs what is deployed now: not fine-tuning jobs, nor deployments since deleted
    deployments = {key: d for key, d in read.deployments.items() if key in read.live}
    with_traffic = {(row.account_id, row.deployment) for row in rows}
    chosen = [d for key, d in sorted(deployments.items())
              if (deployment is None and (key in with_traffic or d.sku in PROVISIONED))
              or (deployment is not None and d.name.lower() == deployment.lower())]
    if deployment is not None and not chosen:
        console.print(f"[red]No deployment named {escape(deployment)}"
                      f"{' in ' + escape(account) if account else ''}.[/]")
        raise typer.Exit(1)
    if not chosen:
        console.print(f"No traffic recorded since {_when(period.start_minute)} UTC, and no provisioned deployment.")
        return

    first_minute: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.account_id, row.deployment)
        first_minute[key] = min(first_minute.get(key, row.minute), row.minute)
    advice, skipped = [], []
    for deployed in chosen:
        model = table_of_prices.model(deployed.priced_as)
        key = (deployed.account_id, deployed.name)
        # a deployment re-created under its old name keeps the usage recorded before, so its traffic is weighed
        # from whichever came first
        start = min(deployed.since_minute, first_minute.get(key, deployed.since_minute))
        try:
            advice.append(advise(replace(deployed, since_minute=start), rows, model, period))
        except NoAdvice as reason:
            skipped.append((deployed, str(reason)))

    if advice:
        table = Table("account", "deployment", "type", "over", "pay-as-you-go", "PTUs", "PTU cost",
                      "busiest-hour utilization", "advice")
        for column in table.columns[3:8]:
            column.justify = "right"
        for item in advice:
            table.add_row(escape(names.get(item.deployed.account_id, item.deployed.account_id)),
                          escape(item.deployed.name), item.deployed.sku, span(item.hours), usd(item.payg_cost),
                          f"{item.ptus} {item.provisioned_sku}", usd(item.ptu_cost), f"{item.utilization:.1%}",
                          item.recommendation)
        console.print(table)
    for item in advice:
        deployed = item.deployed
        console.print(f"\n[bold]{escape(names.get(deployed.account_id, deployed.account_id))}/"
                      f"{escape(deployed.name)}[/] ({escape(deployed.model)}, {deployed.sku})")
        for line in item.arithmetic:
            console.print(f"  {escape(line)}")
        if deployed.sku in PROVISIONED:
            now_cost = deployed.capacity * item.purchase.hourly * item.hours
            console.print(f"  it has {deployed.capacity} PTUs now: {usd(now_cost)} over the {span(item.hours)}, "
                          f"{item.peak_hour_per_minute / (deployed.capacity * deployed.ptu_input_tpm):.1%} "
                          "busiest-hour utilization")
        console.print(f"  [bold]{escape(item.reason)}[/]")
    for deployed, reason in skipped:
        console.print(f"[yellow]{escape(names.get(deployed.account_id, deployed.account_id))}/"
                      f"{escape(deployed.name)}: {escape(reason)}[/]")
