"""Batches survive what happens to the processes running them: `kill -9` at several points and a restart,
the completion window running out, and two workers sharing one PostgreSQL queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from azurine.storage.database import make_engine
from azurine.storage.tables import BatchLine
from batch_helpers import add_batch_deployment, assert_each_once, chat_lines, outcomes, sqlite_url, submit, wait_for
from conftest import API_KEY, ROOT, Server, start_server, stop


def kill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def test_kill_9_at_several_points_loses_and_repeats_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        add_batch_deployment(sqlite_url(data))
        created = submit(server.azure(), chat_lines(24, max_tokens=12))
        wait_for(server.azure(), created.id, at_least=2)
        kill(server)  # lines running and lines done

        server = start_server(data)
        wait_for(server.azure(), created.id, at_least=10)
        kill(server)  # again, further on

        server = start_server(data)
        client = server.azure()
        batch = wait_for(client, created.id)
        assert batch.status == "completed", batch
        assert batch.request_counts.completed == 24 and batch.request_counts.failed == 0
        outputs, errors = outcomes(client, batch)
        assert_each_once(outputs, errors, 24)
        assert errors == []
    finally:
        stop(server.process)


def test_a_kill_right_after_create_still_runs_the_batch(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        add_batch_deployment(sqlite_url(data))
        created = submit(server.azure(), chat_lines(3))
        kill(server)  # before any line ran, most likely
        server = start_server(data)
        client = server.azure()
        batch = wait_for(client, created.id)
        assert batch.status == "completed"
        assert_each_once(*outcomes(client, batch), 3)
    finally:
        stop(server.process)


def test_a_batch_expires_with_what_completed_and_batch_expired_for_the_rest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, env={"AZURINE_BATCH_WINDOW_SECONDS": "4"})
    try:
        add_batch_deployment(sqlite_url(data))
        client = server.azure()
        batch = wait_for(client, submit(client, chat_lines(60, max_tokens=48)).id, timeout=120)
        assert batch.status == "expired" and batch.expired_at
        outputs, errors = outcomes(client, batch)
        assert_each_once(outputs, errors, 60)
        expired = [e for e in errors if e["error"] and e["error"]["code"] == "batch_expired"]
        assert expired and len(outputs) + len(expired) == 60
        assert batch.request_counts.completed == len(outputs)
    finally:
        stop(server.process)


def worker_log(data_dir: Path, name: str) -> Path:
    return data_dir.parent / f"{name}.log"


def start_worker(database_url: str, data_dir: Path, name: str) -> subprocess.Popen[bytes]:
    log = worker_log(data_dir, name)
    env = {**os.environ, "AZURINE_API_KEY": API_KEY, "AZURINE_DATABASE_URL": database_url}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "azurine", "serve", "--role", "worker", "--worker-name", name,
                                 "--data-dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_two_workers_share_a_postgresql_queue_without_running_a_line_twice(tmp_path: Path,
                                                                           database_url: str) -> None:
    gateway = start_server(tmp_path / "gateway", env={"AZURINE_DATABASE_URL": database_url,
                                                       "AZURINE_ROLE": "gateway"})
    workers = [start_worker(database_url, tmp_path / f"worker-{i}", f"worker-{i}") for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not all("batch worker worker-" in worker_log(tmp_path / f"worker-{i}", f"worker-{i}").read_text()
                      for i in range(2)):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "workers did not start"
            time.sleep(0.2)
        add_batch_deployment(database_url)
        client = gateway.azure()
        batch = wait_for(client, submit(client, chat_lines(20, max_tokens=16)).id)
        assert batch.status == "completed"
        outputs, errors = outcomes(client, batch)
        assert_each_once(outputs, errors, 20)
        assert errors == []
        engine = make_engine(database_url)
        with engine.connect() as connection:
            by_worker = dict(connection.execute(select(BatchLine.finished_by, func.count())
                                                .where(BatchLine.batch_id == batch.id)
                                                .group_by(BatchLine.finished_by)).all())
        engine.dispose()
        assert sum(by_worker.values()) == 20
        assert {name.split(":")[0] for name in by_worker} == {"worker-0", "worker-1"}, by_worker
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        stop(gateway.process)
