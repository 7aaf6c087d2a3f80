"""A test database's schema moved up, or down, to one migration: the state an older install left, for the tests of
what a migration does to it (the server's `migrate` only ever moves to the newest)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from azurine.storage.database import MIGRATIONS


def migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
