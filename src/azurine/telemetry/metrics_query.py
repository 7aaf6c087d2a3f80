"""Azure Monitor's Metrics API over the stored minutes: the query as `metrics.list` sends it (timespan, interval,
metricnames, aggregation, `$filter`, top, orderby, resultType, rollupby), and the answer in its shape.

A dimension given `'*'`, or more than one value, in `$filter` splits the answer into one time series per value (at
most `top`, ordered by `orderby`); without one the matching minutes are rolled into one series. Buckets start at the
timespan's start and step by the interval; the end is exclusive. An empty bucket carries `total` and `count` of 0
where they were asked, and no average, minimum or maximum (Azure's null).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azurine.storage.metrics import MetricPoint
from azurine.telemetry.azure_metrics import BY_NAME, METRICS, NAMESPACE, RETENTION, TIME_GRAINS, MetricSpec

MAX_METRICS = 20
MAX_SPAN = timedelta(days=93)
# values one series may hold: a week by the minute; 93 days by the minute (133,920 for each series of each metric)
# would have one Reader's query build an answer of hundreds of megabytes
MAX_BUCKETS = 10_080
DEFAULT_SPAN = timedelta(hours=1)
DEFAULT_TOP = 10
AGGREGATIONS = {"average": "average", "count": "count", "minimum": "minimum", "maximum": "maximum",
                "total": "total"}
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
_CONDITION = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.]*)\s+eq\s+'((?:[^']|'')*)'\s*", re.IGNORECASE)
_JOIN = re.compile(r"\s+(and|or)\s+", re.IGNORECASE)


class MetricsQueryError(Exception):
    """A query Azure refuses: 400 with `code` and `message` (Azure's flat error body)."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MetricsQuery:
    start: datetime
    end: datetime
    interval: timedelta
    full: bool  # interval FULL: one bucket for the whole span
    metrics: tuple[MetricSpec, ...]
    aggregations: tuple[str, ...] | None  # None: each metric's primary
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dimension (lower) → values, ('*',) = all
    top: int = DEFAULT_TOP
    order_by: tuple[str, bool] | None = None  # aggregation, descending
    metadata_only: bool = False
    roll_up: frozenset[str] = frozenset()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(text: str) -> timedelta | None:
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def duration_text(span: timedelta) -> str:
    """ISO 8601, as Azure writes an interval: PT1M, PT1H, P1D, PT4H30M."""
    days, rest = divmod(int(span.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    text = "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")
    return text if text != "P" else "PT0S"


def _moment(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _params(raw: Mapping[str, str]) -> dict[str, str]:
    # hand-written clients send `resulttype` and `autoadjusttimegrain`; the SDK sends its own casing
    return {key.lower(): value for key, value in raw.items()}


def parse_query(raw: Mapping[str, str], now: datetime) -> MetricsQuery:
    params = _params(raw)
    start, end = _timespan(params.get("timespan"), now)
    full = (params.get("interval") or "").upper() == "FULL"
    interval = end - start if full else _interval(params.get("interval"), _flag(params, "autoadjusttimegrain", False))
    if (end - start) / interval > MAX_BUCKETS:
        raise MetricsQueryError(f"The timespan holds more than {MAX_BUCKETS:,} intervals of {duration_text(interval)}: "
                                "ask for a larger interval (PT1H, P1D) or a shorter timespan.")
    names = [n.strip() for n in (params.get("metricnames") or METRICS[0].name).split(",") if n.strip()]
    if len(names) > MAX_METRICS:
        raise MetricsQueryError(f"At most {MAX_METRICS} metric names can be requested at once, not {len(names)}.")
    unknown = [n for n in names if n.lower() not in BY_NAME]
    if unknown:
        raise MetricsQueryError(
            f"Failed to find metric configuration for provider: microsoft.cognitiveservices, resource Type: "
            f"accounts, metric: {unknown[0]}, Valid metrics: {','.join(m.name for m in METRICS)}")
    metrics = tuple(BY_NAME[n.lower()] for n in names)
    aggregations = None
    if params.get("aggregation"):
        aggregations = tuple(_aggregation(a) for a in params["aggregation"].split(",") if a.strip())
    filters = _filters(params.get("$filter") or params.get("filter") or "")
    if _flag(params, "validatedimensions", True):
        known = {d.lower() for m in metrics for d in m.dimensions}
        for name in filters:
            if name not in known:
                raise MetricsQueryError(f"Dimension '{name}' is not a dimension of the requested metrics.")
    top = DEFAULT_TOP
    if params.get("top"):
        if not params["top"].isdigit() or not 1 <= int(params["top"]) <= 1000:
            raise MetricsQueryError(f"Invalid top '{params['top'][:32]}': a whole number from 1 to 1000.")
        top = int(params["top"])
    order_by = None
    if params.get("orderby"):
        words = params["orderby"].split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise MetricsQueryError(f"Invalid orderby '{params['orderby'][:64]}': an aggregation and asc or desc.")
        order_by = (_aggregation("total" if words[0].lower() == "sum" else words[0]),
                    len(words) == 1 or words[1].lower() == "desc")
    result_type = (params.get("resulttype") or "Data").lower()
    if result_type not in ("data", "metadata"):
        raise MetricsQueryError(f"Invalid resultType '{params['resulttype'][:32]}': Data or Metadata.")
    roll_up = frozenset(d.strip().lower() for d in (params.get("rollupby") or "").split(",") if d.strip())
    return MetricsQuery(start, end, interval, full, metrics, aggregations, filters, top, order_by,
                        result_type == "metadata", roll_up)


def _flag(params: dict[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise MetricsQueryError(f"Invalid {name} '{value[:16]}': true or false.")
    return value.lower() == "true"


def _timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    if not text:
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        return end - DEFAULT_SPAN, end
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        first = _moment(parts[0])
        length = _duration(parts[1])
        last = first + length if length is not None else _moment(parts[1])
    except ValueError:
        raise MetricsQueryError(f"Invalid timespan '{text[:80]}': it is 'startDateTime_ISO/endDateTime_ISO'.") \
            from None
    if last <= first:
        raise MetricsQueryError("Invalid timespan: its end must come after its start.")
    if last - first > MAX_SPAN:
        raise MetricsQueryError("Invalid timespan: metrics are kept for 93 days; ask for at most that span.")
    return first.replace(microsecond=0), last.replace(microsecond=0)


def _interval(text: str | None, adjust: bool) -> timedelta:
    if not text:
        return timedelta(minutes=1)
    asked = _duration(text)
    grains = [_duration(g) for g in TIME_GRAINS]
    if asked is not None and asked in grains:
        return asked
    if asked is not None and adjust:
        return min(grains, key=lambda g: abs(g - asked))  # type: ignore[operator, return-value]
    raise MetricsQueryError(f"Invalid interval '{text[:32]}': one of {', '.join(TIME_GRAINS)} or FULL (or set "
                            "AutoAdjustTimegrain=true).")


def _aggregation(text: str) -> str:
    name = text.strip().lower()
    if name not in AGGREGATIONS:
        raise MetricsQueryError(f"Invalid aggregation '{text.strip()[:32]}': one of Average, Count, Minimum, "
                                "Maximum, Total.")
    return AGGREGATIONS[name]


def _filters(text: str) -> dict[str, tuple[str, ...]]:
    """`A eq 'a1' and B eq 'b1' or B eq 'b2' and C eq '*'`: values per dimension; `or` joins values of one
    dimension only."""
    if not text.strip():
        return {}
    pieces = _JOIN.split(text.strip())
    conditions, joins = pieces[0::2], [j.lower() for j in pieces[1::2]]
    filters: dict[str, list[str]] = {}
    previous: str | None = None
    for index, condition in enumerate(conditions):
        match = _CONDITION.fullmatch(condition)
        if match is None:
            raise MetricsQueryError(f"Invalid $filter near '{condition.strip()[:64]}': write conditions as "
                                    "Name eq 'value', joined by and / or.")
        name, value = match.group(1).lower(), match.group(2).replace("''", "'")
        if index and joins[index - 1] == "or" and previous != name:
            raise MetricsQueryError("Invalid $filter: the logical or operator cannot separate two different "
                                    "metadata names.")
        filters.setdefault(name, []).append(value)
        previous = name
    return {name: ("*",) if "*" in values else tuple(dict.fromkeys(values)) for name, values in filters.items()}


# the answer -----------------------------------------------------------------------------------------------------

def bucket_count(query: MetricsQuery) -> int:
    """How many intervals the timespan holds (a last, shorter one counts)."""
    return max(1, -(-(query.end - query.start) // query.interval))


@dataclass
class _Bucket:
    count: int = 0
    total: float = 0.0
    minimum: float | None = None
    maximum: float | None = None

    def add(self, point: MetricPoint) -> None:
        self.count += point.count
        self.total += point.total
        self.minimum = point.minimum if self.minimum is None else min(self.minimum, point.minimum)
        self.maximum = point.maximum if self.maximum is None else max(self.maximum, point.maximum)

    def value(self, aggregation: str) -> float | None:
        if aggregation == "total":
            return self.total
        if aggregation == "count":
            return float(self.count)
        if not self.count:
            return None
        if aggregation == "average":
            return self.total / self.count
        return self.minimum if aggregation == "minimum" else self.maximum


def answer(query: MetricsQuery, points: list[MetricPoint], resource_id: str, region: str) -> dict[str, Any]:
    return {
        "cost": 0,
        "timespan": f"{_iso(query.start)}/{_iso(query.end)}",
        **({} if query.metadata_only else {"interval": duration_text(query.interval)}),
        "value": [_metric(query, spec, [p for p in points if p.metric == spec.name], resource_id)
                  for spec in query.metrics],
        "namespace": NAMESPACE,
        "resourceregion": region,
    }


def _metric(query: MetricsQuery, spec: MetricSpec, points: list[MetricPoint], resource_id: str) -> dict[str, Any]:
    dimensions = {d.lower(): d for d in spec.dimensions}
    split = [d for d in query.filters if d in dimensions and d not in query.roll_up]
    series: dict[tuple[str, ...], dict[int, _Bucket]] = {}
    for point in points:
        values = {name.lower(): value for name, value in point.dimensions.items()}
        if not all(values.get(name) is not None and ("*" in wanted or values[name] in wanted)
                   for name, wanted in query.filters.items() if name in dimensions):
            continue
        key = tuple(values[name] for name in split)
        bucket = int((point.minute * 60 - query.start.timestamp()) // query.interval.total_seconds())
        if not 0 <= bucket < bucket_count(query):
            continue
        series.setdefault(key, {}).setdefault(bucket, _Bucket()).add(point)
    if not split and not series:
        series[()] = {}
    aggregations = query.aggregations or (spec.aggregations[0].lower(),)
    chosen = _top(query, series, aggregations) if split else list(series)
    return {
        "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{spec.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": spec.name, "localizedValue": spec.display},
        "displayDescription": spec.description,
        "unit": spec.unit,
        "timeseries": [_series(query, split, key, series[key], aggregations) for key in chosen],
        "errorCode": "Success",
    }


def _top(query: MetricsQuery, series: dict[tuple[str, ...], dict[int, _Bucket]],
         aggregations: tuple[str, ...]) -> list[tuple[str, ...]]:
    by, descending = query.order_by or (aggregations[0], True)

    def overall(key: tuple[str, ...]) -> float:
        whole = _Bucket()
        for bucket in series[key].values():
            whole.count += bucket.count
            whole.total += bucket.total
            whole.minimum = bucket.minimum if whole.minimum is None or bucket.minimum is None else \
                min(whole.minimum, bucket.minimum)
            whole.maximum = bucket.maximum if whole.maximum is None or bucket.maximum is None else \
                max(whole.maximum, bucket.maximum)
        value = whole.value(by)
        return value if value is not None else float("-inf")

    return sorted(series, key=lambda k: (overall(k), k), reverse=descending)[:query.top]


def _series(query: MetricsQuery, split: list[str], key: tuple[str, ...], buckets: dict[int, _Bucket],
            aggregations: tuple[str, ...]) -> dict[str, Any]:
    # Azure names a split dimension in lower case in the series' metadata
    metadata = [{"name": {"value": name, "localizedValue": name}, "value": value}
                for name, value in zip(split, key, strict=True)]
    if query.metadata_only:
        return {"metadatavalues": metadata}
    data = []
    for index in range(bucket_count(query)):
        bucket = buckets.get(index, _Bucket())
        entry: dict[str, Any] = {"timeStamp": _iso(query.start + index * query.interval)}
        for aggregation in aggregations:
            value = bucket.value(aggregation)
            if value is not None:
                entry[aggregation] = value
        data.append(entry)
    return {"metadatavalues": metadata, "data": data}


def definitions(resource_id: str) -> dict[str, Any]:
    """`metricDefinitions`: every metric an account has, as `metric_definitions.list` reads them."""
    return {"value": [{
        "id": f"{resource_id}/providers/microsoft.insights/metricdefinitions/{spec.name}",
        "resourceId": resource_id,
        "namespace": "Microsoft.CognitiveServices/accounts",
        "name": {"value": spec.name, "localizedValue": spec.display},
        "displayDescription": spec.description,
        "category": spec.category,
        "isDimensionRequired": False,
        "unit": spec.unit,
        "primaryAggregationType": spec.aggregations[0],
        "supportedAggregationTypes": list(spec.aggregations),
        "metricAvailabilities": [{"timeGrain": grain, "retention": RETENTION} for grain in TIME_GRAINS],
        "dimensions": [{"value": d, "localizedValue": d} for d in spec.dimensions],
    } for spec in METRICS]}
