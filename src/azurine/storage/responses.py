"""Stored responses of the Responses API and the input items of each, in the database every replica shares.

A response is one `responses` row whose sealed body is the response object (its output included), and one
`response_items` row per item of its own input, sealed each: everything a customer wrote or a model said passes
through the account's sealer, so customer-managed keys cover it. A response that continues another names it in
`previous_id`, and the conversation it read is rebuilt by walking those links back, each earlier response giving
its input items and then its output; so a chain of n responses stores each turn once, not n times.

A chain holds at most `MAX_CHAIN` responses, and one read (a recursive query) walks it. Deleting a response, or its
retention running out, leaves the responses that continue it whole: what it read and said is moved into each of
them (`_fold`), so their conversations and input items do not change; the deleted response itself is gone.

Every read names the account, and a response of another account, or one past its `expires_at`, is not there.
Status changes are conditional (`update`'s `only_from`), so a cancel and the end of the run it cancels cannot
overwrite each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, String, cast, delete, func, literal, null, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from azurine.storage.content import ContentSealer
from azurine.storage.database import session_factory
from azurine.storage.tables import ResponseItem, StoredResponse

Order = Literal["asc", "desc"]
ACTIVE = ("queued", "in_progress")
SWEEP_BATCH = 500
# the responses one conversation may hold; a longer chain is refused rather than walked without end
MAX_CHAIN = 1000


class ChainTooLong(Exception):
    """A chain of more than `MAX_CHAIN` responses."""


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    account_id: str
    status: str
    background: bool
    created_at: int
    expires_at: int
    lease_until: float | None
    body: dict[str, Any]


@dataclass(frozen=True)
class ItemPage:
    items: list[dict[str, Any]]
    has_more: bool


class ResponseStore:
    def __init__(self, engine: Engine, sealer: ContentSealer | None = None) -> None:
        self.engine = engine
        self.sealer = sealer or ContentSealer()
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def _seal(self, account_id: str, value: Any) -> bytes:
        return self.sealer.seal(account_id, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

    def _open(self, account_id: str, blob: bytes) -> Any:
        return json.loads(self.sealer.unseal(account_id, blob))

    def _record(self, row: StoredResponse) -> ResponseRecord:
        return ResponseRecord(id=row.id, account_id=row.account_id, status=row.status, background=row.background,
                              created_at=row.created_at, expires_at=row.expires_at, lease_until=row.lease_until,
                              body=self._open(row.account_id, row.body))

    # writing -----------------------------------------------------------------------------------------------------

    def create(self, account_id: str, body: dict[str, Any], items: Sequence[dict[str, Any]], *, expires_at: int,
               previous_id: str | None = None, earlier: Sequence[dict[str, Any]] = (), background: bool = False,
               lease_until: float | None = None) -> None:
        """Store a response and its own input items together, or nothing. `earlier` is the conversation before
        `items` as the response read it (`conversation(previous_id, with_output=True)`): should the previous
        response be deleted before this one is stored, the response stores it as its own instead."""
        try:
            self._insert(account_id, body, items, expires_at, previous_id, background, lease_until)
        except IntegrityError:
            if previous_id is None:
                raise
            # the previous response went (deleted, or past its retention) while this one was being made
            self._insert(account_id, body, [*earlier, *items], expires_at, None, background, lease_until)

    def _insert(self, account_id: str, body: dict[str, Any], items: Sequence[dict[str, Any]], expires_at: int,
                previous_id: str | None, background: bool, lease_until: float | None) -> None:
        row = StoredResponse(id=body["id"], account_id=account_id, previous_id=previous_id, status=body["status"],
                             background=background, created_at=int(body["created_at"]), expires_at=expires_at,
                             lease_until=lease_until, body=self._seal(account_id, body))
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()  # the response first, so its items' foreign key finds it
            session.add_all(ResponseItem(response_id=row.id, position=position, item_id=item["id"],
                                         body=self._seal(account_id, item))
                            for position, item in enumerate(items))

    def update(self, account_id: str, body: dict[str, Any], *, only_from: tuple[str, ...] | None = None,
               lease_until: float | None = None) -> bool:
        """Replace a response's object (and so its status); with `only_from`, only while its status is one of those.
        False when nothing was replaced."""
        query = update(StoredResponse).where(StoredResponse.account_id == account_id,
                                             StoredResponse.id == body["id"])
        if only_from is not None:
            query = query.where(StoredResponse.status.in_(only_from))
        with self._sessions.begin() as session:
            done = session.execute(query.values(status=body["status"], body=self._seal(account_id, body),
                                                lease_until=lease_until))
            return done.rowcount == 1

    def renew(self, account_id: str, response_id: str, lease_until: float) -> str | None:
        """Extend a running response's lease; its status now (None once it is gone), so a runner learns of a cancel
        made on another replica."""
        with self._sessions.begin() as session:
            session.execute(update(StoredResponse).where(
                StoredResponse.account_id == account_id, StoredResponse.id == response_id,
                StoredResponse.status.in_(ACTIVE)).values(lease_until=lease_until))
            return session.scalar(select(StoredResponse.status).where(StoredResponse.account_id == account_id,
                                                                      StoredResponse.id == response_id))

    # reading -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, account_id: str, response_id: str, now: float) -> StoredResponse | None:
        return session.scalar(select(StoredResponse).where(
            StoredResponse.account_id == account_id, StoredResponse.id == response_id,
            StoredResponse.expires_at > now))

    def get(self, account_id: str, response_id: str, now: float) -> ResponseRecord | None:
        with self._sessions() as session:
            row = self._row(session, account_id, response_id, now)
            return self._record(row) if row is not None else None

    def items(self, account_id: str, response_id: str) -> list[dict[str, Any]]:
        """The items a response stores as its own (the caller has found the response itself), in order."""
        with self._sessions() as session:
            blobs = session.scalars(select(ResponseItem.body).where(ResponseItem.response_id == response_id)
                                    .order_by(ResponseItem.position))
            return [self._open(account_id, blob) for blob in blobs]

    def conversation(self, account_id: str, response_id: str, now: float, *, with_output: bool,
                     longest: int = MAX_CHAIN) -> list[dict[str, Any]] | None:
        """Every item a response read, oldest first: each earlier response's input items and output, then its own
        input items, then, `with_output`, its output. None when the account has no such response; `ChainTooLong`
        when its chain holds more than `longest` responses."""
        chain = select(StoredResponse.id, StoredResponse.previous_id, literal(0).label("level")).where(
            StoredResponse.account_id == account_id, StoredResponse.id == response_id,
            StoredResponse.expires_at > now).cte("chain", recursive=True)
        earlier = aliased(StoredResponse)
        chain = chain.union_all(select(earlier.id, earlier.previous_id, (chain.c.level + 1)).join(
            chain, earlier.id == chain.c.previous_id).where(earlier.account_id == account_id,
                                                             chain.c.level < longest))
        # one statement, so that a response folded into the next meanwhile is read once, before or after
        items = select(chain.c.level, literal(0).label("part"), ResponseItem.position, ResponseItem.body,
                       cast(null(), String(64)).label("previous_id")).join(chain,
                                                                           ResponseItem.response_id == chain.c.id)
        heads = select(chain.c.level, literal(1), literal(0), StoredResponse.body, chain.c.previous_id).join(
            chain, StoredResponse.id == chain.c.id)
        query = union_all(items, heads)
        with self._sessions() as session:
            rows = session.execute(query.order_by(query.selected_columns[0].desc(), query.selected_columns[1],
                                                  query.selected_columns[2])).all()
        if not rows:
            return None
        if any(row[0] == longest for row in rows):
            raise ChainTooLong(response_id)
        out: list[dict[str, Any]] = []
        for level, part, _, blob, _ in rows:
            if part == 0:
                out.append(self._open(account_id, blob))
            elif level > 0 or with_output:
                out += self._open(account_id, blob).get("output") or []
        return out

    def page(self, account_id: str, response_id: str, now: float, *, limit: int, order: Order = "desc",
             after: str | None = None, before: str | None = None) -> ItemPage | None:
        """A page of a response's input items: everything it read, the chain before it included, as OpenAI lists
        them. None when the account has no such response. `after` and `before` are item ids of the page next to
        the one asked for; an id the response does not have gives an empty page."""
        read = self.conversation(account_id, response_id, now, with_output=False)
        if read is None:
            return None
        ordered = read if order == "asc" else read[::-1]
        where = {item.get("id"): index for index, item in enumerate(ordered)}
        start, end = 0, len(ordered)
        for cursor, is_after in ((after, True), (before, False)):
            if cursor is None:
                continue
            if cursor not in where:
                return ItemPage([], False)
            if is_after:
                start = where[cursor] + 1
            else:
                end = where[cursor]
        window = ordered[start:end]
        # a page `before` an item is the one closest to it
        page = window[-limit:] if before is not None and after is None else window[:limit]
        return ItemPage(page, len(window) > limit)

    # removing ----------------------------------------------------------------------------------------------------

    def delete(self, account_id: str, response_id: str, now: float) -> bool:
        with self._sessions.begin() as session:
            if self._row(session, account_id, response_id, now) is None:
                return False
        for _ in range(3):
            try:
                return self._remove(response_id)
            except IntegrityError:  # a response continuing it was stored meanwhile: fold into it too
                continue
        return self._remove(response_id)

    def _remove(self, response_id: str) -> bool:
        """Delete a response, first folding what it read and said into every response that continues it."""
        with self._sessions.begin() as session:
            self._fold(session, response_id)
            session.execute(delete(ResponseItem).where(ResponseItem.response_id == response_id))
            # the items' foreign key cascades, but SQLite enforces it only on connections told to
            return session.execute(delete(StoredResponse).where(StoredResponse.id == response_id)).rowcount == 1

    def _fold(self, session: Session, response_id: str) -> None:
        """Give each response continuing `response_id` its items and output as the start of its own input, and
        link it to the response before. The first statement writes, so concurrent folds of one response take turns
        (a database lock on SQLite, the rows' locks on PostgreSQL) and only the first moves anything."""
        before = select(StoredResponse.previous_id).where(StoredResponse.id == response_id).scalar_subquery()
        moved = list(session.scalars(update(StoredResponse).where(StoredResponse.previous_id == response_id)
                                     .values(previous_id=before).returning(StoredResponse.id)))
        if not moved:
            return
        head = session.get(StoredResponse, response_id)
        assert head is not None
        account_id = head.account_id
        blobs = [(item_id, blob) for item_id, blob in session.execute(
            select(ResponseItem.item_id, ResponseItem.body).where(ResponseItem.response_id == response_id)
            .order_by(ResponseItem.position))]
        blobs += [(item["id"], self._seal(account_id, item))
                  for item in self._open(account_id, head.body).get("output") or []]
        for child in moved:
            first = session.scalar(select(func.min(ResponseItem.position)).where(ResponseItem.response_id == child))
            start = (0 if first is None else first) - len(blobs)
            session.add_all(ResponseItem(response_id=child, position=start + n, item_id=item_id, body=blob)
                            for n, (item_id, blob) in enumerate(blobs))
        session.flush()

    def sweep(self, now: float) -> int:
        """Delete every response whose time is up, with its items, a batch at a time; how many went. A response
        continuing one that goes keeps what that one read and said (`_fold`)."""
        removed = 0
        while True:
            with self._sessions() as session:
                ids = list(session.scalars(select(StoredResponse.id).where(StoredResponse.expires_at <= now)
                                           .order_by(StoredResponse.created_at).limit(SWEEP_BATCH)))
            if not ids:
                return removed
            went = 0
            for response_id in ids:
                try:
                    went += self._remove(response_id)
                except IntegrityError:  # a response continuing it was stored meanwhile: the next sweep folds it
                    continue
            if not went:
                return removed
            removed += went
