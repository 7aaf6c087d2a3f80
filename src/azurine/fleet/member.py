"""The places a request may run: a registered model server as this replica runs it, or the in-process engine.

Each keeps the work it has outstanding from this replica (waiting or running) for the router, and a server keeps
a gate of its capacity (`scheduler/upstream.py`: at most `capacity` requests in flight to it, the rest waiting in
turn by class), its breaker and what its last probe said.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from azurine.catalog import ModelSpec
from azurine.engines.openai_upstream import OpenAIUpstreamEngine
from azurine.fleet.health import Breaker, ProbeResult
from azurine.fleet.regions import display_name
from azurine.fleet.servers import ServerRecord
from azurine.scheduler.upstream import UpstreamGate


@dataclass(eq=False)
class Place:
    key: str  # unique within the fleet: "local", or "server:{subscription}/{name}"
    region: str
    shown_region: str  # what `x-ms-region` says
    capacity: int
    outstanding: int = 0

    @property
    def routable(self) -> bool:
        return True

    @property
    def load(self) -> float:
        """What one more request would make of the place's capacity: the router takes the least."""
        return (self.outstanding + 1) / self.capacity


@dataclass(eq=False)
class Member(Place):
    record: ServerRecord | None = None
    gate: UpstreamGate | None = None
    breaker: Breaker = field(default_factory=Breaker)
    last_probe: ProbeResult | None = None
    next_probe: float = 0.0  # time.monotonic()
    _engines: dict[str, OpenAIUpstreamEngine] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ServerRecord) -> Member:
        key = f"server:{record.subscription_id.lower()}/{record.name.lower()}"
        return cls(key, record.spec.region, display_name(record.spec.region), record.spec.capacity, record=record,
                   gate=UpstreamGate(f"fleet {record.name}", record.spec.capacity))

    @property
    def routable(self) -> bool:
        return self.breaker.routable

    @property
    def server(self) -> ServerRecord:
        assert self.record is not None
        return self.record

    def engine(self, spec: ModelSpec) -> OpenAIUpstreamEngine:
        """The server's engine for `spec`, under the name the server knows it by."""
        engine = self._engines.get(spec.name)
        if engine is None:
            server = self.server
            served = server.spec.serves(spec.name)
            engine = self._engines[spec.name] = OpenAIUpstreamEngine(
                spec, server.spec.base_url, served.served_name if served else spec.name, server.api_key,
                send_priority=server.spec.priority)
        return engine

    def probed(self, result: ProbeResult) -> None:
        self.last_probe = result
        if result.healthy:
            self.breaker.probe_succeeded()
        else:
            self.breaker.failed()
        self.next_probe = time.monotonic() + self.server.spec.probe.interval_s

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
