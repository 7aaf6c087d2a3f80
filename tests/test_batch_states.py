"""What a batch's status allows, and what its input file's use by a batch allows.

Through the official SDK on both surfaces: cancelling a batch that has ended is OpenAI's 409, cancelling one that
is already cancelling answers it as it is, and the input file of a batch that has not ended cannot be deleted
until it has. A gateway without a worker holds its batches where they are; a worker started on demand ends them
(the gateway's one-second window has long passed by then, so those not cancelled expire). Beneath the API, on
SQLite and PostgreSQL: a delete racing a batch's creation never leaves a running batch without its file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from azurine.storage.batches import BatchNotCancellable, BatchStore, InputFileMissing, NewLine
from azurine.storage.content import ContentSealer
from azurine.storage.database import make_engine, migrate
from azurine.storage.files import FileInUse, FileStore
from azurine.storage.state import StateStore
from batch_helpers import add_batch_deployment, chat_lines, sqlite_url, submit, wait_for
from conftest import API_KEY, ROOT, Server, fresh_database, start_server, stop

# the API's side ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("states") / "data"
    running = start_server(data, env={"AZURINE_BATCH_WINDOW_SECONDS": "1"}, args=["--role", "gateway"])
    try:
        add_batch_deployment(sqlite_url(data))
        yield running
    finally:
        stop(running.process)


@contextmanager
def worker(gateway: Server) -> Iterator[None]:
    """A batch worker on the gateway's database while the block runs."""
    data = gateway.data_dir.parent / "worker"
    env = {**os.environ, "AZURINE_API_KEY": API_KEY, "AZURINE_DATABASE_URL": sqlite_url(gateway.data_dir)}
    with (gateway.data_dir.parent / "worker.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "azurine", "serve", "--role", "worker", "--data-dir",
                                    str(data)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        yield
    finally:
        stop(process)


def refused_cancel(client: openai.OpenAI | openai.AzureOpenAI, batch_id: str) -> dict[str, Any]:
    with pytest.raises(openai.ConflictError) as refused:
        client.batches.cancel(batch_id)
    assert refused.value.status_code == 409
    return refused.value.body  # type: ignore[return-value]


def test_cancelling_a_running_batch_twice_answers_it_cancelling_both_times(gateway: Server) -> None:
    client = gateway.azure()
    created = submit(client, chat_lines(2, prefix="twice"))
    assert created.status == "in_progress"
    first = client.batches.cancel(created.id)
    assert first.status == "cancelling" and first.cancelling_at
    again = gateway.v1().batches.cancel(created.id)
    assert again.status == "cancelling" and again.cancelling_at == first.cancelling_at
    assert client.batches.retrieve(created.id).status == "cancelling"


def test_a_batchs_input_file_cannot_be_deleted_until_the_batch_ends(gateway: Server) -> None:
    client, v1 = gateway.azure(), gateway.v1()
    running = submit(client, chat_lines(2, prefix="held"))
    cancelling = submit(client, chat_lines(2, prefix="held"))
    client.batches.cancel(cancelling.id)
    for batch, status in ((running, "in_progress"), (cancelling, "cancelling")):
        for surface in (client, v1):
            with pytest.raises(openai.ConflictError) as refused:
                surface.files.delete(batch.input_file_id)
            assert refused.value.body == {  # Azure's envelope, naming the batch that holds the file
                "code": "conflict",
                "message": f"File with id '{batch.input_file_id}' cannot be deleted while batch '{batch.id}' "
                           f"(status '{status}') uses it as its input file. Delete it once the batch has ended, "
                           "or cancel the batch first."}
        assert client.files.content(batch.input_file_id).read() == chat_lines(2, prefix="held")

    with worker(gateway):
        assert wait_for(client, running.id, timeout=60).status == "expired"
        assert wait_for(client, cancelling.id, timeout=60).status == "cancelled"
    assert client.files.delete(running.input_file_id).deleted
    assert v1.files.delete(cancelling.input_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(running.input_file_id)


def test_cancelling_an_expired_or_cancelled_batch_is_openais_409(gateway: Server) -> None:
    client, v1 = gateway.azure(), gateway.v1()
    expiring = submit(client, chat_lines(1, prefix="ended"))
    cancelled = submit(client, chat_lines(1, prefix="ended"))
    client.batches.cancel(cancelled.id)
    with worker(gateway):
        ended = {"expired": wait_for(client, expiring.id, timeout=60),
                 "cancelled": wait_for(client, cancelled.id, timeout=60)}
    for status, batch in ended.items():
        assert batch.status == status
        for surface in (client, v1):
            assert refused_cancel(surface, batch.id) == {
                "code": "conflict", "message": f"Cannot cancel a batch with status '{status}'.",
                "param": None, "type": "invalid_request_error"}
        after = client.batches.retrieve(batch.id)
        assert after.status == status and after.cancelling_at == batch.cancelling_at


def test_cancelling_a_batch_that_was_never_there_is_a_404(gateway: Server) -> None:
    with pytest.raises(openai.NotFoundError):
        gateway.azure().batches.cancel("batch_nope")
    with pytest.raises(openai.NotFoundError):
        gateway.v1().batches.cancel("batch_nope")


# the stores' side ----------------------------------------------------------------------------------------------


Stores = tuple[BatchStore, FileStore, str]


def open_stores(url: str) -> Stores:
    engine = make_engine(url)
    migrate(engine)
    account = StateStore(engine).create_account("states", location="local", subscription_id="sub",
                                                resource_group="rg")
    sealer = ContentSealer()
    return BatchStore(engine, sealer), FileStore(engine, sealer), account.id


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "sqlite":
        opened = open_stores(f"sqlite:///{tmp_path / 'azurine.db'}")
        yield opened
        opened[0].engine.dispose()
        return
    with fresh_database() as url:
        opened = open_stores(url)
        yield opened
        opened[0].engine.dispose()


LINES = [NewLine(1, "task-1", {"model": "batch", "messages": [{"role": "user", "content": "hi"}]}, 10)]


def create(batches: BatchStore, account: str, file_id: str) -> Any:
    return batches.create(account, "batch", "/chat/completions", file_id, "24h", None, LINES, 3600,
                          input_file_required=True)


def test_a_delete_that_races_a_batchs_creation_waits_for_it_and_refuses(stores: Stores,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    batches, files, account = stores
    file_id = files.create(account, "batch", "in.jsonl", b"{}\n").id
    held, release = threading.Event(), threading.Event()
    checked = BatchStore._input_file_held

    def held_open(session: Any, account_id: str, wanted: str) -> bool:
        found = checked(session, account_id, wanted)
        held.set()
        release.wait(10)  # the create's transaction stays open, its batch written and the file seen
        return found

    monkeypatch.setattr(BatchStore, "_input_file_held", staticmethod(held_open))
    created: list[Any] = []
    creating = threading.Thread(target=lambda: created.append(create(batches, account, file_id)))
    creating.start()
    assert held.wait(10)
    outcome: list[BaseException | bool] = []

    def delete() -> None:
        try:
            outcome.append(files.delete(account, file_id))
        except FileInUse as error:
            outcome.append(error)

    deleting = threading.Thread(target=delete)
    deleting.start()
    deleting.join(0.5)
    assert deleting.is_alive(), "the delete went ahead while the batch was being created"
    release.set()
    creating.join(10)
    deleting.join(10)
    assert created and created[0].status == "in_progress"
    assert isinstance(outcome[0], FileInUse) and outcome[0].batch_id == created[0].id
    assert files.get(account, file_id) is not None


def test_a_batch_whose_file_was_deleted_first_is_not_stored(stores: Stores) -> None:
    batches, files, account = stores
    file_id = files.create(account, "batch", "in.jsonl", b"{}\n").id
    assert files.delete(account, file_id) is True
    with pytest.raises(InputFileMissing):
        create(batches, account, file_id)
    assert batches.list(account) == []


def test_cancel_moves_only_a_batch_that_has_not_started_ending(stores: Stores) -> None:
    batches, files, account = stores
    file_id = files.create(account, "batch", "in.jsonl", b"{}\n").id
    running = create(batches, account, file_id)
    cancelling = batches.cancel(account, running.id)
    assert cancelling is not None and cancelling.status == "cancelling"
    again = batches.cancel(account, running.id)
    assert again is not None and again.status == "cancelling" and again.times == cancelling.times
    assert batches.cancel("another-account", running.id) is None

    finishing = create(batches, account, file_id)
    assert batches.begin_finalizing(finishing.id, "w", 30, "completed") is not None
    still = batches.cancel(account, finishing.id)
    assert still is not None and still.status == "finalizing"
    assert batches.close_out(finishing.id, "w", "completed", None, None)
    with pytest.raises(BatchNotCancellable) as ended:
        batches.cancel(account, finishing.id)
    assert ended.value.status == "completed"
    with pytest.raises(FileInUse):  # the cancelling batch still holds it
        files.delete(account, file_id)
