"""The registry of model servers, in the server's database (`model_servers`, migration 0019).

A server's key is the operator's, not an account's, so it is sealed under the service key (the key that wraps every
account's data key), bound to the server's subscription and name: a sealed key copied to another row does not open.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)

from azurine.fleet.servers import Probe, ServedModel, ServerRecord, ServerSpec
from azurine.storage.key_providers.service import ServiceKey, load_service_key

MAX_SERVERS = 256  # per subscription

metadata = MetaData()
model_servers = Table(
    "model_servers", metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("name_key", String(64), primary_key=True),  # the name in lower case: ARM names ignore case
    Column("name", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("sealed_key", LargeBinary, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_at", Float, nullable=False),
)


class TooManyServers(Exception):
    pass


def _aad(subscription: str, name: str) -> bytes:
    return b"azurine model server key\x00" + subscription.lower().encode() + b"\x00" + name.lower().encode()


def spec_json(spec: ServerSpec) -> dict[str, Any]:
    return {"baseUrl": spec.base_url, "kind": spec.kind, "region": spec.region, "dataZone": spec.data_zone,
            "capacity": spec.capacity, "priority": spec.priority,
            "models": [{"name": m.name, "servedName": m.served_name, "ptus": m.ptus} for m in spec.models],
            "healthProbe": {"path": spec.probe.path, "intervalSeconds": spec.probe.interval_s,
                            "timeoutSeconds": spec.probe.timeout_s}}


def spec_of(data: dict[str, Any]) -> ServerSpec:
    probe = data["healthProbe"]
    # `ptus` came after the first servers were stored: theirs read as 0, no reservations
    models = tuple(ServedModel(m["name"], m["servedName"], int(m.get("ptus", 0))) for m in data["models"])
    return ServerSpec(data["baseUrl"], data["kind"], models,
                      data["region"], data["dataZone"], int(data["capacity"]), bool(data["priority"]),
                      Probe(probe["path"], int(probe["intervalSeconds"]), int(probe["timeoutSeconds"])))


def specs_in(engine: Engine, subscription: str) -> list[tuple[str, ServerSpec]]:
    """The subscription's servers by name and description, without their keys: what capacity checks read, where no
    service key is at hand (the command line's `azurine deployments create`)."""
    with engine.connect() as connection:
        rows = connection.execute(select(model_servers.c.name, model_servers.c.spec).where(
            model_servers.c.subscription_id == subscription.lower()).order_by(model_servers.c.name_key)).all()
    return [(row.name, spec_of(row.spec)) for row in rows]


class ServerStore:
    def __init__(self, engine: Engine, service_key: ServiceKey) -> None:
        self.engine = engine
        self._service_key = service_key

    @classmethod
    def open(cls, engine: Engine, data_dir: Path) -> ServerStore:
        return cls(engine, ServiceKey(load_service_key(data_dir)))

    def _record(self, row: Any) -> ServerRecord:
        api_key = None
        if row.sealed_key is not None:
            api_key = self._service_key.open(row.sealed_key, _aad(row.subscription_id, row.name_key)).decode()
        return ServerRecord(row.subscription_id, row.name, spec_of(row.spec), api_key, row.etag, row.created_by,
                            row.created_at, row.updated_by, row.updated_at)

    def get(self, subscription: str, name: str) -> ServerRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(model_servers).where(
                model_servers.c.subscription_id == subscription.lower(),
                model_servers.c.name_key == name.lower())).first()
        return self._record(row) if row is not None else None

    def list(self, subscription: str | None = None) -> list[ServerRecord]:
        query = select(model_servers).order_by(model_servers.c.subscription_id, model_servers.c.name_key)
        if subscription is not None:
            query = query.where(model_servers.c.subscription_id == subscription.lower())
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [self._record(row) for row in rows]

    def version(self) -> tuple[int, float]:
        """How many servers there are and when the last changed: a replica reads the whole list only when this
        moved (a deletion lowers the count, so it shows too)."""
        with self.engine.connect() as connection:
            count, newest = connection.execute(select(func.count(), func.max(model_servers.c.updated_at))).one()
        return int(count), float(newest or 0.0)

    def put(self, subscription: str, name: str, spec: ServerSpec, api_key: str | None,
            principal: str) -> tuple[ServerRecord, bool]:
        """Create or replace the server; whether it was created."""
        sub, key = subscription.lower(), name.lower()
        sealed = self._service_key.seal(api_key.encode(), _aad(sub, key)) if api_key else None
        now = time.time()
        values = {"name": name, "spec": spec_json(spec), "sealed_key": sealed, "etag": uuid.uuid4().hex,
                  "updated_by": principal, "updated_at": now}
        with self.engine.begin() as connection:
            where = (model_servers.c.subscription_id == sub, model_servers.c.name_key == key)
            exists = connection.execute(select(model_servers.c.name).where(*where)).first() is not None
            if exists:
                connection.execute(update(model_servers).where(*where).values(**values))
            else:
                count = connection.execute(select(func.count()).select_from(model_servers).where(
                    model_servers.c.subscription_id == sub)).scalar_one()
                if count >= MAX_SERVERS:
                    raise TooManyServers(f"A subscription holds at most {MAX_SERVERS} model servers.")
                connection.execute(insert(model_servers).values(subscription_id=sub, name_key=key, created_by=principal,
                                                                created_at=now, **values))
        found = self.get(sub, key)
        assert found is not None
        return found, not exists

    def delete(self, subscription: str, name: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(delete(model_servers).where(
                model_servers.c.subscription_id == subscription.lower(), model_servers.c.name_key == name.lower()))
        return bool(result.rowcount)
