"""The server serves HTTPS itself, so clients that insist on TLS (azure-core with bearer tokens) can talk."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from conftest import API_KEY, API_VERSION, start_server, stop


def test_https_with_the_official_client(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", tls=True)
    try:
        assert server.url.startswith("https://localhost:")
        client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION,
                                    max_retries=0, http_client=httpx.Client(verify=server.trusted()))
        result = client.embeddings.create(model="embeddings", input="over TLS")
        assert len(result.data[0].embedding) == 384
        assert "Endpoint: https://localhost" in server.log_text()
    finally:
        stop(server.process)
