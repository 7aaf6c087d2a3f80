"""The server serves HTTPS itself, so clients that insist on TLS (azure-core with bearer tokens) can talk."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import openai
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import API_KEY, API_VERSION, ROOT, free_port, stop, wait_for_http


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


def test_https_with_the_official_client(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "azurine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
             "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "AZURINE_API_KEY": API_KEY}, cwd=ROOT,
        )
    try:
        url = f"https://localhost:{port}"
        trusted = ssl.create_default_context(cafile=str(cert))
        wait_for_http(f"{url}/", process, log, verify=trusted)
        client = openai.AzureOpenAI(azure_endpoint=url, api_key=API_KEY, api_version=API_VERSION, max_retries=0,
                                    http_client=httpx.Client(verify=trusted))
        result = client.embeddings.create(model="embeddings", input="over TLS")
        assert len(result.data[0].embedding) == 384
        assert "Endpoint: https://localhost" in log.read_text()
    finally:
        stop(process)
