"""An Azurine app inside the test's own process, reached through httpx's ASGI transport: for tests of the stages
before an engine, where a real server's start would cost more than the test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from unittest import mock

import httpx
from fastapi import FastAPI

from azurine.api.app import build_services, create_app
from azurine.api.context import Services
from azurine.config import Settings
from azurine.identity.roles import ROLES_BY_NAME
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, TENANT_ID, issue_token
from conftest import API_KEY, API_VERSION

CHAT = f"/openai/deployments/chat/chat/completions?api-version={API_VERSION}"
CHAT_SMALL = f"/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}"


def in_process_app(data_dir: Path, env: dict[str, str] | None = None) -> tuple[FastAPI, Services]:
    """A new app on its own database in `data_dir`, with the test key and the settings `env` gives."""
    with mock.patch.dict(os.environ, {"AZURINE_API_KEY": API_KEY, **(env or {})}):
        services, _ = build_services(Settings.load(data_dir))
    return create_app(services), services


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://azurine.test", headers={"api-key": API_KEY}, timeout=120)


def admin_token(services: Services) -> str:
    """A management token of the built-in administrator."""
    return issue_token(services.store, MANAGEMENT_AUDIENCES[0])[0]


def principal_token(services: Services, role: str | None = None, scope: str | None = None) -> str:
    """A new service principal's management token; with `role`, that role at `scope`."""
    sp, _ = services.directory.create_service_principal(f"sp-{uuid.uuid4().hex[:8]}")
    if role is not None and scope is not None:
        services.access.store.put_assignment(str(uuid.uuid4()), scope, ROLES_BY_NAME[role.lower()].id,
                                             sp.object_id, "ServicePrincipal", "test", TENANT_ID)
        services.access.forget()
    return issue_token(services.store, MANAGEMENT_AUDIENCES[0], sp.object_id, sp.display_name, app_id=sp.app_id)[0]
