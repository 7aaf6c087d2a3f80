"""Fixtures that start real Azurine servers (and a real llama.cpp server) on free ports."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import AzureOpenAI, OpenAI

API_KEY = "0123456789abcdef0123456789abcdef"
API_VERSION = "2024-10-21"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path

    def azure(self, **kwargs: object) -> AzureOpenAI:
        return AzureOpenAI(azure_endpoint=self.url, api_key=self.key, api_version=API_VERSION, max_retries=0,
                           **kwargs)  # type: ignore[arg-type]

    def v1(self) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/openai/v1/", api_key=self.key, max_retries=0)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180,
                  verify: ssl.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(url, timeout=2, verify=verify)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}")


def start_server(data_dir: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-server.log"
    full_env = {**os.environ, "AZURINE_API_KEY": API_KEY, **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "azurine", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/", process, log)
    return Server(url=url, key=API_KEY, process=process, log=log, data_dir=data_dir)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded server for the whole session: models load once and stay loaded."""
    running = start_server(tmp_path_factory.mktemp("embedded") / "data")
    try:
        yield running
    finally:
        stop(running.process)


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture()
def database_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    import uuid

    import psycopg

    name = f"azurine_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def azure(server: Server) -> AzureOpenAI:
    return server.azure()
