"""What recorded usage costs at the price table's prices, and whether PTUs would cost less than pay-as-you-go.

Pure arithmetic over the usage ledger's minutes (`UsageRow`) and what is known of each deployment (`Deployed`): no
database, no clock, so every figure can be checked by hand. The rules are Azure's:

- Standard types (Standard, GlobalStandard, DataZoneStandard, DeveloperTier) pay per token: prompt tokens at the
  input price, completion tokens at the output price, both per million.
- Batch types pay half the price of their Standard counterpart (GlobalBatch: GlobalStandard, DataZoneBatch:
  DataZoneStandard), as the ledger's billed tokens do.
- Provisioned types pay per PTU-hour for as long as they exist, used or not: their tokens cost nothing more.
- A model the table prices per hour of audio (Whisper, `audio_hour`) pays for the seconds of audio its transcriptions
  and translations heard, at that price (batch at half, provisioned nothing more), besides any token price it has.
- Fine-tuning: a job's training pays its base model's `fine_tuning` prices, by the hour of training steps and/or per
  million trained tokens (the ledger records both under the job's id); a fine-tuned deployment's tokens pay the base
  model's token prices, and while it exists it pays `hosting_hour` by the hour (Standard, GlobalStandard,
  DataZoneStandard; DeveloperTier has no hosting fee), from its creation to its deletion (`Hosted`).

The advisor sizes PTUs as the server's admission does (`api/inference/admission.py`): a minute's tokens weigh
prompt + `ptu_output_weight` × completion, and one PTU processes the catalog's `ptu_input_tpm` of them a minute.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from azurine.catalog import Catalog
from azurine.quota.capacity import BATCH, PROVISIONED
from azurine.storage.fine_tuning import FINE_TUNED_MARK
from azurine.storage.state import DeploymentRecord, UsageRow
from azurine.usage.prices import ModelPrices, PriceTable, PtuPurchase

BATCH_SHARE = 0.5  # the share of the Standard price batch tokens pay, as azurine.api.app.BATCH_PRICE
HOURS_PER_MONTH = 730  # the month Azure turns hourly prices into monthly ones with
MILLION = 1_000_000
MINUTES_PER_DAY = 24 * 60
SECONDS_PER_HOUR = 3600

# the pay-as-you-go type whose token prices a batch or provisioned type is costed or compared at
STANDARD_OF = {
    "GlobalBatch": "GlobalStandard", "DataZoneBatch": "DataZoneStandard",
    "GlobalProvisionedManaged": "GlobalStandard", "DataZoneProvisionedManaged": "DataZoneStandard",
    "ProvisionedManaged": "Standard",
}
# the provisioned type that serves a Standard type's traffic from the same places (global, a data zone, a region)
PROVISIONED_OF = {
    "GlobalStandard": "GlobalProvisionedManaged", "DeveloperTier": "GlobalProvisionedManaged",
    "DataZoneStandard": "DataZoneProvisionedManaged", "Standard": "ProvisionedManaged",
    **{sku: sku for sku in PROVISIONED},
}

Recommendation = Literal["PTU", "pay-as-you-go"]
TRAINING = "FineTuning"  # the type a fine-tuning job's usage is costed as (the ledger records it under the job's id)
# the types a fine-tuned deployment pays hosting on, by the hour; DeveloperTier has no hosting fee
HOSTED = frozenset({"Standard", "GlobalStandard", "DataZoneStandard"})


def base_of(model: str) -> str | None:
    """The base model's name in a fine-tuned model's (`<base>.ft-<job>[-suffix]`); None for any other model."""
    at = model.lower().find(FINE_TUNED_MARK)
    return model[:at] if at > 0 else None


@dataclass(frozen=True)
class Deployed:
    """What the arithmetic needs to know of a deployment."""

    account_id: str
    name: str
    model: str
    sku: str
    capacity: int  # PTUs, for a provisioned deployment
    since_minute: int  # the first minute (unix seconds // 60) it is costed from
    ptu_input_tpm: int = 0  # the catalog's: weighted tokens one PTU processes per minute
    ptu_output_weight: float = 1.0  # the catalog's: what one completion token weighs against a prompt token
    base_model: str | None = None  # a fine-tuned model's (or a fine-tuning job's) base, whose prices it pays

    @property
    def priced_as(self) -> str:
        """The model whose prices apply: the base of a fine-tuned model, else the model itself."""
        return self.base_model or self.model


@dataclass(frozen=True)
class Hosted:
    """A period in which a deployment of a fine-tuned model existed, with its type: it pays hosting by the hour."""

    account_id: str
    deployment: str
    model: str  # the fine-tuned model
    base_model: str  # whose `fine_tuning.hosting_hour` it pays
    sku: str
    start: float  # unix seconds
    end: float  # unix seconds: its deletion or change, or now

    def hours(self, period: Period) -> float:
        """The hours of `period` it existed in."""
        start, end = max(self.start, period.start_minute * 60.0), min(self.end, period.end_minute * 60.0)
        return max(0.0, end - start) / SECONDS_PER_HOUR


def deployed_from(account_id: str, record: DeploymentRecord, catalog: Catalog) -> Deployed:
    """A stored deployment as the arithmetic sees it: its catalog model's name and PTU figures (a fine-tuned model's
    base's), and its creation's minute, from which a provisioned deployment is costed."""
    return deployed_as(account_id, record.name, record.model_name, record.sku_name, record.sku_capacity,
                       record.created_at, catalog, record.model_version)


def deployed_as(account_id: str, name: str, model: str, sku: str, capacity: int, since: float, catalog: Catalog,
                version: str | None = None) -> Deployed:
    """What the arithmetic knows of a deployment (or, with `sku` TRAINING, a fine-tuning job) of `model`."""
    base = base_of(model)
    spec = catalog.get(base) if base else catalog.get(model, version) or catalog.get(model)
    shown = model if base else spec.name if spec else model
    return Deployed(account_id=account_id, name=name, model=shown, sku=sku, capacity=capacity,
                    since_minute=int(since // 60), ptu_input_tpm=spec.ptu_input_tpm if spec else 0,
                    ptu_output_weight=spec.ptu_output_weight if spec else 1.0,
                    base_model=(spec.name if spec else base) if base else None)


@dataclass(frozen=True)
class Period:
    """Whole minutes from `start_minute` up to, not including, `end_minute`."""

    start_minute: int
    end_minute: int

    @property
    def hours(self) -> float:
        return max(0, self.end_minute - self.start_minute) / 60

    def of(self, deployed: Deployed) -> Period:
        """The part of the period the deployment existed in."""
        return Period(max(self.start_minute, deployed.since_minute), self.end_minute)


@dataclass
class CostLine:
    """One row of `cost show`: a deployment's, or a day's, usage and what it cost."""

    key: str  # the deployment's name, or the day (YYYY-MM-DD, UTC)
    account_id: str = ""
    model: str = ""
    sku: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    token_cost: float = 0.0
    audio_cost: float = 0.0
    ptu_hours: float = 0.0  # PTUs × hours
    ptu_cost: float = 0.0
    training_seconds: float = 0.0
    trained_tokens: int = 0
    training_cost: float = 0.0
    hosting_hours: float = 0.0
    hosting_cost: float = 0.0
    priced: bool = True  # False: its usage could not be priced (see CostReport.unpriced)

    @property
    def cost(self) -> float:
        return self.token_cost + self.audio_cost + self.ptu_cost + self.training_cost + self.hosting_cost


@dataclass(frozen=True)
class CostReport:
    lines: list[CostLine]
    unpriced: tuple[str, ...] = ()  # "account-id/deployment: why", for usage left out of the costs

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)


def token_cost(prices: ModelPrices, sku: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What the tokens cost on a deployment of `sku`; None when the table has no price for that type."""
    if sku in PROVISIONED:
        return 0.0  # paid by the PTU-hour
    price = prices.token_price(STANDARD_OF.get(sku, sku))
    if price is None:
        return None
    share = BATCH_SHARE if sku in BATCH else 1.0
    return (prompt_tokens * price.input + completion_tokens * price.output) / MILLION * share


def audio_cost(prices: ModelPrices, sku: str, seconds: float) -> float:
    """What `seconds` of audio cost on a deployment of `sku`: nothing where the model has no price per audio hour."""
    if prices.audio_hour is None or sku in PROVISIONED:
        return 0.0
    share = BATCH_SHARE if sku in BATCH else 1.0
    return seconds / SECONDS_PER_HOUR * prices.audio_hour * share


def training_cost(prices: ModelPrices, seconds: float, tokens: int) -> float | None:
    """What a fine-tuning job's training costs: its hours at `training_hour` and its tokens at `training_tokens` per
    million, where the model has them; None when it has neither."""
    tuning = prices.fine_tuning
    if tuning is None or (tuning.training_hour is None and tuning.training_tokens is None):
        return None
    return (seconds / SECONDS_PER_HOUR * (tuning.training_hour or 0.0)
            + tokens / MILLION * (tuning.training_tokens or 0.0))


def hosting_cost(prices: ModelPrices, sku: str, hours: float) -> float | None:
    """What `hours` of a fine-tuned deployment of `sku` cost to host; None when the model has no hosting price."""
    if prices.fine_tuning is None or prices.fine_tuning.hosting_hour is None:
        return None
    return hours * prices.fine_tuning.hosting_hour if sku in HOSTED else 0.0


def ptu_hours(deployed: Deployed, period: Period) -> float:
    """PTUs × the hours of `period` the provisioned deployment existed in (0 for any other type)."""
    if deployed.sku not in PROVISIONED:
        return 0.0
    return deployed.capacity * period.of(deployed).hours


def _day(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d")


def _row_cost(row: UsageRow, deployments: Mapping[tuple[str, str], Deployed],
              prices: PriceTable) -> tuple[float, float, float] | str:
    """What the row's tokens, audio and training cost, or why they cannot be priced."""
    deployed = deployments.get((row.account_id, row.deployment))
    if deployed is None:
        return f"{row.deployment} is no longer deployed, so its type and model are unknown"
    model = prices.model(deployed.priced_as)
    if model is None:
        return f"{deployed.priced_as} is not in the price table"
    if deployed.sku == TRAINING:
        training = training_cost(model, row.training_seconds, row.trained_tokens)
        if training is None:
            return f"{deployed.priced_as} has no fine-tuning training price"
        return 0.0, 0.0, training
    cost = token_cost(model, deployed.sku, row.prompt_tokens, row.completion_tokens)
    if cost is None:
        return f"{deployed.priced_as} has no price for {deployed.sku}"
    return cost, audio_cost(model, deployed.sku, row.audio_seconds), 0.0


def _hosting(hosted: Hosted, prices: PriceTable, period: Period) -> tuple[float, float] | str | None:
    """The hours of `period` a fine-tuned deployment was hosted in, and what they cost; None when it was not hosted
    then, or its type pays no hosting; or why they cannot be priced."""
    hours = hosted.hours(period)
    if hours <= 0 or hosted.sku not in HOSTED:
        return None
    model = prices.model(hosted.base_model)
    cost = hosting_cost(model, hosted.sku, hours) if model is not None else None
    if cost is None:
        return f"{hosted.base_model} has no fine-tuned hosting price"
    return hours, cost


def cost_by_deployment(rows: Iterable[UsageRow], deployments: Mapping[tuple[str, str], Deployed],
                       prices: PriceTable, period: Period, hosted: Iterable[Hosted] = ()) -> CostReport:
    """Each deployment's usage over the period and its cost: tokens for pay-as-you-go and batch types, PTU-hours for
    provisioned ones (every provisioned deployment of `deployments` is costed, with traffic or without), a
    fine-tuning job's training (a line under the job's id), and a fine-tuned deployment's hosting hours (`hosted`,
    deleted deployments among them)."""
    lines: dict[tuple[str, str], CostLine] = {}
    unpriced: dict[tuple[str, str], str] = {}

    def line_for(key: tuple[str, str], model: str = "?", sku: str = "?") -> CostLine:
        if key not in lines:
            deployed = deployments.get(key)
            lines[key] = CostLine(key=key[1], account_id=key[0], model=deployed.model if deployed else model,
                                  sku=deployed.sku if deployed else sku)
        return lines[key]

    for item in hosted:
        key = (item.account_id, item.deployment)
        cost = _hosting(item, prices, period)
        if cost is None:
            continue
        line = line_for(key, item.model, item.sku)
        if isinstance(cost, str):
            unpriced[key] = cost
            line.priced = False
        else:
            line.hosting_hours += cost[0]
            line.hosting_cost += cost[1]

    for key, deployed in deployments.items():
        hours = ptu_hours(deployed, period)
        model = prices.model(deployed.priced_as)
        if hours and model is not None:
            line = line_for(key)
            line.ptu_hours = hours
            line.ptu_cost = hours * model.provisioned[deployed.sku].hourly
        elif hours:
            unpriced[key] = f"{deployed.model} is not in the price table"
            line_for(key).priced = False

    for row in rows:
        if not period.start_minute <= row.minute < period.end_minute:
            continue
        key = (row.account_id, row.deployment)
        line = line_for(key)
        line.requests += row.requests
        line.prompt_tokens += row.prompt_tokens
        line.completion_tokens += row.completion_tokens
        line.audio_seconds += row.audio_seconds
        line.training_seconds += row.training_seconds
        line.trained_tokens += row.trained_tokens
        cost = _row_cost(row, deployments, prices)
        if isinstance(cost, str):
            unpriced[key] = cost
            line.priced = False
        else:
            line.token_cost += cost[0]
            line.audio_cost += cost[1]
            line.training_cost += cost[2]

    ordered = [lines[key] for key in sorted(lines)]
    return CostReport(ordered, tuple(f"{account}/{name}: {why}" for (account, name), why in sorted(unpriced.items())))


def cost_by_day(rows: Iterable[UsageRow], deployments: Mapping[tuple[str, str], Deployed], prices: PriceTable,
                period: Period, hosted: Iterable[Hosted] = ()) -> CostReport:
    """Each UTC day's usage over the period and its cost, every deployment together; a provisioned deployment's
    PTU-hours, and a fine-tuned deployment's hosting hours, fall in the days it existed in, with traffic or
    without."""
    days: dict[str, CostLine] = {}
    unpriced: dict[tuple[str, str], str] = {}

    def line_for(day: str) -> CostLine:
        return days.setdefault(day, CostLine(key=day))

    for item in hosted:
        first_day = max(period.start_minute, int(item.start // 60)) // MINUTES_PER_DAY
        last_day = (min(period.end_minute, math.ceil(item.end / 60)) - 1) // MINUTES_PER_DAY
        for day in range(first_day, last_day + 1):
            cost = _hosting(item, prices, Period(max(period.start_minute, day * MINUTES_PER_DAY),
                                                 min(period.end_minute, (day + 1) * MINUTES_PER_DAY)))
            if isinstance(cost, str):
                unpriced[(item.account_id, item.deployment)] = cost
            elif cost is not None:
                line = line_for(_day(day * MINUTES_PER_DAY))
                line.hosting_hours += cost[0]
                line.hosting_cost += cost[1]

    for key, deployed in deployments.items():
        if deployed.sku not in PROVISIONED:
            continue
        existing = period.of(deployed)
        if existing.hours == 0:
            continue
        model = prices.model(deployed.priced_as)
        if model is None:
            unpriced[key] = f"{deployed.model} is not in the price table"
            continue
        first_day = existing.start_minute // MINUTES_PER_DAY
        last_day = (existing.end_minute - 1) // MINUTES_PER_DAY
        for day in range(first_day, last_day + 1):
            overlap = Period(max(existing.start_minute, day * MINUTES_PER_DAY),
                             min(existing.end_minute, (day + 1) * MINUTES_PER_DAY))
            line = line_for(_day(day * MINUTES_PER_DAY))
            line.ptu_hours += deployed.capacity * overlap.hours
            line.ptu_cost += deployed.capacity * overlap.hours * model.provisioned[deployed.sku].hourly

    for row in rows:
        if not period.start_minute <= row.minute < period.end_minute:
            continue
        line = line_for(_day(row.minute))
        line.requests += row.requests
        line.prompt_tokens += row.prompt_tokens
        line.completion_tokens += row.completion_tokens
        line.audio_seconds += row.audio_seconds
        line.training_seconds += row.training_seconds
        line.trained_tokens += row.trained_tokens
        cost = _row_cost(row, deployments, prices)
        if isinstance(cost, str):
            unpriced[(row.account_id, row.deployment)] = cost
        else:
            line.token_cost += cost[0]
            line.audio_cost += cost[1]
            line.training_cost += cost[2]

    ordered = [days[day] for day in sorted(days)]
    return CostReport(ordered, tuple(f"{account}/{name}: {why}" for (account, name), why in sorted(unpriced.items())))


# the advisor ------------------------------------------------------------------------------------------------------

class NoAdvice(ValueError):
    """A deployment the advisor cannot weigh PTUs for, with the reason."""


@dataclass(frozen=True)
class Advice:
    deployed: Deployed
    standard_sku: str  # whose token prices pay-as-you-go is costed at
    provisioned_sku: str  # whose PTUs are weighed
    purchase: PtuPurchase
    hours: float
    prompt_tokens: int
    completion_tokens: int
    weighted_tokens: float
    payg_cost: float
    peak_minute: int | None  # unix minute of the busiest minute, None without traffic
    peak_minute_tokens: float  # its weighted tokens
    ptus_needed: float  # peak minute ÷ ptu_input_tpm, before rounding
    ptus: int  # rounded up to what can be bought
    ptu_cost: float  # for the period's hours
    ptu_monthly: float
    capacity_per_minute: int  # weighted tokens the PTUs process a minute
    peak_hour: int | None  # unix hour of the busiest hour
    peak_hour_per_minute: float  # its weighted tokens ÷ 60
    utilization: float  # peak_hour_per_minute ÷ capacity_per_minute
    payg_per_million: float | None  # pay-as-you-go USD per 1M weighted tokens of this traffic's mix
    break_even_per_month: float | None  # weighted tokens a month at which PTUs and pay-as-you-go cost the same
    recorded_per_month: float  # the recorded traffic's pace, in weighted tokens a month
    recommendation: Recommendation
    reason: str
    arithmetic: tuple[str, ...] = field(default=())


def usd(amount: float) -> str:
    """Dollars to the cent from a dollar up; under a dollar to three significant digits, as a few thousand tokens
    cost fractions of a cent ($0.45, $0.0263, $0.000165)."""
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    if abs(amount) < 0.000001:
        return "<$0.000001"
    decimals = max(2, 2 - math.floor(math.log10(abs(amount))))
    whole, _, fraction = f"{amount:.{decimals}f}".partition(".")
    return f"${whole}.{fraction[:2]}{fraction[2:].rstrip('0')}"


def _rate(amount: float) -> str:
    """A price as written in the table: at least two decimals, no trailing zeros past them ($0.15, $0.165)."""
    text = f"{amount:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${int(whole):,}.{decimals.ljust(2, '0')}"


def _tokens(count: float) -> str:
    return f"{count / MILLION:,.2f}M" if count >= MILLION else f"{count:,.0f}"


def span(hours: float) -> str:
    """A span of time exactly, to the minute: 1 hour, 2 hours, 50 minutes, 24 hours 50 minutes."""
    whole, minutes = divmod(round(hours * 60), 60)
    parts = [f"{whole:,} hour" + ("s" if whole != 1 else "")] if whole else []
    if minutes or not whole:
        parts.append(f"{minutes} minute" + ("s" if minutes != 1 else ""))
    return " ".join(parts)


def _weight(weight: float) -> str:
    return f"{weight:g}"


def _hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:00 UTC")


def advise(deployed: Deployed, rows: Iterable[UsageRow], prices: ModelPrices | None, period: Period) -> Advice:
    """Pay-as-you-go against PTUs for the deployment's recorded traffic over the part of `period` it existed in.

    The PTUs are those its busiest minute needs, rounded up to a purchasable size; the recommendation is PTUs when
    pay-as-you-go cost more than they would have over the same hours, else pay-as-you-go. `prices` are the
    model's (None: the table has none, which is a `NoAdvice` as a batch deployment is)."""
    if deployed.sku in BATCH:
        raise NoAdvice(f"{deployed.name} is a batch deployment: it pays half the Standard price for waiting up to "
                       "24 hours, and PTUs do not serve batch jobs")
    if deployed.ptu_input_tpm <= 0:
        raise NoAdvice(f"{deployed.model} has no PTU throughput in the model catalog (ptu_input_tpm)")
    if prices is None:
        raise NoAdvice(f"{deployed.model} is not in the price table")
    standard_sku = STANDARD_OF.get(deployed.sku, deployed.sku)
    provisioned_sku = PROVISIONED_OF.get(deployed.sku)
    price = prices.token_price(standard_sku)
    if provisioned_sku is None or price is None:
        raise NoAdvice(f"the price table has no {standard_sku} price for {deployed.model}")
    purchase = prices.provisioned[provisioned_sku]
    window = period.of(deployed)
    hours = window.hours
    weight = deployed.ptu_output_weight

    prompt = completion = 0
    by_minute: dict[int, float] = defaultdict(float)
    for row in rows:
        if (row.account_id, row.deployment) != (deployed.account_id, deployed.name):
            continue
        if not window.start_minute <= row.minute < window.end_minute:
            continue
        prompt += row.prompt_tokens
        completion += row.completion_tokens
        by_minute[row.minute] += row.prompt_tokens + weight * row.completion_tokens
    weighted = prompt + weight * completion
    by_hour: dict[int, float] = defaultdict(float)
    for minute, tokens in by_minute.items():
        by_hour[minute // 60] += tokens

    payg = (prompt * price.input + completion * price.output) / MILLION
    peak_minute = max(by_minute, key=lambda m: (by_minute[m], -m)) if by_minute else None
    peak_tokens = by_minute[peak_minute] if peak_minute is not None else 0.0
    needed = peak_tokens / deployed.ptu_input_tpm
    ptus = purchase.round_up(needed)
    ptu_cost = ptus * purchase.hourly * hours
    monthly = ptus * purchase.hourly * HOURS_PER_MONTH
    capacity = ptus * deployed.ptu_input_tpm
    peak_hour = max(by_hour, key=lambda h: (by_hour[h], -h)) if by_hour else None
    peak_hour_per_minute = by_hour[peak_hour] / 60 if peak_hour is not None else 0.0
    utilization = peak_hour_per_minute / capacity
    per_million = payg / weighted * MILLION if weighted and payg else None
    break_even = monthly / per_million * MILLION if per_million else None
    recorded_per_month = weighted * HOURS_PER_MONTH / hours if hours else 0.0

    lines = [
        f"recorded over {span(hours)}: {prompt:,} prompt + {_weight(weight)} × {completion:,} completion "
        f"tokens = {weighted:,.0f} weighted tokens",
        f"pay-as-you-go at {standard_sku} prices: {prompt:,} × {_rate(price.input)} + {completion:,} × "
        f"{_rate(price.output)} per 1M = {usd(payg)}",
    ]
    if peak_minute is None:
        lines.append(f"no traffic recorded: the smallest {provisioned_sku} purchase is {purchase.minimum} PTUs")
    else:
        lines.append(
            f"busiest minute ({datetime.fromtimestamp(peak_minute * 60, UTC).strftime('%Y-%m-%d %H:%M UTC')}): "
            f"{peak_tokens:,.0f} weighted tokens ÷ {deployed.ptu_input_tpm:,} per PTU = {needed:,.2f} PTUs → {ptus} "
            f"({provisioned_sku} is bought from {purchase.minimum} PTUs in steps of {purchase.increment})")
    lines += [
        f"PTUs over the same time: {ptus} × {_rate(purchase.hourly)} per PTU-hour × {span(hours)} = "
        f"{usd(ptu_cost)}",
        f"PTUs for a month: {ptus} × {_rate(purchase.hourly)} × {HOURS_PER_MONTH} hours = {usd(monthly)}",
    ]
    if per_million is not None and break_even is not None:
        full = capacity * 60 * HOURS_PER_MONTH
        lines += [
            f"pay-as-you-go per 1M weighted tokens of this mix: {usd(payg)} ÷ {weighted / MILLION:,.6g}M = "
            f"{usd(per_million)}",
            f"break-even: {usd(monthly)} ÷ {usd(per_million)} per 1M = {_tokens(break_even)} weighted tokens a month; "
            f"recorded pace: {weighted:,.0f} × {HOURS_PER_MONTH} ÷ {span(hours)} = "
            f"{_tokens(recorded_per_month)} a month",
            f"{ptus} PTUs process at most {capacity:,} a minute × 60 × {HOURS_PER_MONTH} = {_tokens(full)} weighted "
            f"tokens a month, so breaking even needs {break_even / full:,.1%} of that, all month"
            + (" (more than they can carry: at these prices PTUs never cost less)" if break_even > full else ""),
        ]
    else:
        lines.append("break-even: none, pay-as-you-go cost nothing to compare against")
    if peak_hour is not None:
        lines.append(f"busiest hour ({_hour_label(peak_hour)}): {by_hour[peak_hour]:,.0f} weighted tokens ÷ 60 = "
                     f"{peak_hour_per_minute:,.0f} a minute ÷ {capacity:,} the PTUs process = {utilization:.1%} "
                     "utilization")

    if payg > ptu_cost:
        recommendation: Recommendation = "PTU"
        reason = (f"buy {ptus} {provisioned_sku} PTUs: pay-as-you-go cost {usd(payg)} over the {span(hours)}, "
                  f"more than their {usd(ptu_cost)}")
    else:
        recommendation = "pay-as-you-go"
        reason = (f"stay pay-as-you-go: {usd(payg)} over the {span(hours)}, against {usd(ptu_cost)} for "
                  f"{ptus} {provisioned_sku} PTUs")
        if break_even is not None:
            reason += (f"; they pay off from {_tokens(break_even)} weighted tokens a month, and the recorded pace is "
                       f"{_tokens(recorded_per_month)}")
    return Advice(
        deployed=deployed, standard_sku=standard_sku, provisioned_sku=provisioned_sku, purchase=purchase,
        hours=hours, prompt_tokens=prompt, completion_tokens=completion, weighted_tokens=weighted,
        payg_cost=payg, peak_minute=peak_minute, peak_minute_tokens=peak_tokens, ptus_needed=needed, ptus=ptus,
        ptu_cost=ptu_cost, ptu_monthly=monthly, capacity_per_minute=capacity, peak_hour=peak_hour,
        peak_hour_per_minute=peak_hour_per_minute, utilization=utilization, payg_per_million=per_million,
        break_even_per_month=break_even, recorded_per_month=recorded_per_month, recommendation=recommendation,
        reason=reason, arithmetic=tuple(lines),
    )
