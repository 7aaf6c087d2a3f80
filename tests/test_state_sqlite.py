"""The embedded state store: SQLite in the data directory, created on first start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from azurine.catalog import load_catalog
from azurine.storage.bootstrap import ensure_defaults
from azurine.storage.database import MIGRATIONS, head_revision, make_engine, migrate
from azurine.storage.state import StateStore
from migrating import migrate_to


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


def test_the_newest_migration_file_names_alembics_head() -> None:
    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_a_schema_a_migration_behind_is_brought_to_the_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    behind = f"{int(head_revision()) - 1:04d}"
    migrate_to(engine, behind)
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()


def test_a_schema_at_the_head_is_checked_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'azurine.db'}"
    migrate(make_engine(url))
    check = ("import sys; from azurine.storage.database import make_engine, migrate; "
             f"migrate(make_engine({url!r})); print('alembic' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
