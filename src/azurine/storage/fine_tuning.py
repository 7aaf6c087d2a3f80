"""Fine-tuning jobs, their events and checkpoints, per account.

A job is stored `validating_files` while its files are checked, then `queued` (or `failed`, naming the bad lines).
A worker trains a job while it holds the job's lease (`claim`, `renew`), as batch lines are held: a worker that
dies leaves the lease to run out and the job is taken again, from its last checkpoint. Only the lease's holder
may write checkpoints, metrics or the ending (`… worker=`), so a worker that lost its job cannot overwrite what
its successor writes. Cancel and pause change the status; the worker sees it between steps and stops.

Training is metered as Azure bills it: the seconds of the steps and their tokens go into the usage ledger (under
the job's id) in the same transaction as the checkpoint that keeps that work, or as the job's success, so work a
crash lost is never billed and work redone after a resume is billed once. A job cancelled while training is billed
for the steps it finished, as Azure bills a cancelled run.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.content import ContentSealer
from azurine.storage.database import session_factory
from azurine.storage.state import UsageRow, add_usage_in
from azurine.storage.tables import FineTuningCheckpointRow, FineTuningEventRow, FineTuningJobRow

FINAL = ("succeeded", "failed", "cancelled")
VALIDATING = "validating_files"
# in every fine-tuned model's name (`fine_tuned_model_name`), and in no catalog model's
FINE_TUNED_MARK = ".ft-"
# a worker trains only these; `paused` waits for a resume, which queues the job again
TRAINABLE = ("queued", "running")
MAX_RACES = 5  # reads of a job's status a change makes while workers keep moving it


class JobConflict(Exception):
    """An operation the job's status does not allow (cancel a finished job, resume one that is not paused)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}")
        self.job_id, self.status = job_id, status


@dataclass(frozen=True)
class JobRecord:
    id: str
    account_id: str
    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any] = field(hash=False, compare=False)
    suffix: str | None
    seed: int
    status: str
    created_at: int
    finished_at: int | None = None
    estimated_finish: int | None = None
    error: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    fine_tuned_model: str | None = None
    result_files: tuple[str, ...] = ()
    trained_tokens: int | None = None


@dataclass(frozen=True)
class EventRecord:
    id: str
    created_at: int
    level: str
    type: str
    message: str
    data: dict[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class CheckpointRecord:
    id: str
    job_id: str
    step: int
    created_at: int
    metrics: dict[str, Any] = field(hash=False, compare=False)


def _time_ordered(prefix: str) -> str:
    """`prefix` and 32 hexadecimal characters whose leading ones are the time in milliseconds, so ids sort in the
    order they were made, which `after` paging relies on."""
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def fine_tuned_model_name(base: str, job_id: str, suffix: str | None) -> str:
    """`<base>.ft-<job id without ftjob->[-suffix]`, as Azure names a fine-tuned model; in lower case, as the
    model's id is listed and as its answers name it."""
    name = f"{base}{FINE_TUNED_MARK}{job_id.removeprefix('ftjob-')}"
    return (f"{name}-{suffix}" if suffix else name).lower()


class FineTuningStore:
    def __init__(self, engine: Engine, sealer: ContentSealer) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._sealer = sealer

    # -- the API's side ---------------------------------------------------------------------------------

    def create(self, account_id: str, model: str, training_file: str, validation_file: str | None,
               hyperparameters: dict[str, Any], suffix: str | None, seed: int) -> JobRecord:
        """A job whose files are being validated (`validating_files`), its hyperparameters as given (`auto` until
        `validated` resolves them)."""
        row = FineTuningJobRow(
            id=_time_ordered("ftjob-"), account_id=account_id, model=model, training_file=training_file,
            validation_file=validation_file, hyperparameters=hyperparameters, suffix=suffix, seed=seed,
            status=VALIDATING, created_at=int(time.time()), result_files=[])
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            self._event(session, row.id, "info", f"Created fine-tuning job: {row.id}")
            self._event(session, row.id, "info", f"Validating training file: {training_file}")
            return self._record(row)

    def validated(self, account_id: str, job_id: str, hyperparameters: dict[str, Any],
                  error: dict[str, Any] | None) -> JobRecord | None:
        """Queue the job with its hyperparameters resolved, or fail it with `error` (its files did not validate).
        A job cancelled while it was validated stays cancelled."""
        now = int(time.time())
        values: dict[str, Any] = {"hyperparameters": hyperparameters, "status": "queued"}
        if error:
            values.update(status="failed", finished_at=now, error=error)
        with self._sessions.begin() as session:
            moved = session.execute(update(FineTuningJobRow)
                                    .where(FineTuningJobRow.id == job_id, FineTuningJobRow.account_id == account_id,
                                           FineTuningJobRow.status == VALIDATING)
                                    .values(**values).execution_options(synchronize_session=False))
            if moved.rowcount == 1:
                if error:
                    self._event(session, job_id, "error", error["message"])
                else:
                    self._event(session, job_id, "info", "Files validated, moving job to queued state")
        return self.get(account_id, job_id)

    def get(self, account_id: str, job_id: str) -> JobRecord | None:
        with self._sessions() as session:
            row = session.get(FineTuningJobRow, job_id)
            return self._record(row) if row is not None and row.account_id == account_id else None

    def list(self, account_id: str, after: str | None, limit: int) -> list[JobRecord]:
        """Newest first; `after` is the last id of the previous page."""
        with self._sessions() as session:
            query = select(FineTuningJobRow).where(FineTuningJobRow.account_id == account_id)
            if after is not None:
                query = query.where(FineTuningJobRow.id < after)
            rows = session.scalars(query.order_by(FineTuningJobRow.id.desc()).limit(limit)).all()
            return [self._record(row) for row in rows]

    def change(self, account_id: str, job_id: str, operation: str) -> JobRecord | None:
        """cancel, pause or resume; None if the account has no such job. Raises JobConflict where the status
        does not allow it."""
        allowed = {"cancel": (VALIDATING, "queued", "running", "paused"), "pause": ("queued", "running"),
                   "resume": ("paused",)}[operation]
        to = {"cancel": "cancelled", "pause": "paused", "resume": "queued"}[operation]
        # a worker may move the job between the read and the write (queued to running, as it claims it): the write is
        # guarded by the status read, and read again when that moved, so a cancel racing a claim still cancels
        for _ in range(MAX_RACES):
            with self._sessions.begin() as session:
                row = session.get(FineTuningJobRow, job_id, with_for_update=True)
                if row is None or row.account_id != account_id:
                    return None
                if row.status not in allowed:
                    raise JobConflict(job_id, row.status)
                values: dict[str, Any] = {"status": to}
                if to == "cancelled":
                    values.update(finished_at=int(time.time()), estimated_finish=None)
                moved = session.execute(update(FineTuningJobRow)
                                        .where(FineTuningJobRow.id == job_id, FineTuningJobRow.status == row.status)
                                        .values(**values).execution_options(synchronize_session=False))
                if moved.rowcount == 1:
                    words = {"cancelled": "Job cancelled", "paused": "Job paused", "queued": "Job resumed"}[to]
                    self._event(session, job_id, "info", words)
                    break
                status = row.status
        else:
            raise JobConflict(job_id, status)
        return self.get(account_id, job_id)

    def delete(self, account_id: str, job_id: str) -> bool:
        """Remove a job that has ended (JobConflict for one that has not); False if there is none."""
        with self._sessions.begin() as session:
            row = session.get(FineTuningJobRow, job_id, with_for_update=True)
            if row is None or row.account_id != account_id:
                return False
            if row.status not in FINAL:
                raise JobConflict(job_id, row.status)
            session.execute(delete(FineTuningEventRow).where(FineTuningEventRow.job_id == job_id))
            session.execute(delete(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id))
            session.delete(row)
            return True

    def events(self, job_id: str, after: str | None, limit: int) -> list[EventRecord]:
        """Newest first, as OpenAI lists them; `after` is the last event id of the previous page."""
        with self._sessions() as session:
            query = select(FineTuningEventRow).where(FineTuningEventRow.job_id == job_id)
            if after is not None:
                anchor = session.scalar(select(FineTuningEventRow.seq).where(
                    FineTuningEventRow.job_id == job_id, FineTuningEventRow.id == after))
                if anchor is not None:
                    query = query.where(FineTuningEventRow.seq < anchor)
            rows = session.scalars(query.order_by(FineTuningEventRow.seq.desc()).limit(limit)).all()
            return [EventRecord(r.id, int(r.created_at), r.level, r.type, r.message, r.data) for r in rows]

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> list[CheckpointRecord]:
        with self._sessions() as session:
            query = select(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id)
            if after is not None:
                anchor = session.scalar(select(FineTuningCheckpointRow.step).where(
                    FineTuningCheckpointRow.job_id == job_id, FineTuningCheckpointRow.id == after))
                if anchor is not None:
                    query = query.where(FineTuningCheckpointRow.step < anchor)
            rows = session.scalars(query.order_by(FineTuningCheckpointRow.step.desc()).limit(limit)).all()
            return [CheckpointRecord(r.id, r.job_id, int(r.step), int(r.created_at), dict(r.metrics or {}))
                    for r in rows]

    def job_models(self, account_ids: list[str]) -> dict[tuple[str, str], str]:
        """The base model of each of the accounts' jobs, by (account id, job id): what its training is priced as."""
        if not account_ids:
            return {}
        with self._sessions() as session:
            rows = session.execute(select(FineTuningJobRow.account_id, FineTuningJobRow.id, FineTuningJobRow.model)
                                   .where(FineTuningJobRow.account_id.in_(account_ids)))
            return {(account_id, job_id): model for account_id, job_id, model in rows}

    def fine_tuned_models(self, account_id: str | None = None) -> list[JobRecord]:
        """The succeeded jobs whose model was not deleted (of one account, or of all), each the model it made."""
        with self._sessions() as session:
            query = select(FineTuningJobRow).where(FineTuningJobRow.status == "succeeded",
                                                   FineTuningJobRow.adapter.is_not(None))
            if account_id is not None:
                query = query.where(FineTuningJobRow.account_id == account_id)
            return [self._record(row) for row in session.scalars(query.order_by(FineTuningJobRow.id)).all()]

    def fine_tuned_model(self, account_id: str, name: str) -> JobRecord | None:
        """The job that made the account's model `name` (case-insensitive); None if it has none by that name."""
        with self._sessions() as session:
            row = session.scalar(self._model_query(account_id, name))
            return self._record(row) if row is not None else None

    def adapter(self, account_id: str, fine_tuned_model: str) -> tuple[JobRecord, bytes] | None:
        """The job that made the model and its adapter (GGUF), unsealed; None if the account has no such model."""
        with self._sessions() as session:
            row = session.scalar(self._model_query(account_id, fine_tuned_model))
            if row is None or row.adapter is None:
                return None
            record, sealed = self._record(row), row.adapter
        return record, self._sealer.unseal(account_id, sealed)

    def delete_model(self, account_id: str, fine_tuned_model: str) -> bool:
        """Forget the model's adapter: the job stays, naming the model it made, as OpenAI keeps it. False if the
        account has no such model."""
        with self._sessions.begin() as session:
            row = session.scalar(self._model_query(account_id, fine_tuned_model).with_for_update())
            if row is None:
                return False
            row.adapter = None
            self._event(session, row.id, "info", f"Fine-tuned model deleted: {row.fine_tuned_model}")
            return True

    @staticmethod
    def _model_query(account_id: str, name: str) -> Any:
        return select(FineTuningJobRow).where(
            FineTuningJobRow.account_id == account_id, FineTuningJobRow.status == "succeeded",
            FineTuningJobRow.adapter.is_not(None), func.lower(FineTuningJobRow.fine_tuned_model) == name.lower())

    # -- the workers' side ------------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float) -> JobRecord | None:
        """The oldest job to train that nobody holds (or whose holder's lease ran out), now held by `worker`."""
        now = time.time()
        with self._sessions.begin() as session:
            free = (select(FineTuningJobRow.id)
                    .where(FineTuningJobRow.status.in_(TRAINABLE),
                           or_(FineTuningJobRow.lease_until.is_(None), FineTuningJobRow.lease_until < now))
                    .order_by(FineTuningJobRow.created_at, FineTuningJobRow.id).limit(1)
                    .with_for_update(skip_locked=True))
            job_id = session.scalar(free)
            if job_id is None:
                return None
            taken = session.execute(
                update(FineTuningJobRow)
                .where(FineTuningJobRow.id == job_id, FineTuningJobRow.status.in_(TRAINABLE),
                       or_(FineTuningJobRow.lease_until.is_(None), FineTuningJobRow.lease_until < now))
                .values(status="running", lease_owner=worker, lease_until=now + lease_s)
                .execution_options(synchronize_session=False))
            if taken.rowcount != 1:
                return None
            row = session.get(FineTuningJobRow, job_id)
            assert row is not None
            session.refresh(row)
            return self._record(row)

    def renew(self, worker: str, lease_s: float) -> None:
        with self._sessions.begin() as session:
            session.execute(update(FineTuningJobRow)
                            .where(FineTuningJobRow.lease_owner == worker, FineTuningJobRow.status == "running")
                            .values(lease_until=time.time() + lease_s))

    def release(self, worker: str) -> None:
        with self._sessions.begin() as session:
            session.execute(update(FineTuningJobRow).where(FineTuningJobRow.lease_owner == worker)
                            .values(lease_owner=None, lease_until=None))

    def forget(self, prefix: str) -> None:
        """Drop every hold of an earlier run of this worker (ids starting with `prefix`): it is not running."""
        with self._sessions.begin() as session:
            session.execute(update(FineTuningJobRow)
                            .where(FineTuningJobRow.lease_owner.startswith(prefix, autoescape=True))
                            .values(lease_owner=None, lease_until=None))

    def status(self, job_id: str, worker: str) -> str | None:
        """The job's status if `worker` still holds it; None if it does not (its lease went to another)."""
        with self._sessions() as session:
            row = session.execute(select(FineTuningJobRow.status, FineTuningJobRow.lease_owner)
                                  .where(FineTuningJobRow.id == job_id)).one_or_none()
            if row is None or row.lease_owner != worker:
                return None
            return str(row.status)

    def add_event(self, job_id: str, worker: str, message: str, *, level: str = "info", kind: str = "message",
                  data: dict[str, Any] | None = None, estimated_finish: int | None = None) -> bool:
        with self._sessions.begin() as session:
            if not self._holds(session, job_id, worker):
                return False
            self._event(session, job_id, level, message, kind, data)
            if estimated_finish is not None:
                session.execute(update(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
                                .values(estimated_finish=estimated_finish))
            return True

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """Every step's metrics, in step order (a step repeated after a resume counts once, as last written)."""
        with self._sessions() as session:
            rows = session.scalars(select(FineTuningEventRow.data).where(
                FineTuningEventRow.job_id == job_id, FineTuningEventRow.type == "metrics")
                .order_by(FineTuningEventRow.seq)).all()
        steps = {int(data["step"]): data for data in rows if data}
        return [steps[step] for step in sorted(steps)]

    def add_checkpoint(self, account_id: str, job_id: str, worker: str, step: int, metrics: dict[str, Any],
                       state: bytes, seconds: float = 0.0, tokens: int = 0) -> bool:
        """A checkpoint at `step` with the training state; older checkpoints keep their metrics only. `seconds` and
        `tokens` are the training since the previous checkpoint (or this run's start), billed with it."""
        sealed = self._sealer.seal(account_id, state)  # outside the write: a first seal writes the data key
        with self._sessions.begin() as session:
            if not self._holds(session, job_id, worker):
                return False
            _meter(session, account_id, job_id, seconds, tokens)
            session.execute(update(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id)
                            .values(state=None))
            session.execute(delete(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id,
                                                                  FineTuningCheckpointRow.step == step))
            session.add(FineTuningCheckpointRow(job_id=job_id, step=step, id=_time_ordered("ftckpt-"),
                                                created_at=int(time.time()), metrics=metrics, state=sealed))
            return True

    def latest_state(self, account_id: str, job_id: str) -> tuple[int, bytes] | None:
        """The step and training state of the job's last checkpoint, unsealed; None before the first."""
        with self._sessions() as session:
            row = session.execute(select(FineTuningCheckpointRow.step, FineTuningCheckpointRow.state).where(
                FineTuningCheckpointRow.job_id == job_id, FineTuningCheckpointRow.state.is_not(None))
                .order_by(FineTuningCheckpointRow.step.desc()).limit(1)).one_or_none()
        if row is None:
            return None
        return int(row.step), self._sealer.unseal(account_id, row.state)

    def succeed(self, account_id: str, job_id: str, worker: str, fine_tuned_model: str, adapter: bytes,
                result_file: str, trained_tokens: int, seconds: float = 0.0, tokens: int = 0) -> bool:
        """The job's end: its model, adapter and results; `seconds` and `tokens` are the training since the last
        checkpoint, billed with it."""
        sealed = self._sealer.seal(account_id, adapter)
        with self._sessions.begin() as session:
            done = session.execute(
                update(FineTuningJobRow)
                .where(FineTuningJobRow.id == job_id, FineTuningJobRow.lease_owner == worker,
                       FineTuningJobRow.status == "running")
                .values(status="succeeded", finished_at=int(time.time()), estimated_finish=None,
                        fine_tuned_model=fine_tuned_model, adapter=sealed, result_files=[result_file],
                        trained_tokens=trained_tokens, lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                return False
            _meter(session, account_id, job_id, seconds, tokens)
            self._event(session, job_id, "info", f"Fine-tuned model created: {fine_tuned_model}")
            self._event(session, job_id, "info", "The job has successfully completed")
            return True

    def bill_cancelled(self, account_id: str, job_id: str, worker: str, seconds: float, tokens: int) -> bool:
        """Bill the training a job did between its last checkpoint and its cancellation, if `worker` still holds it;
        its lease is let go."""
        with self._sessions.begin() as session:
            held = session.execute(
                update(FineTuningJobRow)
                .where(FineTuningJobRow.id == job_id, FineTuningJobRow.lease_owner == worker,
                       FineTuningJobRow.status == "cancelled")
                .values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))
            if held.rowcount != 1:
                return False
            _meter(session, account_id, job_id, seconds, tokens)
            return True

    def fail(self, job_id: str, worker: str, code: str, message: str) -> bool:
        with self._sessions.begin() as session:
            done = session.execute(
                update(FineTuningJobRow)
                .where(FineTuningJobRow.id == job_id, FineTuningJobRow.lease_owner == worker,
                       FineTuningJobRow.status == "running")
                .values(status="failed", finished_at=int(time.time()), estimated_finish=None,
                        error={"code": code, "message": message, "param": None},
                        lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False))
            if done.rowcount == 1:
                self._event(session, job_id, "error", message)
            return done.rowcount == 1

    # -- shapes -----------------------------------------------------------------------------------------

    @staticmethod
    def _holds(session: Session, job_id: str, worker: str) -> bool:
        return session.scalar(select(FineTuningJobRow.id).where(and_(
            FineTuningJobRow.id == job_id, FineTuningJobRow.lease_owner == worker))) is not None

    @staticmethod
    def _event(session: Session, job_id: str, level: str, message: str, kind: str = "message",
               data: dict[str, Any] | None = None) -> None:
        seq = int(session.scalar(select(func.coalesce(func.max(FineTuningEventRow.seq), 0)).where(
            FineTuningEventRow.job_id == job_id)) or 0) + 1
        session.add(FineTuningEventRow(job_id=job_id, seq=seq, id=f"ftevent-{uuid.uuid4().hex}",
                                       created_at=int(time.time()), level=level, type=kind, message=message,
                                       data=data))

    @staticmethod
    def _record(row: FineTuningJobRow) -> JobRecord:
        return JobRecord(
            id=row.id, account_id=row.account_id, model=row.model, training_file=row.training_file,
            validation_file=row.validation_file, hyperparameters=dict(row.hyperparameters or {}),
            suffix=row.suffix, seed=int(row.seed), status=row.status, created_at=int(row.created_at),
            finished_at=row.finished_at, estimated_finish=row.estimated_finish, error=row.error,
            fine_tuned_model=row.fine_tuned_model, result_files=tuple(row.result_files or ()),
            trained_tokens=row.trained_tokens)


def _meter(session: Session, account_id: str, job_id: str, seconds: float, tokens: int) -> None:
    """The training's seconds and tokens into the usage ledger under the job's id, in the minute they are billed."""
    if seconds <= 0 and tokens <= 0:
        return
    add_usage_in(session, [UsageRow(account_id=account_id, deployment=job_id, minute=int(time.time() // 60),
                                    requests=0, prompt_tokens=0, completion_tokens=0, estimated_tokens=0,
                                    training_seconds=max(0.0, seconds), trained_tokens=max(0, tokens))])
