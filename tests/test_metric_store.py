"""Azure Monitor's metric minutes in the database: replicas add to the same rows (counts and sums add up, the
extremes widen), on SQLite and PostgreSQL alike, and the recorder that batches them keeps what it could not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from azurine.storage.database import make_engine, migrate
from azurine.storage.metrics import MetricPoint, MetricStore
from azurine.telemetry.metric_recorder import MetricRecorder

MINUTE = 29_000_000  # an arbitrary minute, epoch seconds // 60


def store_at(url: str) -> MetricStore:
    engine = make_engine(url)
    migrate(engine)
    return MetricStore(engine)


def point(value: float, minute: int = MINUTE, **dimensions: str) -> MetricPoint:
    return MetricPoint("acct", "AzureOpenAITimeToResponse", minute, dimensions, 1, value, value, value)


def assert_points_combine(store: MetricStore) -> None:
    store.add([point(100, StatusCode="200"), point(300, StatusCode="200"), point(50, StatusCode="429")])
    store.add([point(20, StatusCode="200"), point(10, MINUTE + 1, StatusCode="200")])  # another replica's
    found = {(p.minute, p.dimensions["StatusCode"]): p for p in store.points("acct", ["AzureOpenAITimeToResponse"],
                                                                             MINUTE, MINUTE + 2)}
    assert (found[(MINUTE, "200")].count, found[(MINUTE, "200")].total) == (3, 420)
    assert (found[(MINUTE, "200")].minimum, found[(MINUTE, "200")].maximum) == (20, 300)
    assert found[(MINUTE, "429")].count == 1 and found[(MINUTE + 1, "200")].total == 10
    assert store.points("acct", ["AzureOpenAITimeToResponse"], MINUTE + 1, MINUTE + 2)[0].minute == MINUTE + 1
    assert store.points("other", ["AzureOpenAITimeToResponse"], MINUTE, MINUTE + 2) == []


def test_points_combine_on_sqlite(tmp_path: Path) -> None:
    assert_points_combine(store_at(f"sqlite:///{tmp_path / 'azurine.db'}"))


def test_points_combine_on_postgresql(database_url: str) -> None:
    assert_points_combine(store_at(database_url))


def test_the_recorder_sums_per_minute_and_keeps_what_it_could_not_write(tmp_path: Path) -> None:
    store = store_at(f"sqlite:///{tmp_path / 'azurine.db'}")
    recorder = MetricRecorder(store)
    at = MINUTE * 60 + 5
    for value in (1, 1, 1):
        recorder.record("acct", "AzureOpenAIRequests", value, {"StatusCode": "200", "ApiName": None}, at=at)
    assert [(p.count, p.total, p.dimensions) for p in recorder.pending()] == [(3, 3, {"StatusCode": "200"})]
    failing = MetricRecorder(store)
    failing.record("acct", "AzureOpenAIRequests", 1, {}, at=at)
    failing.store = None  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        failing.flush()
    assert [p.total for p in failing.pending()] == [1]  # kept for the next flush
    recorder.flush()
    assert recorder.pending() == [] and store.points("acct", ["AzureOpenAIRequests"], MINUTE, MINUTE + 1)[0].total == 3
