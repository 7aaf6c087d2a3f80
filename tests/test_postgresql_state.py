"""PostgreSQL as the state store: migrations, first-start defaults, and a server that answers on it."""

from __future__ import annotations

import psycopg
from alembic.script import ScriptDirectory
from openai import AzureOpenAI

from azurine.catalog import load_catalog
from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS, ensure_defaults
from azurine.storage.database import MIGRATIONS, make_engine, migrate
from azurine.storage.state import StateStore
from conftest import API_KEY, API_VERSION, start_server, stop

DEFAULT_NAMES = {d.name for d in DEFAULT_DEPLOYMENTS}


def test_migrations_and_defaults_on_postgresql(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # a second replica starting finds the schema current
    store = StateStore(engine)
    created = ensure_defaults(store, load_catalog(), "local")
    assert created is not None
    assert ensure_defaults(store, load_catalog(), "local") is None
    names = {d.name for d in store.deployments(created.id)}
    assert names == DEFAULT_NAMES
    assert all(d.sku_name == "GlobalStandard" for d in store.deployments(created.id))
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)


def test_server_on_postgresql_answers(database_url: str, tmp_path) -> None:
    server = start_server(tmp_path / "data", env={"AZURINE_DATABASE_URL": database_url})
    try:
        client = AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION, max_retries=0)
        result = client.embeddings.create(model="embeddings", input="stored in PostgreSQL")
        assert len(result.data[0].embedding) == 384
    finally:
        stop(server.process)
    assert not (tmp_path / "data" / "azurine.db").exists()
