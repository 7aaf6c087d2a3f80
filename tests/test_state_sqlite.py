"""The embedded state store: SQLite in the data directory, created on first start."""

from __future__ import annotations

from pathlib import Path

import pytest

from azurine.catalog import load_catalog
from azurine.storage.bootstrap import ensure_defaults
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import StateStore


def store_in(path: Path) -> StateStore:
    engine = make_engine(f"sqlite:///{path / 'azurine.db'}")
    migrate(engine)
    return StateStore(engine)


def test_first_start_creates_the_default_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_API_KEY", raising=False)
    store = store_in(tmp_path)
    account = ensure_defaults(store, load_catalog(), "local")
    assert account is not None and account.name == "default"
    assert len(account.key1) == len(account.key2) == 32 and account.key1 != account.key2
    deployments = {d.name: d for d in store.deployments(account.id)}
    assert deployments["chat"].model_name == "Qwen2.5-Coder-0.5B-Instruct"
    assert deployments["chat-small"].model_name == "SmolLM2-135M-Instruct"
    assert deployments["embeddings"].model_name == "all-MiniLM-L6-v2"


def test_the_api_key_variable_becomes_key1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURINE_API_KEY", "feedfacefeedfacefeedfacefeedface")
    account = ensure_defaults(store_in(tmp_path), load_catalog(), "local")
    assert account is not None and account.key1 == "feedfacefeedfacefeedfacefeedface"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = ensure_defaults(store_in(tmp_path), load_catalog(), "local")
    again = store_in(tmp_path)
    assert ensure_defaults(again, load_catalog(), "local") is None
    assert again.account_named("default") == first
