"""Batch jobs and their lines, durable line by line.

Every request of a batch is a row that holds, once it has run, its output or error line. Workers take
pending lines under a lease (`claim`), and `finish` stores a result only while the line is still pending
and still theirs, in one statement: whatever crashes and whoever runs a line again, each line gets exactly
one result. A worker that dies leaves its leases to run out; the lines then go to whoever claims next.
On PostgreSQL, concurrent claims skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite serialises
writers, which gives the same guarantee.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.content import ContentSealer
from azurine.storage.database import session_factory
from azurine.storage.tables import Batch, BatchLine, StoredFile

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
FINAL = ("completed", "failed", "expired", "cancelled")
CANCELLABLE = ("validating", "in_progress")


class BatchNotCancellable(Exception):
    """A cancel for a batch that has already ended."""

    def __init__(self, batch_id: str, status: str) -> None:
        super().__init__(f"batch {batch_id} is {status}")
        self.batch_id, self.status = batch_id, status


class InputFileMissing(Exception):
    """The batch's input file was deleted before the batch could be stored."""

    def __init__(self, file_id: str) -> None:
        super().__init__(f"file {file_id} is gone")
        self.file_id = file_id


@dataclass(frozen=True)
class BatchRecord:
    id: str
    account_id: str
    deployment: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    times: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    metadata: dict[str, str] | None = field(default=None, hash=False, compare=False)
    enqueued_tokens: int = 0
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class NewLine:
    line: int
    custom_id: str
    body: dict[str, Any]
    estimate: int


@dataclass(frozen=True)
class ClaimedLine:
    batch_id: str
    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineResult:
    line: int
    custom_id: str
    succeeded: bool
    output: dict[str, Any]  # the line of the output file (succeeded) or of the error file


_last_ms = 0
_id_lock = threading.Lock()


def new_batch_id() -> str:
    """`batch_` and a UUID whose leading bits are the time in milliseconds (the UUIDv7 layout), so that ids sort
    as batches were created, which the list's `after` paging relies on."""
    global _last_ms
    with _id_lock:
        _last_ms = max(time.time_ns() // 1_000_000, _last_ms + 1)
        ms = _last_ms
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return f"batch_{uuid.UUID(int=value)}"


class BatchStore:
    def __init__(self, engine: Engine, sealer: ContentSealer) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._sealer = sealer

    # -- the API's side ---------------------------------------------------------------------------------

    def create(self, account_id: str, deployment: str, endpoint: str, input_file_id: str, completion_window: str,
               metadata: dict[str, str] | None, lines: list[NewLine], window_s: int,
               errors: dict[str, Any] | None = None, *, input_file_required: bool = False) -> BatchRecord:
        """A batch with all its lines in one transaction: in progress, or failed with `errors` (and no lines).

        With `input_file_required` (the API's create), raises InputFileMissing if the account no longer has the
        input file: a delete that raced the create won."""
        now = int(time.time())
        status = "failed" if errors else "in_progress"
        times = {"failed_at": now} if errors else {"in_progress_at": now}
        row = Batch(id=new_batch_id(), account_id=account_id, deployment=deployment, endpoint=endpoint,
                    input_file_id=input_file_id, completion_window=completion_window, status=status,
                    created_at=now, expires_at=now + window_s, times=times, errors=errors, batch_metadata=metadata,
                    enqueued_tokens=0 if errors else sum(line.estimate for line in lines))
        # sealed before the transaction: a first seal writes the account's data key, which under SQLite must not
        # wait on this transaction's own write lock
        bodies = [] if errors else [self._sealer.seal(account_id, json.dumps(line.body).encode()) for line in lines]
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            if input_file_required and not self._input_file_held(session, account_id, input_file_id):
                raise InputFileMissing(input_file_id)
            session.add_all(BatchLine(batch_id=row.id, line=line.line, custom_id=line.custom_id, body=body,
                                      estimate=line.estimate, state="pending")
                            for line, body in zip(lines, bodies, strict=False))
        return self._record(row, {"pending": len(lines)} if not errors else {})

    def get(self, account_id: str, batch_id: str) -> BatchRecord | None:
        with self._sessions() as session:
            row = session.get(Batch, batch_id)
            if row is None or row.account_id != account_id:
                return None
            return self._record(row, self._counts(session, batch_id))

    def list(self, account_id: str, after: str | None = None, limit: int = 20) -> list[BatchRecord]:
        """Newest first; `after` is the id of the last batch of the previous page."""
        with self._sessions() as session:
            query = select(Batch).where(Batch.account_id == account_id)
            if after is not None:
                anchor = session.get(Batch, after)
                if anchor is not None and anchor.account_id == account_id:
                    query = query.where(or_(Batch.created_at < anchor.created_at,
                                            and_(Batch.created_at == anchor.created_at, Batch.id < anchor.id)))
            rows = session.scalars(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)).all()
            return [self._record(row, self._counts(session, row.id)) for row in rows]

    def cancel(self, account_id: str, batch_id: str) -> BatchRecord | None:
        """A batch that has not started finishing starts cancelling; a cancelling or finalizing one is returned as
        it is; None if the account has no such batch. Raises BatchNotCancellable for one that has ended."""
        while True:  # a retry means a worker moved the batch on; statuses only move forward, so this ends
            with self._sessions.begin() as session:
                row = session.get(Batch, batch_id, with_for_update=True)
                if row is None or row.account_id != account_id:
                    return None
                if row.status in FINAL:
                    raise BatchNotCancellable(batch_id, row.status)
                if row.status not in CANCELLABLE or self._start_cancelling(session, row):
                    break
        return self.get(account_id, batch_id)

    @staticmethod
    def _start_cancelling(session: Session, row: Batch) -> bool:
        """Move the batch to cancelling if it still has the status read. The guard matters on SQLite, where the
        read took no lock and a finalizer may have moved the batch on since; its times change only with its status,
        so the status alone says they are still the ones read."""
        moved = session.execute(update(Batch).where(Batch.id == row.id, Batch.status == row.status)
                                .values(status="cancelling", times={**row.times, "cancelling_at": int(time.time())})
                                .execution_options(synchronize_session=False))
        return moved.rowcount == 1

    @staticmethod
    def _input_file_held(session: Session, account_id: str, file_id: str) -> bool:
        """Whether the input file still exists, read after the batch's own write in the same transaction: a delete
        that comes later sees the batch and refuses (FileStore.delete), one that came first is seen here. On
        PostgreSQL the shared row lock makes a delete that has locked the file first finish before this reads."""
        return session.scalar(select(StoredFile.id).where(StoredFile.account_id == account_id,
                                                          StoredFile.id == file_id)
                              .with_for_update(read=True)) is not None

    def enqueued_tokens(self, account_id: str, deployment: str) -> int:
        """The estimated tokens of the deployment's batches that have not finished: what its quota counts."""
        with self._sessions() as session:
            return int(session.scalar(select(func.coalesce(func.sum(Batch.enqueued_tokens), 0)).where(
                Batch.account_id == account_id, Batch.deployment == deployment, Batch.status.in_(ACTIVE))) or 0)

    # -- the workers' side ------------------------------------------------------------------------------

    def active(self) -> list[BatchRecord]:
        """Every batch that has work left or is ending, of every account, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(Batch).where(Batch.status.in_(("in_progress", "finalizing",
                                                                         "cancelling")))
                                   .order_by(Batch.created_at, Batch.id)).all()
            return [self._record(row, {}) for row in rows]

    def claim(self, batch_id: str, worker: str, limit: int, lease_s: float) -> list[ClaimedLine]:
        """Up to `limit` pending lines nobody holds (or whose holder's lease ran out), now held by `worker`."""
        now = time.time()
        until = now + lease_s
        with self._sessions.begin() as session:
            batch = session.get(Batch, batch_id)
            if batch is None or batch.status != "in_progress":
                return []
            free = (select(BatchLine.line)
                    .where(BatchLine.batch_id == batch_id, BatchLine.state == "pending",
                           or_(BatchLine.lease_until.is_(None), BatchLine.lease_until < now))
                    .order_by(BatchLine.line).limit(limit).with_for_update(skip_locked=True))
            # PostgreSQL: the picked rows stay locked until this commits, and other claims skip them. SQLite: the
            # update checks again that each line is free, so whoever writes second takes only what is left
            picked = list(session.scalars(free).all())
            if not picked:
                return []
            session.execute(update(BatchLine)
                            .where(BatchLine.batch_id == batch_id, BatchLine.line.in_(picked),
                                   BatchLine.state == "pending",
                                   or_(BatchLine.lease_until.is_(None), BatchLine.lease_until < now))
                            .values(lease_owner=worker, lease_until=until)
                            .execution_options(synchronize_session=False))
            account_id = batch.account_id
            rows = session.execute(select(BatchLine.line, BatchLine.custom_id, BatchLine.body)
                                   .where(BatchLine.batch_id == batch_id, BatchLine.lease_owner == worker,
                                          BatchLine.lease_until == until, BatchLine.state == "pending")
                                   .order_by(BatchLine.line)).all()
        # unsealed after the commit, so that fetching the account's data key never waits on this write; lines that
        # cannot be opened (the account's key is unavailable) are handed back at once rather than held
        try:
            return [ClaimedLine(batch_id, line, custom_id, json.loads(self._sealer.unseal(account_id, body)))
                    for line, custom_id, body in rows]
        except Exception:
            self.release(worker, batch_id, [line for line, _, _ in rows])
            raise

    def renew(self, worker: str, lease_s: float) -> None:
        """Keep holding every line `worker` still runs."""
        with self._sessions.begin() as session:
            session.execute(update(BatchLine).where(BatchLine.lease_owner == worker, BatchLine.state == "pending")
                            .values(lease_until=time.time() + lease_s))

    def release(self, worker: str, batch_id: str | None = None, lines: list[int] | None = None) -> None:
        """Give lines back at once (a clean stop, or a cancelled batch) instead of waiting for the lease."""
        with self._sessions.begin() as session:
            query = update(BatchLine).where(BatchLine.lease_owner == worker, BatchLine.state == "pending")
            if batch_id is not None:
                query = query.where(BatchLine.batch_id == batch_id)
            if lines is not None:
                query = query.where(BatchLine.line.in_(lines))
            session.execute(query.values(lease_owner=None, lease_until=None))

    def finish(self, batch_id: str, line: int, worker: str, result: LineResult, prompt_tokens: int = 0,
               completion_tokens: int = 0) -> bool:
        """Store a line's result if the line is still pending and held by `worker`; False if it was not."""
        with self._sessions() as session:
            account_id = session.scalar(select(Batch.account_id).where(Batch.id == batch_id))
        if account_id is None:
            return False
        sealed = self._sealer.seal(account_id, json.dumps(result.output).encode())  # outside the write, as in create
        with self._sessions.begin() as session:
            done = session.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == batch_id, BatchLine.line == line, BatchLine.state == "pending",
                       BatchLine.lease_owner == worker)
                .values(state="succeeded" if result.succeeded else "failed", result=sealed,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        lease_owner=None, lease_until=None, finished_by=worker))
            return done.rowcount == 1

    def pending(self, batch_id: str) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(BatchLine).where(
                BatchLine.batch_id == batch_id, BatchLine.state == "pending")) or 0)

    def begin_finalizing(self, batch_id: str, worker: str, lease_s: float, ending: str) -> BatchRecord | None:
        """Take the batch for finishing as `ending` (completed, expired or cancelled), or None if it is final or
        another worker holds it. The hold is a lease in `times`, so a finaliser that died is replaced.

        Ending early (expired, cancelled) closes the lines still pending in the same transaction, so a result
        that arrives later is refused rather than left out of both files."""
        now = time.time()
        with self._sessions.begin() as session:
            row = session.get(Batch, batch_id, with_for_update=True)
            if row is None or row.status in FINAL:
                return None
            holder = row.times.get("finalizer")
            if holder and holder != worker and float(row.times.get("finalizer_until", 0)) > now:
                return None
            times = {**row.times, "finalizer": worker, "finalizer_until": now + lease_s}
            if row.status == "in_progress":
                row.status = "finalizing"
                times["finalizing_at"] = int(now)
                times["finalizing_to"] = ending
            elif row.status == "cancelling":
                times["finalizing_to"] = "cancelled"
            if times.get("finalizing_to") in ("expired", "cancelled"):
                session.execute(update(BatchLine)
                                .where(BatchLine.batch_id == batch_id, BatchLine.state == "pending")
                                .values(state=times["finalizing_to"], lease_owner=None, lease_until=None))
            row.times = times
            session.flush()
            return self._record(row, {})

    def forget(self, prefix: str) -> None:
        """Drop every hold of an earlier run of this worker (ids starting with `prefix`): it is not running."""
        with self._sessions.begin() as session:
            session.execute(update(BatchLine).where(BatchLine.lease_owner.startswith(prefix, autoescape=True),
                                                    BatchLine.state == "pending")
                            .values(lease_owner=None, lease_until=None))
            for row in session.scalars(select(Batch).where(Batch.status.in_(("finalizing", "cancelling")))
                                       .with_for_update()).all():
                if str(row.times.get("finalizer", "")).startswith(prefix):
                    row.times = {k: v for k, v in row.times.items() if k not in ("finalizer", "finalizer_until")}

    def results(self, batch_id: str) -> Iterator[tuple[str, str, dict[str, Any] | None]]:
        """(state, custom_id, result line or None if it never ran) of every line, in input order."""
        with self._sessions() as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                return
            query = (select(BatchLine.state, BatchLine.custom_id, BatchLine.result)
                     .where(BatchLine.batch_id == batch_id).order_by(BatchLine.line)
                     .execution_options(yield_per=500))
            for state, custom_id, result in session.execute(query):
                yield state, custom_id, (json.loads(self._sealer.unseal(batch.account_id, result))
                                         if result is not None else None)

    def usage(self, batch_id: str) -> tuple[int, int]:
        """The prompt and completion tokens the batch's finished lines used."""
        with self._sessions() as session:
            prompt, completion = session.execute(
                select(func.coalesce(func.sum(BatchLine.prompt_tokens), 0),
                       func.coalesce(func.sum(BatchLine.completion_tokens), 0))
                .where(BatchLine.batch_id == batch_id)).one()
            return int(prompt), int(completion)

    def close_out(self, batch_id: str, worker: str, status: str, output_file_id: str | None,
                  error_file_id: str | None) -> bool:
        """The batch's final status and files, if `worker` still holds its finalization."""
        now = int(time.time())
        with self._sessions.begin() as session:
            row = session.get(Batch, batch_id, with_for_update=True)
            if row is None or row.status in FINAL or row.times.get("finalizer") != worker:
                return False
            times = {k: v for k, v in row.times.items() if k not in ("finalizer", "finalizer_until")}
            row.status = status
            row.times = {**times, f"{status}_at": now}
            row.output_file_id = output_file_id
            row.error_file_id = error_file_id
            return True

    # -- shapes -----------------------------------------------------------------------------------------

    @staticmethod
    def _counts(session: Session, batch_id: str) -> dict[str, int]:
        rows = session.execute(select(BatchLine.state, func.count()).where(BatchLine.batch_id == batch_id)
                               .group_by(BatchLine.state)).all()
        return {state: int(count) for state, count in rows}

    @staticmethod
    def _record(row: Batch, counts: dict[str, int]) -> BatchRecord:
        return BatchRecord(
            id=row.id, account_id=row.account_id, deployment=row.deployment, endpoint=row.endpoint,
            input_file_id=row.input_file_id, completion_window=row.completion_window, status=row.status,
            created_at=int(row.created_at), expires_at=int(row.expires_at), times=dict(row.times or {}),
            output_file_id=row.output_file_id, error_file_id=row.error_file_id, errors=row.errors,
            metadata=row.batch_metadata, enqueued_tokens=int(row.enqueued_tokens or 0),
            total=sum(counts.values()), completed=counts.get("succeeded", 0),
            failed=counts.get("failed", 0) + counts.get("expired", 0) + counts.get("cancelled", 0))
