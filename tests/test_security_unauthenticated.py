"""Nothing on the API's listeners answers without authentication what one tenant must not learn of another:
Prometheus metrics, which name every account's deployments, are served only on the operator's listener
(`azurine serve --metrics-listen HOST:PORT`), and nowhere when it is not given."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from asgi_app import client, in_process_app
from conftest import API_KEY, API_VERSION, Server, free_port


def test_the_api_does_not_serve_metrics(tmp_path: Path) -> None:
    app, _ = in_process_app(tmp_path / "data")

    async def scrape() -> httpx.Response:
        async with client(app) as http:
            return await http.get("/metrics", headers={"api-key": ""})

    response = asyncio.run(scrape())
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_metrics_are_on_the_operator_listener_only(server: Server) -> None:
    served = httpx.get(f"{server.url}/openai/deployments", params={"api-version": "2022-12-01"},
                       headers={"api-key": API_KEY})
    assert served.status_code == 200
    metrics = httpx.get(server.metrics_url)
    assert metrics.status_code == 200 and "azurine_" in metrics.text
    assert httpx.get(f"{server.url}/metrics").status_code == 404
    assert httpx.get(f"{server.url}/metrics", headers={"api-key": API_KEY}).status_code == 404
    # the operator's listener serves the metrics and nothing else
    operator = server.metrics_url.removesuffix("/metrics")
    assert httpx.get(f"{operator}/openai/models", params={"api-version": API_VERSION},
                     headers={"api-key": API_KEY}).status_code == 404


def test_a_worker_has_no_metrics_listener(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "azurine", "serve", "--role", "worker", "--data-dir",
                           str(tmp_path / "data"), "--metrics-listen", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "--metrics-listen" in done.stdout + done.stderr
