"""The batch store's guarantees, on SQLite and PostgreSQL: lines are held by one worker at a time, a line
gets exactly one result whoever runs it again, a dead worker's lines come back, and an early ending closes
what is left."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from azurine.storage.batches import BatchNotCancellable, BatchStore, LineResult, NewLine
from azurine.storage.content import ContentSealer
from azurine.storage.database import make_engine, migrate
from conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
        migrate(engine)
        yield BatchStore(engine, ContentSealer())
        engine.dispose()
        return
    with fresh_database() as url:
        engine = make_engine(url)
        migrate(engine)
        yield BatchStore(engine, ContentSealer())
        engine.dispose()


def lines(count: int) -> list[NewLine]:
    return [NewLine(i + 1, f"task-{i + 1}", {"model": "batch", "messages": [{"role": "user", "content": str(i)}]}, 10)
            for i in range(count)]


def ok(line: int, custom_id: str) -> LineResult:
    return LineResult(line, custom_id, True, {"custom_id": custom_id, "response": {"status_code": 200}})


def test_a_batch_and_its_lines_are_stored_together(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", {"k": "v"}, lines(3), 3600)
    assert batch.status == "in_progress" and batch.total == 3 and batch.enqueued_tokens == 30
    again = store.get("acct", batch.id)
    assert again is not None and again.metadata == {"k": "v"} and "in_progress_at" in again.times
    assert store.get("other-account", batch.id) is None
    assert store.enqueued_tokens("acct", "batch") == 30

    failed = store.create("acct", "batch", "/chat/completions", "file-2", "24h", None, lines(2), 3600,
                          errors={"object": "list", "data": [{"code": "x", "message": "y", "line": 1}]})
    assert failed.status == "failed" and failed.total == 0 and "failed_at" in failed.times
    assert [b.id for b in store.list("acct")] == [failed.id, batch.id]
    assert [b.id for b in store.list("acct", after=failed.id)] == [batch.id]


def test_claims_never_overlap_and_a_line_takes_one_result(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", None, lines(10), 3600)
    taken: dict[str, list[int]] = {}

    def claim(worker: str) -> None:
        taken[worker] = []
        while claimed := store.claim(batch.id, worker, 2, 60):
            assert len(claimed) <= 2
            taken[worker] += [line.line for line in claimed]

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = sorted(line for held in taken.values() for line in held)
    assert everything == list(range(1, 11))

    holder = next(worker for worker, held in taken.items() if 1 in held)
    other = next(worker for worker in taken if worker != holder)
    assert not store.finish(batch.id, 1, other, ok(1, "task-1"))  # not its line
    assert store.finish(batch.id, 1, holder, ok(1, "task-1"))
    assert not store.finish(batch.id, 1, holder, ok(1, "task-1"))  # already has its result
    assert store.get("acct", batch.id).completed == 1  # type: ignore[union-attr]


def test_a_dead_workers_lines_come_back_when_its_lease_runs_out(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", None, lines(3), 3600)
    assert [c.line for c in store.claim(batch.id, "dead", 2, 0.2)] == [1, 2]
    assert [c.line for c in store.claim(batch.id, "alive", 5, 60)] == [3]
    assert store.claim(batch.id, "alive", 5, 60) == []
    time.sleep(0.3)
    again = store.claim(batch.id, "alive", 5, 60)
    assert [c.line for c in again] == [1, 2] and again[0].body["messages"][0]["content"] == "0"
    assert not store.finish(batch.id, 1, "dead", ok(1, "task-1"))  # too late: the line is someone else's
    assert store.finish(batch.id, 1, "alive", ok(1, "task-1"))


def test_a_restarted_worker_forgets_what_its_earlier_run_held(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", None, lines(2), 3600)
    store.claim(batch.id, "host-a:run-1", 5, 600)
    store.forget("host-a:")
    assert [c.line for c in store.claim(batch.id, "host-a:run-2", 5, 600)] == [1, 2]


def test_ending_early_closes_what_is_pending(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", None, lines(3), 3600)
    store.claim(batch.id, "w", 3, 60)
    assert store.finish(batch.id, 1, "w", ok(1, "task-1"))
    held = store.begin_finalizing(batch.id, "w", 60, "expired")
    assert held is not None and held.status == "finalizing" and held.times["finalizing_to"] == "expired"
    assert store.begin_finalizing(batch.id, "someone-else", 60, "completed") is None
    assert not store.finish(batch.id, 2, "w", ok(2, "task-2"))  # arrived after the end
    states = [(state, custom_id, result is not None) for state, custom_id, result in store.results(batch.id)]
    assert states == [("succeeded", "task-1", True), ("expired", "task-2", False), ("expired", "task-3", False)]
    assert store.close_out(batch.id, "w", "expired", "file-out", "file-err")
    final = store.get("acct", batch.id)
    assert final is not None and final.status == "expired" and final.output_file_id == "file-out"
    assert (final.total, final.completed, final.failed) == (3, 1, 2) and "expired_at" in final.times
    assert "finalizer" not in final.times and store.enqueued_tokens("acct", "batch") == 0


def test_cancelling_stops_claims_and_ends_cancelled(store: BatchStore) -> None:
    batch = store.create("acct", "batch", "/chat/completions", "file-1", "24h", None, lines(2), 3600)
    cancelling = store.cancel("acct", batch.id)
    assert cancelling is not None and cancelling.status == "cancelling" and "cancelling_at" in cancelling.times
    assert store.claim(batch.id, "w", 5, 60) == []
    held = store.begin_finalizing(batch.id, "w", 60, "completed")
    assert held is not None and held.times["finalizing_to"] == "cancelled"
    assert store.close_out(batch.id, "w", "cancelled", None, "file-err")
    assert store.get("acct", batch.id).status == "cancelled"  # type: ignore[union-attr]
    with pytest.raises(BatchNotCancellable):  # it has ended
        store.cancel("acct", batch.id)
