"""Files in the database, so every replica and worker process sharing it sees the same files.

A file is one `files` row and its sealed content cut into `file_chunks` rows of at most `CHUNK_BYTES`.
Every read and write names the account, and no query runs without it: one account never sees another's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, and_, delete, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from azurine.storage.batches import ACTIVE
from azurine.storage.content import ContentSealer
from azurine.storage.database import session_factory
from azurine.storage.tables import Batch, FileChunk, StoredFile

CHUNK_BYTES = 4 * 1024 * 1024

Order = Literal["asc", "desc"]


class FileInUse(Exception):
    """A delete of the input file of a batch that has not ended."""

    def __init__(self, file_id: str, batch_id: str, status: str) -> None:
        super().__init__(f"file {file_id} is the input of batch {batch_id} ({status})")
        self.file_id, self.batch_id, self.status = file_id, batch_id, status


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class FileRecord:
    id: str
    account_id: str
    purpose: str
    filename: str
    bytes: int
    status: str
    status_details: str | None
    created_at: float  # unix epoch seconds


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: StoredFile) -> FileRecord:
    return FileRecord(id=row.id, account_id=row.account_id, purpose=row.purpose, filename=row.filename,
                      bytes=row.bytes, status=row.status, status_details=row.status_details,
                      created_at=_aware(row.created_at).timestamp())


class FileStore:
    def __init__(self, engine: Engine, sealer: ContentSealer | None = None) -> None:
        self.engine = engine
        self.sealer = sealer or ContentSealer()
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def create(self, account_id: str, purpose: str, filename: str, data: bytes,
               status: str = "processed") -> FileRecord:
        """Store a file whole or not at all: its row and all its chunks commit together."""
        sealed = self.sealer.seal(account_id, data)
        row = StoredFile(id=new_file_id(), account_id=account_id, purpose=purpose, filename=filename,
                         bytes=len(data), status=status, status_details=None, created_at=datetime.now(UTC))
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()  # the file row first, so the chunks' foreign key finds it
            view = memoryview(sealed)
            for part, start in enumerate(range(0, len(view), CHUNK_BYTES)):
                session.add(FileChunk(file_id=row.id, part=part, data=bytes(view[start:start + CHUNK_BYTES])))
                session.flush()  # one chunk in memory at a time, not the whole file twice more
            return _record(row)

    @staticmethod
    def _row(session: Session, account_id: str, file_id: str) -> StoredFile | None:
        return session.scalar(select(StoredFile).where(StoredFile.account_id == account_id,
                                                       StoredFile.id == file_id))

    def get(self, account_id: str, file_id: str) -> FileRecord | None:
        with self._sessions() as session:
            row = self._row(session, account_id, file_id)
            return _record(row) if row else None

    def list(self, account_id: str, purpose: str | None = None, after: str | None = None, limit: int = 20,
             order: Order = "desc") -> list[FileRecord]:
        """Newest first (or oldest first with `asc`); `after` is the id of the last file of the page before.

        An `after` that names no file of this account gives an empty page.
        """
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if limit < 1:
            return []
        newest_first = order == "desc"
        with self._sessions() as session:
            query = select(StoredFile).where(StoredFile.account_id == account_id)
            if purpose is not None:
                query = query.where(StoredFile.purpose == purpose)
            if after is not None:
                cursor = self._row(session, account_id, after)
                if cursor is None:
                    return []
                # created_at alone can tie; the id breaks ties so that pages never skip or repeat a file
                if newest_first:
                    query = query.where(or_(StoredFile.created_at < cursor.created_at,
                                            and_(StoredFile.created_at == cursor.created_at,
                                                 StoredFile.id < cursor.id)))
                else:
                    query = query.where(or_(StoredFile.created_at > cursor.created_at,
                                            and_(StoredFile.created_at == cursor.created_at,
                                                 StoredFile.id > cursor.id)))
            if newest_first:
                query = query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
            else:
                query = query.order_by(StoredFile.created_at.asc(), StoredFile.id.asc())
            return [_record(r) for r in session.scalars(query.limit(limit))]

    def content(self, account_id: str, file_id: str) -> bytes | None:
        with self._sessions() as session:
            if self._row(session, account_id, file_id) is None:
                return None
            parts = session.scalars(select(FileChunk.data).where(FileChunk.file_id == file_id)
                                    .order_by(FileChunk.part))
            sealed = b"".join(parts)
        return self.sealer.unseal(account_id, sealed)

    def delete(self, account_id: str, file_id: str) -> bool:
        """Delete a file with its content; False if the account has no such file. Raises FileInUse while a batch
        that has not ended reads it (as in BatchStore.create, either the batch or the delete comes first)."""
        with self._sessions.begin() as session:
            # PostgreSQL: a batch being created with this file holds a shared lock on it; this waits for it to commit
            if session.scalar(select(StoredFile.id).where(StoredFile.account_id == account_id,
                                                          StoredFile.id == file_id).with_for_update()) is None:
                return False
            # the check and the delete in one statement: SQLite took no lock for the read above
            deleted = session.execute(delete(StoredFile).where(
                StoredFile.account_id == account_id, StoredFile.id == file_id,
                ~exists().where(self._running_batches(account_id, file_id))))
            if deleted.rowcount == 1:
                # the chunks' foreign key cascades, but SQLite enforces it only on connections told to
                session.execute(delete(FileChunk).where(FileChunk.file_id == file_id))
                return True
            # refused, or deleted by someone else meanwhile: this transaction now writes, so what it reads holds
            user = session.execute(select(Batch.id, Batch.status)
                                   .where(self._running_batches(account_id, file_id)).limit(1)).first()
            if user is not None:
                raise FileInUse(file_id, user.id, user.status)
            return False

    @staticmethod
    def _running_batches(account_id: str, file_id: str) -> ColumnElement[bool]:
        return and_(Batch.account_id == account_id, Batch.input_file_id == file_id, Batch.status.in_(ACTIVE))
