"""Fixtures that start real Azurine servers (and a real llama.cpp server) on free ports."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openai import AzureOpenAI, OpenAI

from oidc_provider import Provider

API_KEY = "0123456789abcdef0123456789abcdef"
# every process of a test that shares one database (replicas, workers, the CLI) must wrap data keys alike
os.environ.setdefault("AZURINE_SERVICE_KEY", "dGVzdHMgc2hhcmUgdGhpcyBzZXJ2aWNlIGtleSAzMmI=")
# as `azurine serve` sets it for the servers: OpenMP threads that busy-wait between steps slow the in-process engine
# tests several times over on shared cores (read when llama.cpp's library loads)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# three test workers share two cores, each driving servers of its own: llama.cpp on one thread a server is the same
# work in fewer threads (the engine-integrity module took 211 s of CPU so, 233 s on two threads beside the others)
os.environ.setdefault("AZURINE_THREADS", "1")
API_VERSION = "2024-10-21"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    cert: Path | None = None  # the self-signed certificate an HTTPS server presents
    metrics_url: str = ""  # the operator's listener: `/metrics` is served there only

    def trusted(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.cert)) if self.cert else True

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
    # one client for every try: each new one loads the CA bundle again (19 ms of CPU), and a server takes a second
    # or more to answer
    with httpx.Client(timeout=2, verify=verify) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            try:
                client.get(url)
                return
            except httpx.TransportError:
                time.sleep(0.2)
    raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}")


def start_server(data_dir: Path, env: dict[str, str] | None = None, tls: bool = False,
                 args: list[str] | None = None) -> Server:
    """`azurine serve` on a free port; with `tls`, over HTTPS with a new self-signed certificate; `args` are
    further options of `azurine serve`."""
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-server.log"
    full_env = {**os.environ, "AZURINE_API_KEY": API_KEY, **(env or {})}
    metrics_port = free_port()
    command = [sys.executable, "-m", "azurine", "serve", "--port", str(port), "--data-dir", str(data_dir),
               "--metrics-listen", f"127.0.0.1:{metrics_port}"]
    cert = None
    if tls:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(data_dir.parent)
        command += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    command += args or []
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    url = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    server = Server(url=url, key=API_KEY, process=process, log=log, data_dir=data_dir, cert=cert,
                    metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
    wait_for_http(url + "/", process, log, verify=server.trusted())
    return server


def provision(data_dir: Path, subscription: str, *groups: str, database_url: str | None = None,
              location: str = "eastus") -> None:
    """A subscription and resource groups in it, written to the server's database as `azurine subscription
    create` and `az group create` would make them: ARM creates accounts only in groups that exist."""
    from azurine.config import Settings
    from azurine.identity.tokens import TENANT_ID
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.subscriptions import SubscriptionStore

    engine = make_engine(database_url or Settings.load(data_dir).database_url)
    migrate(engine)
    store = SubscriptionStore(engine)
    if store.subscription(subscription) is None:
        store.add_subscription(subscription, subscription, TENANT_ID)
    for group in groups:
        store.put_group(subscription, group, location, None)
    engine.dispose()


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


@contextmanager
def fresh_database(prefix: str = "azurine_test") -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def azure(server: Server) -> AzureOpenAI:
    return server.azure()


@pytest.fixture()
def provider() -> Iterator[Provider]:
    """A running OpenID Connect provider with one signing key, `k1`."""
    running = Provider()
    running.add_key("k1")
    try:
        yield running
    finally:
        running.close()
