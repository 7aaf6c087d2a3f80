"""An Azurine app inside the test's own process, reached through httpx's ASGI transport: for tests of the stages
before an engine, where a real server's start would cost more than the test."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import httpx
from fastapi import FastAPI

from azurine.api.app import build_services, create_app
from azurine.api.context import Services
from azurine.config import Settings
from conftest import API_KEY, API_VERSION

CHAT = f"/openai/deployments/chat/chat/completions?api-version={API_VERSION}"


def in_process_app(data_dir: Path, env: dict[str, str] | None = None) -> tuple[FastAPI, Services]:
    """A new app on its own database in `data_dir`, with the test key and the settings `env` gives."""
    with mock.patch.dict(os.environ, {"AZURINE_API_KEY": API_KEY, **(env or {})}):
        services, _ = build_services(Settings.load(data_dir))
    return create_app(services), services


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://azurine.test", headers={"api-key": API_KEY}, timeout=120)
