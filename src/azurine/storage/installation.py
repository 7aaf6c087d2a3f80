"""Values made once per install and kept in its database for good: the built-in administrator's object id.

The administrator holds Owner everywhere, so its id must be no one else's and unknown beyond the install: it is
random, made by the migration that brought the table (or on first use by a database that somehow lacks it).
"""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from azurine.storage.database import session_factory
from azurine.storage.tables import InstallationValue

ADMINISTRATOR = "admin_object_id"

# database URL → the administrator's id: it never changes once made, so one read per process is enough
_known: dict[str, str] = {}
_lock = threading.Lock()


def administrator_id(engine: Engine) -> str:
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        found = _known.get(key)
    if found is not None:
        return found
    sessions = session_factory(engine)
    with sessions() as session:
        row = session.get(InstallationValue, ADMINISTRATOR)
        value = row.value if row else None
    if value is None:
        try:
            with sessions.begin() as session:
                session.add(InstallationValue(name=ADMINISTRATOR, value=str(uuid.uuid4())))
        except IntegrityError:  # another process made it first: theirs holds
            pass
        with sessions() as session:
            row = session.get(InstallationValue, ADMINISTRATOR)
            assert row is not None
            value = row.value
    with _lock:
        _known[key] = value
    return value
