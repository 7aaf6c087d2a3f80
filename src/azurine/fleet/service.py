"""The fleet as one replica runs it: the registered servers read from the database, probed, and the places each
request of a fleet-served model may go.

A model that no server of the account's subscription lists is served as it always was, by the engine the deployment
names (`route` answers None), so a server with no fleet works exactly as before. A server serves only the accounts of
the subscription it is registered in: whoever may register servers there can route no other subscription's prompts.

The registry is read again when it changed (a count and a newest change time, one cheap query a second), so a server
registered on one replica is used by every replica within a second or so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import httpx
from sqlalchemy import Engine as Database

from azurine import settings_table
from azurine.catalog import ModelSpec
from azurine.config import Settings
from azurine.engines.base import Engine
from azurine.fleet.health import probe
from azurine.fleet.member import Member, Place
from azurine.fleet.regions import allows
from azurine.fleet.routed import RoutedEngine
from azurine.fleet.router import Affinity
from azurine.fleet.servers import ServerRecord
from azurine.fleet.store import ServerStore

log = logging.getLogger("azurine.fleet")
TICK_S = 1.0
ROUTED_ENGINES = frozenset({"llama_cpp", "sentence_transformers"})  # models an OpenAI-compatible server can serve


class Fleet:
    def __init__(self, store: ServerStore, region: str, shown_region: str, local_capacity: int) -> None:
        self.store = store
        self.local = Place("local", region.lower(), shown_region, max(1, local_capacity))
        self.affinity = Affinity()
        self._members: dict[tuple[str, str], Member] = {}
        self._by_subscription: dict[str, list[Member]] = {}
        self._version: tuple[int, float] | None = None
        self._retired: list[Member] = []
        self._probing: set[asyncio.Task[None]] = set()
        self._reading = asyncio.Lock()  # the probe loop and a registry change read it in turn, never a stale list last

    # the registry ----------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        async with self._reading:
            version = await asyncio.to_thread(self.store.version)
            if version == self._version:
                return
            records = await asyncio.to_thread(self.store.list)
            self._apply(records)
            self._version = version

    def _apply(self, records: list[ServerRecord]) -> None:
        members: dict[tuple[str, str], Member] = {}
        for record in records:
            kept = self._members.get(record.key)
            if kept is not None and kept.server.etag == record.etag:
                members[record.key] = kept
            else:
                members[record.key] = Member.of(record)
        # a changed or removed server's engines may still be streaming: they are closed when the fleet is
        self._retired += [m for key, m in self._members.items() if members.get(key) is not m]
        self._members = members
        by_subscription: dict[str, list[Member]] = {}
        for member in members.values():
            by_subscription.setdefault(member.server.subscription_id.lower(), []).append(member)
        self._by_subscription = by_subscription

    def member(self, subscription: str, name: str) -> Member | None:
        return self._members.get((subscription.lower(), name.lower()))

    # health --------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read the registry when it changes and probe each server at its interval, until `stop`."""
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                try:
                    await self.refresh()
                except Exception:
                    log.exception("the model server registry could not be read; trying again")
                now = time.monotonic()
                for member in list(self._members.values()):
                    if member.next_probe <= now:
                        member.next_probe = now + member.server.spec.probe.interval_s  # not again while it runs
                        task = asyncio.create_task(self._probe(client, member))
                        self._probing.add(task)
                        task.add_done_callback(self._probing.discard)
                try:
                    await asyncio.wait_for(stop.wait(), TICK_S)
                except TimeoutError:
                    pass
            for task in list(self._probing):
                task.cancel()
            await asyncio.gather(*self._probing, return_exceptions=True)

    async def _probe(self, client: httpx.AsyncClient, member: Member) -> None:
        server = member.server
        result = await probe(client, server.spec.probe_url(), server.api_key, server.spec.probe.timeout_s)
        was = member.breaker.circuit
        member.probed(result)
        if member.breaker.circuit is not was:
            log.warning("model server %s: circuit %s (probe: %s)", server.name, member.breaker.circuit.value,
                        result.detail)

    def retry_after(self, places: Sequence[Place]) -> int:
        """Seconds until the next probe of an allowed server that is not routable now (at least one)."""
        now = time.monotonic()
        waits = [m.next_probe - now for m in places if isinstance(m, Member) and not m.routable]
        return max(1, min(60, int(min(waits, default=1.0) + 0.999)))

    # routing -------------------------------------------------------------------------------------------------

    def route(self, subscription: str, location: str, sku: str, model: ModelSpec, local: Engine,
              local_installed: Callable[[], bool], on_route: Callable[[Place], None]) -> Engine | None:
        """The engine for a request to a deployment of `model` (type `sku`) in an account at `location`, or None
        where no server of the subscription serves the model. `local` is the in-process engine, a place too when
        the gateway's own region is allowed and the model is installed here."""
        if model.engine not in ROUTED_ENGINES or model.can("image_generation"):
            return None
        serving = [m for m in self._by_subscription.get(subscription.lower(), ()) if m.server.spec.serves(model.name)]
        if not serving:
            return None
        places: list[Place] = [m for m in serving if allows(sku, location, m.region)]
        if allows(sku, location, self.local.region) and local_installed():
            places.append(self.local)
        return RoutedEngine(model, places, local, self, on_route)

    async def close(self) -> None:
        for member in [*self._members.values(), *self._retired]:
            await member.close()
        self._members.clear()
        self._retired.clear()


def open_fleet(database: Database, settings: Settings) -> Fleet:
    """The app's fleet; the in-process engine counts as a place of `AZURINE_SEQUENCES` sequences."""
    try:
        sequences = int(settings_table.read("AZURINE_SEQUENCES", "8"))
    except ValueError:
        sequences = 8
    return Fleet(ServerStore.open(database, settings.data_dir), settings.region, settings.region_display_name,
                 sequences)
