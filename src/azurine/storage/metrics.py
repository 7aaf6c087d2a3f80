"""Azure Monitor metrics per account, metric, dimensions and minute: a count, a sum, a minimum and a maximum, which
replicas add to (the sums) and widen (the extremes), so each row holds the whole service's minute."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from sqlalchemy import Engine, case, select

from azurine.storage.database import session_factory
from azurine.storage.tables import MetricMinute


@dataclass(frozen=True)
class MetricPoint:
    account_id: str
    metric: str
    minute: int  # unix epoch seconds // 60
    dimensions: dict[str, str]
    count: int
    total: float
    minimum: float
    maximum: float

    def plus(self, value: float) -> MetricPoint:
        return replace(self, count=self.count + 1, total=self.total + value, minimum=min(self.minimum, value),
                       maximum=max(self.maximum, value))

    def merged(self, other: MetricPoint) -> MetricPoint:
        return replace(self, count=self.count + other.count, total=self.total + other.total,
                       minimum=min(self.minimum, other.minimum), maximum=max(self.maximum, other.maximum))


def dimensions_key(dimensions: dict[str, str]) -> str:
    return json.dumps(dict(sorted(dimensions.items())), separators=(",", ":"), ensure_ascii=False)


class MetricStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = session_factory(engine)

    def add(self, points: list[MetricPoint]) -> None:
        """Add the points to their stored minutes in one transaction, in key order so that replicas writing the same
        minutes at once take their row locks in the same order."""
        merged: dict[tuple[str, str, int, str], MetricPoint] = {}
        for point in points:
            key = (point.account_id, point.metric, point.minute, dimensions_key(point.dimensions))
            merged[key] = point if key not in merged else merged[key].merged(point)
        if not merged:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise NotImplementedError(f"metrics are stored on SQLite and PostgreSQL, not {self.engine.dialect.name}")
        statement = insert(MetricMinute)
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[MetricMinute.account_id, MetricMinute.metric, MetricMinute.minute,
                            MetricMinute.dimensions],
            set_={"count": MetricMinute.count + new.count, "total": MetricMinute.total + new.total,
                  "minimum": case((new.minimum < MetricMinute.minimum, new.minimum), else_=MetricMinute.minimum),
                  "maximum": case((new.maximum > MetricMinute.maximum, new.maximum), else_=MetricMinute.maximum)})
        rows = [{"account_id": account_id, "metric": metric, "minute": minute, "dimensions": dimensions,
                 "count": p.count, "total": p.total, "minimum": p.minimum, "maximum": p.maximum}
                for (account_id, metric, minute, dimensions), p in sorted(merged.items())]
        with self._sessions.begin() as session:
            session.execute(statement, rows)

    def points(self, account_id: str, metrics: list[str], first_minute: int, end_minute: int) -> list[MetricPoint]:
        """The stored minutes of `metrics` from `first_minute` up to, not including, `end_minute`."""
        with self._sessions() as session:
            rows = session.scalars(select(MetricMinute).where(
                MetricMinute.account_id == account_id, MetricMinute.metric.in_(metrics),
                MetricMinute.minute >= first_minute, MetricMinute.minute < end_minute))
            return [MetricPoint(r.account_id, r.metric, r.minute, json.loads(r.dimensions), r.count, r.total,
                                r.minimum, r.maximum) for r in rows]
