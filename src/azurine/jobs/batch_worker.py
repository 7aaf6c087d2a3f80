"""The batch worker: takes pending lines of active batches, runs them, stores each result, finishes batches.

Inside `azurine serve` (embedded) it runs beside the API; `azurine serve --role worker` runs only it, and
several workers on one PostgreSQL share the queue. What survives a crash at any moment:

- a line's result is stored in its row in one statement, only while the line is pending and held by the
  worker that ran it (`BatchStore.finish`), so a line never gets two results;
- a line whose worker died is held under a lease that runs out (`lease_s`), after which any worker takes
  it again; a restarted worker takes it back at once, because its id is stable per data directory and role;
- finishing a batch (writing its output and error files, then its final status) is idempotent: whoever
  holds the finalization lease builds the files from the stored rows and closes the batch in one statement;
- a batch whose account's key cannot be used (a customer-managed key disabled or revoked) waits: its lines
  stay pending, a result that cannot be sealed is dropped and its line handed back to run again, and the
  batch goes on, or finishes, once the key is back. Other accounts' batches are not held up.

Lines run `concurrency` at a time. They run at the batch priority, so online traffic goes first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable

from azurine.jobs.batch_runner import LineOutcome, LineRunner
from azurine.jobs.leases import renew_leases
from azurine.storage.batches import BatchRecord, BatchStore, ClaimedLine
from azurine.storage.files import FileStore
from azurine.storage.key_providers import KeyUnavailable
from azurine.telemetry.metrics import BATCH_LINES

log = logging.getLogger("azurine.batch")

ENDINGS = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


class BatchWorker:
    def __init__(self, store: BatchStore, files: FileStore, runner: LineRunner,
                 account_name: Callable[[str], str | None], worker_id: str, *, concurrency: int = 4,
                 lease_s: float = 30.0, poll_s: float = 0.5,
                 record_usage: Callable[[BatchRecord, LineOutcome], None] | None = None) -> None:
        self._store = store
        self._files = files
        self._runner = runner
        self._account_name = account_name
        self.worker_id = worker_id
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._record_usage = record_usage
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        # set when a line ends, so that its slot is filled at once rather than at the next poll
        self._slot_free = asyncio.Event()
        self._waiting: set[str] = set()  # batches held up by their account's key, each logged once

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; lines still running then are cancelled and handed back."""
        renewing = asyncio.create_task(
            renew_leases(stop, lambda: self._store.renew(self.worker_id, self._lease_s), self._lease_s,
                         "this worker's leases"))
        log.info("batch worker %s started", self.worker_id)
        try:
            while not stop.is_set():
                self._slot_free.clear()
                try:
                    busy = await self.tick()
                except Exception:
                    log.exception("a batch worker pass failed; trying again")
                    busy = False
                if not busy:
                    await self._idle(stop)
        finally:
            renewing.cancel()
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), renewing, return_exceptions=True)
            try:
                await asyncio.to_thread(self._store.release, self.worker_id)
            except Exception:  # the leases run out by themselves
                log.exception("could not hand back the lines this worker held")

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until the next poll, a line ending, or `stop`, whichever comes first."""
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._slot_free.wait())]
        try:
            await asyncio.wait(waits, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def tick(self) -> bool:
        """One pass over the active batches; whether anything was started or finished."""
        busy = False
        now = time.time()
        for batch in await asyncio.to_thread(self._store.active):
            try:
                busy |= await self._step(batch, now)
            except KeyUnavailable as error:
                self._wait_for_key(batch, error)
            else:
                self._waiting.discard(batch.id)
        return busy

    async def _step(self, batch: BatchRecord, now: float) -> bool:
        if batch.status == "cancelling":
            self._cancel_running(batch.id)
            if not self._running_in(batch.id):
                return await self._finalize(batch, "cancelled")
            return False
        if batch.status == "finalizing":
            return await self._finalize(batch, str(batch.times.get("finalizing_to") or "completed"))
        if now >= batch.expires_at:
            self._cancel_running(batch.id)
            return await self._finalize(batch, "expired")
        return await self._work_on(batch)

    def _wait_for_key(self, batch: BatchRecord, error: KeyUnavailable) -> None:
        if batch.id not in self._waiting:
            self._waiting.add(batch.id)
            log.warning("batch %s waits for its account's key: %s", batch.id, error)

    async def _work_on(self, batch: BatchRecord) -> bool:
        free = self._concurrency - len(self._running)
        lines: list[ClaimedLine] = []
        if free > 0:
            lines = await asyncio.to_thread(self._store.claim, batch.id, self.worker_id, free, self._lease_s)
            for line in lines:
                task = asyncio.create_task(self._run_line(batch, line))
                self._running[(batch.id, line.line)] = task
                task.add_done_callback(lambda _, key=(batch.id, line.line): self._line_ended(key))
        if lines or self._running_in(batch.id):
            return bool(lines)
        if await asyncio.to_thread(self._store.pending, batch.id) == 0:
            return await self._finalize(batch, "completed")
        return False

    async def _run_line(self, batch: BatchRecord, line: ClaimedLine) -> None:
        name = self._account_name(batch.account_id)
        if name is None:
            return  # the account is gone; its batch goes with it
        try:
            outcome = await self._runner.run(name, batch, line)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._store.release, self.worker_id, batch.id, [line.line])
            raise
        except Exception:
            # left pending: the lease runs out and the line is tried again
            log.exception("batch %s line %d failed to run", batch.id, line.line)
            return
        try:
            stored = await asyncio.to_thread(self._store.finish, batch.id, line.line, self.worker_id, outcome.result,
                                             outcome.prompt_tokens, outcome.completion_tokens)
        except KeyUnavailable as error:
            # the result cannot be stored unsealed, so the line runs again once the key is back
            log.warning("batch %s line %d is handed back: %s", batch.id, line.line, error)
            await asyncio.to_thread(self._store.release, self.worker_id, batch.id, [line.line])
            return
        if stored:
            BATCH_LINES.labels("succeeded" if outcome.result.succeeded else "failed").inc()
            if self._record_usage is not None:
                self._record_usage(batch, outcome)

    def _line_ended(self, key: tuple[str, int]) -> None:
        self._running.pop(key, None)
        self._slot_free.set()

    def _running_in(self, batch_id: str) -> bool:
        return any(key[0] == batch_id for key in self._running)

    def _cancel_running(self, batch_id: str) -> None:
        for key, task in list(self._running.items()):
            if key[0] == batch_id:
                task.cancel()

    async def _finalize(self, batch: BatchRecord, ending: str) -> bool:
        held = await asyncio.to_thread(self._store.begin_finalizing, batch.id, self.worker_id, self._lease_s, ending)
        if held is None:
            return False
        ending = str(held.times.get("finalizing_to") or ending)
        output_file, error_file = await asyncio.to_thread(self._write_files, held, ending)
        closed = await asyncio.to_thread(self._store.close_out, held.id, self.worker_id, ending, output_file,
                                         error_file)
        if closed:
            log.info("batch %s %s", held.id, ending)
        return closed

    def _write_files(self, batch: BatchRecord, ending: str) -> tuple[str | None, str | None]:
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for state, custom_id, result in self._store.results(batch.id):
            if state == "succeeded" and result is not None:
                outputs.append(json.dumps(result).encode())
            elif result is not None:
                errors.append(json.dumps(result).encode())
            else:  # never ran: the window ended or the batch was cancelled first
                code, message = ENDINGS.get(ending, ENDINGS["expired"])
                errors.append(json.dumps({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id,
                                          "response": None, "error": {"code": code, "message": message}}).encode())
        output_id = error_id = None
        if outputs:
            output_id = self._files.create(batch.account_id, "batch_output", f"{batch.id}_output.jsonl",
                                           b"\n".join(outputs) + b"\n").id
        if errors:
            error_id = self._files.create(batch.account_id, "batch_output", f"{batch.id}_error.jsonl",
                                          b"\n".join(errors) + b"\n").id
        return output_id, error_id

