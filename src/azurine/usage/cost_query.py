"""Azure Cost Management's Query API over the usage ledger: a `QueryDefinition` read and checked (`parse_query`),
the charges of the accounts in its scope (`charges`), and the answer's columns and rows (`answer`, `page`).

Costs are `azurine cost show`'s arithmetic (`usage/cost.py`) at the price table's prices: tokens at the deployment
type's price per million (batch at half), audio at a model's price per audio hour where it has one (Whisper),
provisioned deployments by the PTU-hour for the hours they existed in, a fine-tuning job's training by its hours
(and/or its tokens) and a fine-tuned deployment's hosting by the hour. Azure's cost records name a resource, the
account, and a meter; Azure OpenAI's meters are per model, token direction (or audio) and deployment type, so a charge
here is one account's deployment's meter in one bucket of time (an hour, or a UTC day). The deployment's name is no
Azure dimension: Azurine offers it as `DeploymentName`, its own.

Everything a query may ask is bounded: at most a year, an hour's grain over at most 31 days, two aggregations, two
groupings, a filter at most five levels deep; answers come in pages of 1,000 rows.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azurine.quota.capacity import PROVISIONED
from azurine.storage.state import AccountRecord, UsageRow
from azurine.usage.cost import (
    HOSTED,
    MILLION,
    SECONDS_PER_HOUR,
    TRAINING,
    Deployed,
    Hosted,
    Period,
    audio_cost,
    hosting_cost,
    ptu_hours,
    token_cost,
)
from azurine.usage.prices import PriceTable

CURRENCY = "USD"  # the price table's
MAX_DAYS = 366  # a year, leap or not, whole days at either end
MAX_HOURLY_DAYS = 31
MAX_AGGREGATIONS = 2
MAX_GROUPINGS = 2
MAX_FILTER_DEPTH = 5
MAX_FILTER_NODES = 64
MAX_FILTER_VALUES = 100
MAX_TEXT = 256
PAGE_ROWS = 1000
MINUTES_PER_DAY = 24 * 60

TYPES = ("ActualCost", "AmortizedCost", "Usage")  # the same figures: Azurine has no reservations to amortize
TIMEFRAMES = ("MonthToDate", "BillingMonthToDate", "TheCurrentMonth", "TheLastMonth", "TheLastBillingMonth",
              "WeekToDate", "Custom")
GRANULARITIES = ("None", "Daily", "Monthly", "Hourly")  # Hourly is Azurine's own
COST_COLUMNS = ("Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD")
AGGREGABLE = (*COST_COLUMNS, "UsageQuantity")

# what the meters are called, by deployment type: Azure's names abbreviate the deployment's reach the same way
TOKEN_REACH = {"GlobalStandard": "glbl", "DeveloperTier": "dev", "DataZoneStandard": "DZone", "Standard": "regnl",
               "GlobalBatch": "glbl batch", "DataZoneBatch": "DZone batch"}
PTU_METER = {"GlobalProvisionedManaged": "Provisioned Managed Global Unit",
             "DataZoneProvisionedManaged": "Provisioned Managed Data Zone Unit",
             "ProvisionedManaged": "Provisioned Managed Regional Unit"}
PROVIDER = "Microsoft.CognitiveServices"
FINE_TUNED = "ft"  # in the meters of a fine-tuned model's usage, after its base model's name


def meter_model(deployed: Deployed) -> str:
    """The model a meter names: a fine-tuned model's base, marked as fine-tuned, else the model."""
    return f"{deployed.base_model} {FINE_TUNED}" if deployed.base_model else deployed.model


class CostQueryError(ValueError):
    """A query that cannot be answered, with what to ask instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Charge:
    """One meter's usage by one deployment of one account in one bucket of time, priced."""

    account: AccountRecord
    deployment: str
    meter: str
    bucket: int  # the bucket's first minute (unix seconds // 60)
    quantity: float  # tokens, hours of audio, or PTU-hours
    cost: float


def resource_id(account: AccountRecord) -> str:
    """The account's id as Azure's cost records write resource ids: in lower case."""
    return (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/{PROVIDER}/"
            f"accounts/{account.name}").lower()


def _group(charge: Charge) -> str:
    return charge.account.resource_group.lower()


DIMENSIONS: dict[str, Callable[[Charge], str]] = {
    "ResourceId": lambda c: resource_id(c.account),
    "ResourceGroupName": _group,
    "ResourceGroup": _group,
    "ResourceType": lambda c: f"{PROVIDER}/accounts".lower(),
    "ResourceLocation": lambda c: c.account.location.lower(),
    "SubscriptionId": lambda c: c.account.subscription_id,
    "ServiceName": lambda c: "Cognitive Services",
    "ServiceFamily": lambda c: "AI + Machine Learning",
    "MeterCategory": lambda c: "Cognitive Services",
    "MeterSubcategory": lambda c: "Azure OpenAI",
    "Meter": lambda c: c.meter,
    "ChargeType": lambda c: "Usage",
    "PricingModel": lambda c: "OnDemand",
    "PublisherType": lambda c: "Azure",
    "DeploymentName": lambda c: c.deployment,  # Azurine's own
}
_DIMENSION_NAMES = {name.lower(): name for name in DIMENSIONS}


def _tag(charge: Charge, key: str) -> str | None:
    lowered = key.lower()
    return next((value for name, value in charge.account.tags.items() if name.lower() == lowered), None)


# the query ----------------------------------------------------------------------------------------------------------

Predicate = Callable[[Charge], bool]


@dataclass(frozen=True)
class Aggregation:
    alias: str
    column: str  # one of AGGREGABLE


@dataclass(frozen=True)
class Grouping:
    kind: str  # "Dimension" or "TagKey"
    name: str  # the dimension's name as Azure writes it, or the tag's key


@dataclass(frozen=True)
class CostQuery:
    type: str
    period: Period  # whole minutes, the end not included and never past the current minute
    granularity: str  # one of GRANULARITIES
    aggregations: tuple[Aggregation, ...]
    groupings: tuple[Grouping, ...]
    matches: Predicate

    @property
    def unit(self) -> int:
        """The minutes each of the ledger's sums spans: an hour for Hourly, else a UTC day."""
        return 60 if self.granularity == "Hourly" else MINUTES_PER_DAY


def _fields(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object's members by Azure's names, which it reads in any case; any other member is refused."""
    if not isinstance(value, dict):
        raise CostQueryError(f"'{where}' must be an object.")
    names = {name.lower(): name for name in allowed}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = names.get(key.lower())
        if name is None:
            raise CostQueryError(f"'{where}' has '{key[:MAX_TEXT]}', which Azurine does not know; it takes "
                                 f"{', '.join(allowed)}.")
        if name in out:
            raise CostQueryError(f"'{where}' gives '{name}' twice.")
        out[name] = item
    return out


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CostQueryError(f"'{where}' must be a non-empty string.")
    if len(value) > MAX_TEXT:
        raise CostQueryError(f"'{where}' is longer than {MAX_TEXT} characters.")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    text = _text(value, where)
    found = next((choice for choice in choices if choice.lower() == text.lower()), None)
    if found is None:
        raise CostQueryError(f"'{where}' is '{text}'; it must be one of {', '.join(choices)}.")
    return found


def _instant(value: Any, where: str) -> datetime:
    text = _text(value, where)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CostQueryError(f"'{where}' is '{text}', not a date and time (2025-06-01T00:00:00Z).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _period(timeframe: str, time_period: Any, now: datetime) -> Period:
    """The minutes a timeframe covers, up to and including the current one. Azurine's billing month is the calendar
    month and its week starts on Monday, both in UTC."""
    now = now.astimezone(UTC)
    current = _minute(now) + 1  # the current minute included
    if timeframe != "Custom":
        if time_period is not None:
            raise CostQueryError(f"'timePeriod' is given only with the timeframe Custom, not {timeframe}.")
        if timeframe in ("MonthToDate", "BillingMonthToDate", "TheCurrentMonth"):
            return Period(_minute(_month_start(now)), current)
        if timeframe == "WeekToDate":
            monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
            return Period(_minute(monday), current)
        this_month = _month_start(now)
        return Period(_minute(_month_start(this_month - timedelta(days=1))), _minute(this_month))
    if time_period is None:
        raise CostQueryError("The timeframe Custom needs 'timePeriod' with 'from' and 'to'.")
    given = _fields(time_period, "timePeriod", ("from", "to"))
    if "from" not in given or "to" not in given:
        raise CostQueryError("'timePeriod' needs both 'from' and 'to'.")
    start, end = _instant(given["from"], "timePeriod.from"), _instant(given["to"], "timePeriod.to")
    if end < start:
        raise CostQueryError("'timePeriod.to' is before 'timePeriod.from'.")
    if end - start > timedelta(days=MAX_DAYS):
        raise CostQueryError(f"'timePeriod' spans more than {MAX_DAYS} days; ask for a year at most.")
    # `to` is included, as Azure includes it: the minute it falls in counts
    return Period(_minute(start), min(_minute(end) + 1, current))


def _aggregations(value: Any) -> tuple[Aggregation, ...]:
    if value is None:
        raise CostQueryError("'dataset.aggregation' is required: Azurine answers queries that sum a column, e.g. "
                             "{\"totalCost\": {\"name\": \"Cost\", \"function\": \"Sum\"}}.")
    if not isinstance(value, dict) or not value:
        raise CostQueryError("'dataset.aggregation' must be an object of at least one aggregation.")
    if len(value) > MAX_AGGREGATIONS:
        raise CostQueryError(f"'dataset.aggregation' has {len(value)} aggregations; a query has at most "
                             f"{MAX_AGGREGATIONS}.")
    found: list[Aggregation] = []
    for alias, item in value.items():
        where = f"dataset.aggregation.{alias[:MAX_TEXT]}"
        _text(alias, "dataset.aggregation's name")
        fields = _fields(item, where, ("name", "function"))
        if "name" not in fields or "function" not in fields:
            raise CostQueryError(f"'{where}' needs 'name' and 'function'.")
        column = _choice(fields["name"], f"{where}.name", AGGREGABLE)
        _choice(fields["function"], f"{where}.function", ("Sum",))
        if any(a.column == column for a in found):
            raise CostQueryError(f"'dataset.aggregation' sums {column} twice.")
        found.append(Aggregation(alias, column))
    return tuple(found)


def _groupings(value: Any) -> tuple[Grouping, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CostQueryError("'dataset.grouping' must be an array.")
    if len(value) > MAX_GROUPINGS:
        raise CostQueryError(f"'dataset.grouping' has {len(value)} groupings; a query has at most {MAX_GROUPINGS}.")
    found: list[Grouping] = []
    for index, item in enumerate(value):
        where = f"dataset.grouping[{index}]"
        fields = _fields(item, where, ("type", "name"))
        if "type" not in fields or "name" not in fields:
            raise CostQueryError(f"'{where}' needs 'type' and 'name'.")
        kind = _choice(fields["type"], f"{where}.type", ("Dimension", "TagKey"))
        name = _dimension(fields["name"], f"{where}.name") if kind == "Dimension" else _text(fields["name"],
                                                                                             f"{where}.name")
        grouping = Grouping(kind, name)
        if kind == "TagKey" and any(g.kind == "TagKey" for g in found):
            raise CostQueryError("'dataset.grouping' groups by a tag once at most: the answer has one TagKey and one "
                                 "TagValue column.")
        if grouping in found:
            raise CostQueryError(f"'dataset.grouping' groups by {name} twice.")
        found.append(grouping)
    return tuple(found)


def _dimension(value: Any, where: str) -> str:
    text = _text(value, where)
    name = _DIMENSION_NAMES.get(text.lower())
    if name is None:
        raise CostQueryError(f"'{where}' is '{text}', not a dimension of Azurine's cost records; use one of "
                             f"{', '.join(DIMENSIONS)}.")
    return name


def _values(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise CostQueryError(f"'{where}' must be an array of at least one value.")
    if len(value) > MAX_FILTER_VALUES:
        raise CostQueryError(f"'{where}' has {len(value)} values; a comparison takes at most {MAX_FILTER_VALUES}.")
    return frozenset(_text(item, f"{where}[{index}]").lower() for index, item in enumerate(value))


def _filter(value: Any, where: str, depth: int, budget: list[int]) -> Predicate:
    """A filter as a test of one charge: `and` and `or` of two or more filters, or `dimensions` or `tags` compared
    with `In` (values in any case)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise CostQueryError(f"'dataset.filter' has more than {MAX_FILTER_NODES} expressions.")
    if depth > MAX_FILTER_DEPTH:
        raise CostQueryError(f"'dataset.filter' nests more than {MAX_FILTER_DEPTH} levels deep.")
    fields = _fields(value, where, ("and", "or", "dimensions", "tags"))
    if len(fields) != 1:
        raise CostQueryError(f"'{where}' must have exactly one of 'and', 'or', 'dimensions' and 'tags'.")
    (kind, inner), = fields.items()
    if kind in ("and", "or"):
        if not isinstance(inner, list) or len(inner) < 2:
            raise CostQueryError(f"'{where}.{kind}' must be an array of at least 2 filters.")
        parts = [_filter(item, f"{where}.{kind}[{index}]", depth + 1, budget) for index, item in enumerate(inner)]
        if kind == "and":
            return lambda charge: all(part(charge) for part in parts)
        return lambda charge: any(part(charge) for part in parts)
    here = f"{where}.{kind}"
    comparison = _fields(inner, here, ("name", "operator", "values"))
    if set(comparison) != {"name", "operator", "values"}:
        raise CostQueryError(f"'{here}' needs 'name', 'operator' and 'values'.")
    _choice(comparison["operator"], f"{here}.operator", ("In",))
    values = _values(comparison["values"], f"{here}.values")
    if kind == "dimensions":
        read = DIMENSIONS[_dimension(comparison["name"], f"{here}.name")]
        return lambda charge: read(charge).lower() in values
    key = _text(comparison["name"], f"{here}.name")
    return lambda charge: (_tag(charge, key) or "").lower() in values


def parse_query(body: Any, now: datetime) -> CostQuery:
    """The query a request's body asks, checked whole; a `CostQueryError` says what is wrong."""
    if not isinstance(body, dict):
        raise CostQueryError("The request body must be a JSON object, a QueryDefinition.")
    fields = _fields(body, "the request body", ("type", "timeframe", "timePeriod", "dataset"))
    for required in ("type", "timeframe", "dataset"):
        if required not in fields:
            raise CostQueryError(f"'{required}' is required.")
    kind = _choice(fields["type"], "type", TYPES)
    timeframe = _choice(fields["timeframe"], "timeframe", TIMEFRAMES)
    period = _period(timeframe, fields.get("timePeriod"), now)
    dataset = _fields(fields["dataset"], "dataset", ("granularity", "configuration", "aggregation", "grouping",
                                                      "filter"))
    granularity = "None"
    if dataset.get("granularity") is not None:
        granularity = _choice(dataset["granularity"], "dataset.granularity", GRANULARITIES)
    if granularity == "Hourly" and period.end_minute - period.start_minute > MAX_HOURLY_DAYS * MINUTES_PER_DAY:
        raise CostQueryError(f"The granularity Hourly covers at most {MAX_HOURLY_DAYS} days; ask for Daily.")
    if dataset.get("configuration") is not None:  # Azure ignores it when the query aggregates, and this one must
        _fields(dataset["configuration"], "dataset.configuration", ("columns",))
    matches: Predicate = lambda charge: True  # noqa: E731
    if dataset.get("filter") is not None:
        matches = _filter(dataset["filter"], "dataset.filter", 1, [MAX_FILTER_NODES])
    return CostQuery(type=kind, period=period, granularity=granularity,
                     aggregations=_aggregations(dataset.get("aggregation")),
                     groupings=_groupings(dataset.get("grouping")), matches=matches)


# the charges --------------------------------------------------------------------------------------------------------

def _training(account: AccountRecord, row: UsageRow, deployed: Deployed, prices: PriceTable) -> list[Charge]:
    """A fine-tuning job's training: a meter of hours and one of tokens, each where the base model has its price."""
    model = prices.model(deployed.priced_as)
    tuning = model.fine_tuning if model is not None else None
    if tuning is None:
        return []
    found = []
    if row.training_seconds and tuning.training_hour is not None:
        hours = row.training_seconds / SECONDS_PER_HOUR
        found.append(Charge(account, row.deployment, f"{deployed.priced_as} {FINE_TUNED} Training Hours", row.minute,
                            hours, hours * tuning.training_hour))
    if row.trained_tokens and tuning.training_tokens is not None:
        found.append(Charge(account, row.deployment, f"{deployed.priced_as} {FINE_TUNED} Training Tokens",
                            row.minute, row.trained_tokens, row.trained_tokens / MILLION * tuning.training_tokens))
    return found


def _hosting(query: CostQuery, accounts: Mapping[str, AccountRecord], hosted: Iterable[Hosted],
             prices: PriceTable) -> list[Charge]:
    """Each fine-tuned deployment's hosting hours in every bucket of the period it existed in."""
    found = []
    for item in hosted:
        account = accounts.get(item.account_id)
        model = prices.model(item.base_model)
        if account is None or model is None or item.sku not in HOSTED:
            continue
        meter = f"{model.name} {FINE_TUNED} Hosting {TOKEN_REACH.get(item.sku, item.sku)} Hours"
        first = max(query.period.start_minute, int(item.start // 60))
        bucket = first - first % query.unit
        while bucket < query.period.end_minute and bucket * 60 < item.end:
            hours = item.hours(Period(max(query.period.start_minute, bucket),
                                      min(query.period.end_minute, bucket + query.unit)))
            cost = hosting_cost(model, item.sku, hours)
            if hours and cost is not None:
                found.append(Charge(account, item.deployment, meter, bucket, hours, cost))
            bucket += query.unit
    return found


def charges(query: CostQuery, sums: Iterable[UsageRow], accounts: Mapping[str, AccountRecord],
            deployments: Mapping[tuple[str, str], Deployed], prices: PriceTable,
            hosted: Iterable[Hosted] = ()) -> list[Charge]:
    """The priced charges of the period: each deployment's tokens, and hours of audio where its model is priced by
    them, per meter and bucket (`sums`, the ledger's minutes summed per `query.unit`), each fine-tuning job's
    training, each provisioned deployment's PTU-hours in every bucket it existed in, and each fine-tuned deployment's
    hosting hours (`hosted`).
    Usage that cannot be priced (a deployment deleted before its periods were recorded, a model the price table
    lacks) is left out, as `azurine cost show` leaves it out of its costs."""
    found: list[Charge] = []
    for row in sums:
        account = accounts.get(row.account_id)
        deployed = deployments.get((row.account_id, row.deployment))
        model = prices.model(deployed.priced_as) if deployed else None
        if account is None or deployed is None or model is None or deployed.sku in PROVISIONED:
            continue
        if deployed.sku == TRAINING:
            found += _training(account, row, deployed, prices)
            continue
        reach = TOKEN_REACH.get(deployed.sku, deployed.sku)
        named = meter_model(deployed)
        for direction, tokens, cost in (
                ("Inp", row.prompt_tokens, token_cost(model, deployed.sku, row.prompt_tokens, 0)),
                ("Outp", row.completion_tokens, token_cost(model, deployed.sku, 0, row.completion_tokens))):
            if tokens and cost is not None:
                found.append(Charge(account, row.deployment, f"{named} {direction} {reach} Tokens",
                                    row.minute, tokens, cost))
        # audio is priced where the model has an audio price and the type a token price (else `cost show` leaves
        # the whole row unpriced)
        if row.audio_seconds and model.audio_hour is not None and token_cost(model, deployed.sku, 0, 0) is not None:
            found.append(Charge(account, row.deployment, f"{named} Audio {reach} Hours", row.minute,
                                row.audio_seconds / SECONDS_PER_HOUR,
                                audio_cost(model, deployed.sku, row.audio_seconds)))
    found += _hosting(query, accounts, hosted, prices)
    period, unit = query.period, query.unit
    for (account_id, name), deployed in deployments.items():
        account = accounts.get(account_id)
        model = prices.model(deployed.priced_as)
        if account is None or model is None or deployed.sku not in PROVISIONED:
            continue
        hourly = model.provisioned[deployed.sku].hourly
        existing = period.of(deployed)
        bucket = existing.start_minute - existing.start_minute % unit
        while bucket < existing.end_minute:
            hours = ptu_hours(deployed, Period(max(existing.start_minute, bucket),
                                               min(existing.end_minute, bucket + unit)))
            if hours:
                found.append(Charge(account, name, PTU_METER[deployed.sku], bucket, hours, hours * hourly))
            bucket += unit
    return [charge for charge in found if query.matches(charge)]


# the answer ---------------------------------------------------------------------------------------------------------

def _when(bucket: int, granularity: str) -> int | str:
    moment = datetime.fromtimestamp(bucket * 60, UTC)
    if granularity == "Daily":
        return int(moment.strftime("%Y%m%d"))
    if granularity == "Monthly":
        return _month_start(moment).strftime("%Y-%m-%dT%H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:00:00")


TIME_COLUMNS = {"Daily": ("UsageDate", "Number"), "Monthly": ("BillingMonth", "Datetime"),
                "Hourly": ("UsageDateTime", "Datetime")}


def answer(query: CostQuery, found: Iterable[Charge]) -> tuple[list[dict[str, str]], list[list[Any]]]:
    """The answer's columns and every row, as Azure orders the columns: the sums, the groupings, the time, and the
    currency where a cost is summed; rows by time, then by their groupings' values."""
    columns = [{"name": a.column, "type": "Number"} for a in query.aggregations]
    for grouping in query.groupings:
        if grouping.kind == "TagKey":
            columns += [{"name": "TagKey", "type": "String"}, {"name": "TagValue", "type": "String"}]
        else:
            columns.append({"name": grouping.name, "type": "String"})
    time_column = TIME_COLUMNS.get(query.granularity)
    if time_column:
        columns.append({"name": time_column[0], "type": time_column[1]})
    costed = any(a.column in COST_COLUMNS for a in query.aggregations)
    if costed:
        columns.append({"name": "Currency", "type": "String"})

    totals: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])  # cost, quantity
    for charge in found:
        key: list[Any] = []
        for grouping in query.groupings:
            if grouping.kind == "TagKey":
                value = _tag(charge, grouping.name)
                key += [grouping.name if value is not None else "", value or ""]
            else:
                key.append(DIMENSIONS[grouping.name](charge))
        when = _when(charge.bucket, query.granularity) if time_column else ""
        sums = totals[(when, *key)]
        sums[0] += charge.cost
        sums[1] += charge.quantity

    rows = []
    for (when, *key), (cost, quantity) in sorted(totals.items(), key=lambda item: tuple(map(str, item[0]))):
        row: list[Any] = [quantity if a.column == "UsageQuantity" else cost for a in query.aggregations]
        row += key
        if time_column:
            row.append(when)
        if costed:
            row.append(CURRENCY)
        rows.append(row)
    return columns, rows


def page(rows: list[list[Any]], token: str | None) -> tuple[list[list[Any]], str | None]:
    """One page of the rows from where `token` (a previous page's `$skiptoken`) says, and the next page's token."""
    offset = 0
    if token is not None:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii"))
        except (ValueError, UnicodeError, binascii.Error):
            offset = -1
        if not 0 <= offset <= len(rows):
            raise CostQueryError("'$skiptoken' is not one this query's nextLink gave.")
    end = offset + PAGE_ROWS
    following = base64.urlsafe_b64encode(str(end).encode("ascii")).decode("ascii") if end < len(rows) else None
    return rows[offset:end], following
