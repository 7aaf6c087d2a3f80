"""The file store on SQLite and PostgreSQL, the content sealer, and the batch input checks, without HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from azurine.files import BatchLine, LineError, validate_batch_lines
from azurine.files.batch_input import MAX_REQUESTS
from azurine.storage.content import ContentSealer, UnknownSealFormat
from azurine.storage.database import make_engine, migrate
from azurine.storage.files import CHUNK_BYTES, FileStore
from azurine.storage.state import StateStore
from azurine.storage.tables import FileChunk, StoredFile
from conftest import fresh_database


def open_store(url: str) -> tuple[FileStore, str, str]:
    """A migrated store and two accounts in it."""
    engine = make_engine(url)
    migrate(engine)
    state = StateStore(engine)
    first = state.create_account("files-a", location="local", subscription_id="sub", resource_group="rg")
    second = state.create_account("files-b", location="local", subscription_id="sub", resource_group="rg")
    return FileStore(engine, ContentSealer()), first.id, second.id


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileStore, str, str]]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'azurine.db'}")
        yield opened
        opened[0].engine.dispose()
    else:
        with fresh_database() as url:
            opened = open_store(url)
            yield opened
            opened[0].engine.dispose()


def test_a_file_round_trips_and_only_its_account_sees_it(store: tuple[FileStore, str, str]) -> None:
    files, account, other = store
    record = files.create(account, "batch", "input.jsonl", b'{"a": 1}\n')
    assert record.id.startswith("file-") and len(record.id) == 37
    assert all(c in "0123456789abcdef" for c in record.id[5:])
    assert (record.bytes, record.purpose, record.filename, record.status) == (9, "batch", "input.jsonl", "processed")
    assert files.get(account, record.id) == record
    assert files.content(account, record.id) == b'{"a": 1}\n'
    assert files.get(other, record.id) is None
    assert files.content(other, record.id) is None
    assert files.list(other) == []
    assert files.delete(other, record.id) is False
    assert files.delete(account, record.id) is True
    assert files.get(account, record.id) is None
    assert files.content(account, record.id) is None
    assert files.delete(account, record.id) is False


def test_a_file_bigger_than_a_chunk_is_stored_in_chunks(store: tuple[FileStore, str, str]) -> None:
    files, account, _ = store
    data = os.urandom(2 * CHUNK_BYTES) + b"tail" * 1000
    record = files.create(account, "fine-tune", "big.bin", data)
    assert record.bytes == len(data)
    assert files.content(account, record.id) == data
    with files.engine.connect() as conn:
        sizes = conn.execute(select(func.length(FileChunk.data)).where(FileChunk.file_id == record.id)
                             .order_by(FileChunk.part)).scalars().all()
    assert len(sizes) == 3 and all(s <= CHUNK_BYTES for s in sizes)
    assert sum(sizes) == len(data) + 1  # the sealer's format marker
    files.delete(account, record.id)
    with files.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(FileChunk)) == 0


def test_an_empty_file_is_kept(store: tuple[FileStore, str, str]) -> None:
    files, account, _ = store
    record = files.create(account, "assistants", "empty.txt", b"")
    assert record.bytes == 0 and files.content(account, record.id) == b""


def test_list_pages_by_purpose_and_order(store: tuple[FileStore, str, str]) -> None:
    files, account, other = store
    made = [files.create(account, "batch" if i % 2 == 0 else "fine-tune", f"f{i}.jsonl", b"x") for i in range(7)]
    files.create(other, "batch", "theirs.jsonl", b"y")
    newest_first = [r.id for r in files.list(account, limit=100)]
    assert newest_first == [r.id for r in reversed(made)]
    assert [r.id for r in files.list(account, order="asc", limit=100)] == [r.id for r in made]
    batch = [r.id for r in files.list(account, purpose="batch", limit=100)]
    assert batch == [made[6].id, made[4].id, made[2].id, made[0].id]
    # page through two at a time, both ways
    for order, expected in (("desc", newest_first), ("asc", list(reversed(newest_first)))):
        seen: list[str] = []
        after = None
        while True:
            page = files.list(account, after=after, limit=2, order=order)  # type: ignore[arg-type]
            if not page:
                break
            seen += [r.id for r in page]
            after = page[-1].id
        assert seen == expected
    assert len(files.list(account)) == 7
    assert files.list(account, after="file-" + "0" * 32) == []
    assert files.list(other, after=made[3].id) == []  # another account's id is no cursor
    with pytest.raises(ValueError):
        files.list(account, order="sideways")  # type: ignore[arg-type]


def test_deleting_the_account_deletes_its_files(store: tuple[FileStore, str, str]) -> None:
    files, account, other = store
    files.create(account, "batch", "a.jsonl", b"a" * 10)
    kept = files.create(other, "batch", "b.jsonl", b"b")
    StateStore(files.engine).delete_account(account)
    with files.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(StoredFile)) == 1
    assert files.content(other, kept.id) == b"b"


def test_the_sealer_marks_its_format_and_refuses_unknown_ones() -> None:
    sealer = ContentSealer()
    assert sealer.seal("acct", b"hello") == b"\x00hello"
    assert sealer.unseal("acct", b"\x00hello") == b"hello"
    assert sealer.unseal("acct", sealer.seal("acct", b"")) == b""
    for blob in (b"\x01ciphertext", b""):
        with pytest.raises(UnknownSealFormat):
            sealer.unseal("acct", blob)


# batch input files -----------------------------------------------------------------------------------------

def request_line(custom_id: str, url: str = "/chat/completions", model: str = "chat", **extra: object) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}, **extra})


def test_a_good_batch_file_gives_its_requests() -> None:
    data = "\n".join([request_line("a"), "", request_line("b", url="/v1/chat/completions")]) + "\r\n"
    lines, errors = validate_batch_lines(("\ufeff" + data).encode())
    assert errors == []
    assert [(x.line, x.custom_id, x.method, x.url) for x in lines] == [
        (1, "a", "POST", "/chat/completions"), (3, "b", "POST", "/chat/completions")]
    assert isinstance(lines[0], BatchLine) and lines[0].body["model"] == "chat"
    for url in ("/embeddings", "/v1/completions"):
        lines, errors = validate_batch_lines(request_line("x", url=url).encode())
        assert errors == [] and lines[0].url == url.removeprefix("/v1")


def test_every_bad_line_is_reported_with_its_number_and_reason() -> None:
    rows = [
        request_line("ok"),                                                       # 1
        "{not json",                                                              # 2
        "[1, 2]",                                                                 # 3
        json.dumps({"method": "POST", "url": "/chat/completions", "body": {"model": "chat"}}),  # 4
        request_line("ok"),                                                       # 5
        json.dumps({"custom_id": "g", "method": "GET", "url": "/chat/completions", "body": {"model": "chat"}}),
        request_line("h", url="/images/generations"),                             # 7
        json.dumps({"custom_id": "i", "method": "POST", "url": "/chat/completions"}),  # 8
        json.dumps({"custom_id": "j", "method": "POST", "url": "/chat/completions", "body": {}}),  # 9
        request_line("k", url="/embeddings"),                                     # 10
        request_line("l", model="other"),                                         # 11
    ]
    data = ("\n".join(rows) + "\n").encode() + b'{"custom_id": "\xff"}\n'          # 12
    lines, errors = validate_batch_lines(data)
    assert [x.line for x in lines] == [1]
    assert [(e.line, e.code) for e in errors] == [
        (2, "invalid_json_line"), (3, "invalid_request"), (4, "invalid_request"), (5, "duplicate_custom_id"),
        (6, "invalid_request"), (7, "url_mismatch"), (8, "invalid_request"), (9, "invalid_request"),
        (10, "url_mismatch"), (11, "model_mismatch"), (12, "invalid_json_line")]
    by_line = {e.line: e.message for e in errors}
    assert all(by_line[n].startswith(f"Line {n} ") for n in by_line)
    assert "custom_id" in by_line[4] and "line 1" in by_line[5]
    assert "POST" in by_line[6] and "/images/generations" in by_line[7]
    assert "body" in by_line[8] and "model" in by_line[9]
    assert "line 1" in by_line[10] and "'other'" in by_line[11] and "UTF-8" in by_line[12]


def test_an_empty_file_and_too_many_requests_are_refused() -> None:
    for data in (b"", b"\n  \n"):
        assert validate_batch_lines(data) == ([], [LineError(0, "empty_batch", validate_batch_lines(data)[1][0]
                                                             .message)])
    many = "\n".join(request_line(f"r{i}") for i in range(MAX_REQUESTS + 2)).encode()
    lines, errors = validate_batch_lines(many)
    assert [(e.line, e.code) for e in errors] == [(MAX_REQUESTS + 1, "too_many_tasks")]
    assert "100,000" in errors[0].message
