"""Settled usage: the upsert that adds counts (and seconds of audio) per minute, the ledger that batches them, the
migration that added audio to the minutes already stored, `azurine billing show`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from azurine.cli import usage as usage_cli
from azurine.cli.main import app
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import RegionUsageRow, StateStore, UsageRow
from azurine.usage import UsageLedger
from migrating import migrate_to

MINUTE = 29_000_000  # an arbitrary minute, epoch seconds // 60


def sqlite_store(data_dir: Path) -> StateStore:
    engine = make_engine(f"sqlite:///{data_dir / 'azurine.db'}")
    migrate(engine)
    return StateStore(engine)


def row(deployment: str, minute: int, requests: int, prompt: int, completion: int, estimated: int,
        account_id: str = "acct-1", audio: float = 0.0) -> UsageRow:
    return UsageRow(account_id=account_id, deployment=deployment, minute=minute, requests=requests,
                    prompt_tokens=prompt, completion_tokens=completion, estimated_tokens=estimated,
                    billed_tokens=prompt + completion, audio_seconds=audio)


def assert_upsert_adds_to_existing_minutes(store: StateStore) -> None:
    store.add_usage([row("chat", MINUTE, 2, 10, 20, 50), row("embeddings", MINUTE, 1, 7, 0, 7)])
    # the same minute again, a key twice in one batch, and a new minute
    store.add_usage([row("chat", MINUTE, 1, 5, 5, 30), row("chat", MINUTE, 3, 1, 2, 3),
                     row("chat", MINUTE + 1, 1, 4, 4, 9)])
    store.add_usage([])
    assert store.usage("acct-1", MINUTE) == [
        row("chat", MINUTE, 6, 16, 27, 83),
        row("embeddings", MINUTE, 1, 7, 0, 7),
        row("chat", MINUTE + 1, 1, 4, 4, 9),
    ]
    assert store.usage("acct-1", MINUTE + 1) == [row("chat", MINUTE + 1, 1, 4, 4, 9)]
    assert store.usage("someone-else", 0) == []
    store.add_usage([row("chat", MINUTE, 1, 1, 1, 1, account_id="acct-2")])
    assert [(r.account_id, r.deployment, r.minute) for r in store.usage(None, MINUTE)] == [
        ("acct-1", "chat", MINUTE), ("acct-2", "chat", MINUTE), ("acct-1", "embeddings", MINUTE),
        ("acct-1", "chat", MINUTE + 1)]


def assert_audio_seconds_add_up(store: StateStore) -> None:
    # binary fractions, so that the sums are exact on either database
    store.add_usage([row("whisper", MINUTE, 1, 0, 40, 0, audio=12.5), row("tts", MINUTE, 1, 3, 0, 3, audio=0.75)])
    store.add_usage([row("whisper", MINUTE, 1, 0, 10, 0, audio=3.25), row("whisper", MINUTE, 1, 0, 5, 0, audio=0.125),
                     row("whisper", MINUTE + 1, 1, 0, 20, 0, audio=60.0)])
    assert [r for r in store.usage("acct-1", MINUTE) if r.deployment in ("tts", "whisper")] == [
        row("tts", MINUTE, 1, 3, 0, 3, audio=0.75),
        row("whisper", MINUTE, 3, 0, 55, 0, audio=15.875),
        row("whisper", MINUTE + 1, 1, 0, 20, 0, audio=60.0),
    ]
    hourly = {r.deployment: r for r in store.usage_sums(["acct-1"], MINUTE - MINUTE % 60, MINUTE + 60, 60)}
    assert hourly["whisper"].audio_seconds == 75.875 and isinstance(hourly["whisper"].audio_seconds, float)
    assert (hourly["whisper"].requests, hourly["tts"].audio_seconds) == (4, 0.75)


def assert_the_migration_gives_stored_minutes_no_audio(engine: Engine) -> None:
    """Minutes written before 0017 read as having heard and spoken nothing; the migration goes down and up again."""
    migrate_to(engine, "0016")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO usage_minutes (account_id, deployment, minute, requests, prompt_tokens, "
                                "completion_tokens, estimated_tokens, billed_tokens) "
                                "VALUES ('acct-1', 'whisper', :minute, 2, 0, 30, 0, 30)"), {"minute": MINUTE})
    migrate_to(engine, "head")
    store = StateStore(engine)
    assert store.usage("acct-1", 0) == [row("whisper", MINUTE, 2, 0, 30, 0)]
    store.add_usage([row("whisper", MINUTE, 1, 0, 10, 0, audio=2.5)])
    assert store.usage("acct-1", 0) == [row("whisper", MINUTE, 3, 0, 40, 0, audio=2.5)]
    migrate_to(engine, "0016", down=True)
    migrate_to(engine, "head")
    assert store.usage("acct-1", 0) == [row("whisper", MINUTE, 3, 0, 40, 0)]


def test_add_usage_increments_the_stored_minutes_on_sqlite(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    assert store.engine.dialect.name == "sqlite"
    assert_upsert_adds_to_existing_minutes(store)
    assert_audio_seconds_add_up(store)


def test_add_usage_increments_the_stored_minutes_on_postgresql(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    store = StateStore(engine)
    assert store.engine.dialect.name == "postgresql"
    assert_upsert_adds_to_existing_minutes(store)
    assert_audio_seconds_add_up(store)


def test_the_audio_migration_on_sqlite(tmp_path: Path) -> None:
    assert_the_migration_gives_stored_minutes_no_audio(make_engine(f"sqlite:///{tmp_path / 'azurine.db'}"))


def test_the_audio_migration_on_postgresql(database_url: str) -> None:
    assert_the_migration_gives_stored_minutes_no_audio(make_engine(database_url))


def test_a_batch_that_fails_part_way_writes_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    store = StateStore(engine)
    store.add_usage([row("chat", MINUTE, 1, 1, 1, 1)])
    # written after the good row (keys go in sorted order), and too long for the deployment column
    with pytest.raises(DBAPIError):
        store.add_usage([row("chat", MINUTE, 1, 1, 1, 1), row("x" * 65, MINUTE, 1, 1, 1, 1, account_id="acct-2")])
    assert store.usage(None, 0) == [row("chat", MINUTE, 1, 1, 1, 1)]


def test_the_ledger_adds_a_minutes_requests_into_one_row(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    ledger = UsageLedger(store)
    start = MINUTE * 60
    ledger.record("acct-1", "chat", 10, 5, 40, at=start + 1)
    ledger.record("acct-1", "chat", 20, 7, 40, at=start + 59.9)
    ledger.record("acct-1", "chat", 3, 1, 8, at=start + 60)  # the next minute
    ledger.record("acct-1", "embeddings", 6, 0, 6, at=start + 30)
    ledger.flush()
    assert ledger.pending() == []
    assert store.usage("acct-1", 0) == [
        row("chat", MINUTE, 2, 30, 12, 80),
        row("embeddings", MINUTE, 1, 6, 0, 6),
        row("chat", MINUTE + 1, 1, 3, 1, 8),
    ]
    ledger.record("acct-1", "chat", 1, 1, 2, at=start + 2)
    ledger.flush()
    ledger.flush()  # nothing pending: writes nothing
    assert store.usage("acct-1", MINUTE)[0] == row("chat", MINUTE, 3, 31, 13, 82)


def test_the_ledger_adds_up_seconds_of_audio_unrounded(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    ledger = UsageLedger(store)
    ledger.record("acct-1", "whisper", 0, 30, 0, at=MINUTE * 60, audio_seconds=4.6875)
    ledger.record("acct-1", "whisper", 0, 12, 0, at=MINUTE * 60 + 5, audio_seconds=1.021)
    ledger.record("acct-1", "tts", 3, 0, 3, at=MINUTE * 60 + 9, audio_seconds=0.5)
    assert [(r.deployment, r.audio_seconds) for r in ledger.pending()] == [("tts", 0.5),
                                                                           ("whisper", pytest.approx(5.7085))]
    ledger.flush()
    whisper = next(r for r in store.usage("acct-1", 0) if r.deployment == "whisper")
    assert (whisper.requests, whisper.completion_tokens) == (2, 42)
    assert whisper.audio_seconds == pytest.approx(4.6875 + 1.021, abs=1e-9)


def test_records_from_many_threads_are_all_counted(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = sqlite_store(tmp_path)
    ledger = UsageLedger(store)

    def work(_: int) -> None:
        for _i in range(200):
            ledger.record("acct-1", "chat", 2, 1, 3, at=MINUTE * 60)
        ledger.flush()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    ledger.flush()
    assert store.usage("acct-1", 0) == [row("chat", MINUTE, 1600, 3200, 1600, 4800)]


class FailsOnce:
    """A store whose first write fails, as a database that is briefly unreachable."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.calls = 0

    def add_usage(self, rows: list[UsageRow], regions: list[RegionUsageRow] | None = None) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("database unreachable")
        self.store.add_usage(rows, regions)


def test_a_failed_flush_keeps_the_counts_for_the_next(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    ledger = UsageLedger(FailsOnce(store))  # type: ignore[arg-type]
    ledger.record("acct-1", "chat", 10, 5, 20, at=MINUTE * 60)
    with pytest.raises(ConnectionError):
        ledger.flush()
    assert ledger.pending() == [row("chat", MINUTE, 1, 10, 5, 20)]
    ledger.record("acct-1", "chat", 1, 1, 1, at=MINUTE * 60)  # recorded while the write was failing
    ledger.flush()
    assert ledger.pending() == []
    assert store.usage("acct-1", 0) == [row("chat", MINUTE, 2, 11, 6, 21)]


def test_the_ledger_counts_where_each_request_ran_apart_per_region(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    ledger = UsageLedger(FailsOnce(store))  # type: ignore[arg-type]
    ledger.record("acct-1", "chat", 10, 5, 20, at=MINUTE * 60, region="westeurope")
    ledger.record("acct-1", "chat", 3, 2, 9, at=MINUTE * 60, region="eastus")
    with pytest.raises(ConnectionError):  # the regions' counts wait for the next flush with the rest
        ledger.flush()
    ledger.record("acct-1", "chat", 1, 1, 1, at=(MINUTE + 1) * 60, region="westeurope")
    ledger.record("acct-1", "chat", 7, 7, 7, at=MINUTE * 60)  # a batch line: its region is not told
    ledger.flush()
    assert store.usage("acct-1", 0) == [row("chat", MINUTE, 3, 20, 14, 36), row("chat", MINUTE + 1, 1, 1, 1, 1)]
    assert store.usage_by_region("acct-1", 0) == [
        RegionUsageRow("acct-1", "chat", "eastus", MINUTE, 1, 3, 2),
        RegionUsageRow("acct-1", "chat", "westeurope", MINUTE, 2, 11, 6)]
    assert store.usage_by_region("acct-1", MINUTE + 1) == [
        RegionUsageRow("acct-1", "chat", "westeurope", MINUTE + 1, 1, 1, 1)]
    assert store.usage_by_region("acct-2", 0) == []


def test_billing_regions_prints_where_an_accounts_requests_ran(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_DATABASE_URL", raising=False)
    monkeypatch.setattr(usage_cli, "console", Console(width=200))
    store = sqlite_store(tmp_path)
    mine = store.create_account("contoso", location="westeurope", subscription_id="sub", resource_group="rg")
    other = store.create_account("fabrikam", location="eastus", subscription_id="sub", resource_group="rg")
    now = int(time.time() // 60)
    store.add_usage([], [RegionUsageRow(mine.id, "chat", "northeurope", now, 2, 30, 10),
                         RegionUsageRow(mine.id, "chat", "westeurope", now - 1, 1, 5, 5),
                         RegionUsageRow(mine.id, "chat", "westeurope", now, 3, 6, 6),
                         RegionUsageRow(other.id, "chat", "eastus", now, 1, 1, 1)])
    result = CliRunner().invoke(app, ["billing", "regions", "--account", "contoso", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line.replace("│", " ").split() for line in result.output.splitlines() if "contoso" in line]
    assert lines == [["contoso", "chat", "northeurope", "2", "30", "10"],
                     ["contoso", "chat", "westeurope", "4", "11", "11"]]
    assert "fabrikam" not in result.output


def test_the_background_loop_flushes_and_close_writes_the_rest(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)

    async def scenario() -> tuple[list[UsageRow], list[UsageRow]]:
        ledger = UsageLedger(FailsOnce(store), flush_every_s=0.05)  # type: ignore[arg-type]
        loop = asyncio.create_task(ledger.run())
        ledger.record("acct-1", "chat", 4, 2, 6, at=MINUTE * 60)
        deadline = time.monotonic() + 10
        while not store.usage("acct-1", 0) and time.monotonic() < deadline:  # the first tick fails, a later one writes
            await asyncio.sleep(0.02)
        flushed = store.usage("acct-1", 0)
        ledger.record("acct-1", "chat", 1, 1, 1, at=MINUTE * 60)
        await ledger.close()
        await asyncio.wait_for(loop, timeout=5)
        return flushed, store.usage("acct-1", 0)

    flushed, closed = asyncio.run(scenario())
    assert flushed == [row("chat", MINUTE, 1, 4, 2, 6)]
    assert closed == [row("chat", MINUTE, 2, 5, 3, 7)]


def test_billing_show_prints_the_minutes_of_an_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_DATABASE_URL", raising=False)
    monkeypatch.setattr(usage_cli, "console", Console(width=200))
    store = sqlite_store(tmp_path)
    mine = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    other = store.create_account("fabrikam", location="local", subscription_id="sub", resource_group="rg")
    now = int(time.time() // 60)
    store.add_usage([row("chat", now, 3, 120, 45, 300, account_id=mine.id),
                     row("whisper", now, 2, 0, 61, 0, account_id=mine.id, audio=7.5),
                     row("embeddings", now - 1, 2, 16, 0, 16, account_id=mine.id),
                     row("chat", now - 500, 9, 9, 9, 9, account_id=mine.id),  # older than --minutes
                     row("chat", now, 1, 1, 1, 1, account_id=other.id)])
    runner = CliRunner()

    result = runner.invoke(app, ["billing", "show", "--account", "contoso", "--minutes", "30",
                                 "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "contoso" in line]
    hhmm = time.strftime("%H:%M", time.gmtime(now * 60))
    earlier = time.strftime("%H:%M", time.gmtime((now - 1) * 60))
    assert [line.replace("│", " ").split() for line in lines] == [
        [earlier, "contoso", "embeddings", "2", "16", "0", "16", "16", "16"],
        [hhmm, "contoso", "chat", "3", "120", "45", "165", "300", "165"],
        [hhmm, "contoso", "whisper", "2", "0", "61", "61", "0", "61", "7.50"],  # seconds of audio heard
    ]
    assert "audio (s)" in result.output
    assert "fabrikam" not in result.output

    everyone = runner.invoke(app, ["billing", "show", "--data-dir", str(tmp_path)])
    assert everyone.exit_code == 0, everyone.output
    assert "fabrikam" in everyone.output and "contoso" in everyone.output

    missing = runner.invoke(app, ["billing", "show", "--account", "nobody", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1
    assert "No account named nobody" in missing.output


def test_batch_requests_are_billed_at_their_price(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    ledger = UsageLedger(store)
    ledger.record("acct-1", "batch", 10, 5, 0, at=MINUTE * 60, price=0.5)
    ledger.record("acct-1", "batch", 3, 4, 0, at=MINUTE * 60, price=0.5)
    ledger.flush()
    (stored,) = store.usage("acct-1", 0)
    assert (stored.prompt_tokens + stored.completion_tokens, stored.billed_tokens) == (22, 8 + 4)
