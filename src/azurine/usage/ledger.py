"""The usage ledger: actual tokens (and seconds of audio) per account, deployment and minute, and the region each
request ran in, batched into the database.

Rate limits charge an estimate when a request arrives, before anyone knows how many tokens it will use;
usage and billing need the real counts. Every finished request calls `record` with what it actually used
(and what was estimated for it), and the ledger adds it to an in-memory total for its minute.

The totals are written in batches: every `flush_every_s` (one second by default) the background loop
swaps the pending totals out and writes them with one upsert in one transaction, so a burst of a thousand
requests costs one database write per second, not one per request, and request handlers never wait on the
database. A write that fails puts its counts back, to go out with the next flush.

What this costs: the counts live only in memory until they are flushed. A process that is killed or
crashes loses what it recorded since the last flush that succeeded (at most about the last second's
counts, more if the database was unreachable and flushes were failing meanwhile); a clean shutdown
(`close`) flushes them. The rows in the database are therefore a lower bound of the real usage, never an
overcount: a flush either commits whole or not at all.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from azurine.storage.flush_loop import flush_until
from azurine.storage.state import RegionUsageRow, StateStore, UsageRow

_Key = tuple[str, str, int]  # account id, deployment name, minute (unix epoch seconds // 60)
_RegionKey = tuple[str, str, str, int]  # account id, deployment name, region, minute


@dataclass
class _Counts:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0
    billed_tokens: int = 0
    audio_seconds: float = 0.0

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.estimated_tokens += other.estimated_tokens
        self.billed_tokens += other.billed_tokens
        self.audio_seconds += other.audio_seconds


class UsageLedger:
    def __init__(self, store: StateStore, flush_every_s: float = 1.0) -> None:
        self._store = store
        self._flush_every_s = flush_every_s
        self._lock = threading.Lock()  # guards _pending: record runs on worker threads and the event loop
        self._pending: dict[_Key, _Counts] = {}
        self._regions: dict[_RegionKey, _Counts] = {}
        self._flushing = threading.Lock()  # one flush at a time, so failed rows go back before the next swap
        self._stopped = asyncio.Event()  # binds to the event loop only when first awaited

    def record(self, account_id: str, deployment: str, prompt_tokens: int, completion_tokens: int,
               estimated_tokens: int, at: float | None = None, price: float = 1.0,
               audio_seconds: float = 0.0, region: str | None = None) -> None:
        """Count one finished request in the minute of `at` (unix seconds, default now). Never blocks on I/O.

        `price` is the share of the full token price it is billed at (0.5 for batch deployments); each request's
        billed tokens are rounded half up. `audio_seconds` is the audio a transcription or translation heard, or
        speech spoke, kept unrounded: Azure bills Whisper by the hour of audio. `region` is where it ran (what
        `x-ms-region` said, as a region name), counted apart per region."""
        minute = int((time.time() if at is None else at) // 60)
        with self._lock:
            if region is not None:
                there = self._regions.setdefault((account_id, deployment, region, minute), _Counts())
                there.requests += 1
                there.prompt_tokens += prompt_tokens
                there.completion_tokens += completion_tokens
            counts = self._pending.get((account_id, deployment, minute))
            if counts is None:
                counts = self._pending[(account_id, deployment, minute)] = _Counts()
            counts.requests += 1
            counts.prompt_tokens += prompt_tokens
            counts.completion_tokens += completion_tokens
            counts.estimated_tokens += estimated_tokens
            counts.billed_tokens += math.floor((prompt_tokens + completion_tokens) * price + 0.5)  # half up
            counts.audio_seconds += audio_seconds

    def pending(self) -> list[UsageRow]:
        """The counts recorded and not yet written, by minute and deployment."""
        with self._lock:
            return _rows(self._pending)

    def flush(self) -> None:
        """Write the pending counts in one transaction; on failure keep them for the next flush and re-raise."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
                regions, self._regions = self._regions, {}
            if not taken and not regions:
                return
            try:
                self._store.add_usage(_rows(taken), _region_rows(regions))
            except BaseException:
                with self._lock:
                    _put_back(self._pending, taken)
                    _put_back(self._regions, regions)
                raise

    async def run(self) -> None:
        """Flush every `flush_every_s` until `close`; a failed flush is logged and retried on the next tick."""
        await flush_until(self._stopped, self.flush, self._flush_every_s, "usage")

    async def close(self) -> None:
        """Stop the loop and write what is pending (raising if that last write fails)."""
        self._stopped.set()
        await asyncio.to_thread(self.flush)


def _rows(pending: dict[_Key, _Counts]) -> list[UsageRow]:
    ordered = sorted(pending.items(), key=lambda item: (item[0][2], item[0][1], item[0][0]))
    return [UsageRow(account_id=account_id, deployment=deployment, minute=minute, requests=c.requests,
                     prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                     estimated_tokens=c.estimated_tokens, billed_tokens=c.billed_tokens,
                     audio_seconds=c.audio_seconds)
            for (account_id, deployment, minute), c in ordered]


def _region_rows(pending: dict[_RegionKey, _Counts]) -> list[RegionUsageRow]:
    return [RegionUsageRow(account_id=account_id, deployment=deployment, region=region, minute=minute,
                           requests=c.requests, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
            for (account_id, deployment, region, minute), c in sorted(pending.items())]


def _put_back(pending: dict[Any, _Counts], taken: dict[Any, _Counts]) -> None:
    """Counts whose write failed, back among those recorded since, to go out with the next flush."""
    for key, counts in taken.items():
        kept = pending.get(key)
        if kept is None:
            pending[key] = counts
        else:
            kept.add(counts)
