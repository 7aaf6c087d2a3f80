"""What the fleet can serve, checked when a deployment is written: the places its type allows, the tokens a minute
they process, and the provisioned throughput (PTUs) reserved on them.

Only a model that a server of the subscription lists is checked; with no server for it, a deployment is written as
it always was. Then:

- Every deployment type needs a place in its residency: a server in a region its type allows, or the gateway
  itself there with the model installed.
- A Standard-family deployment's tokens a minute must not exceed what its allowed places process together (a
  server's PTUs of the model times the catalog's `ptu_input_tpm`). Standard capacity is shared, not reserved, so
  only one deployment at a time is held against it; where a place's throughput is unknown (a server that states no
  PTUs, the gateway's own engine) nothing is refused.
- A provisioned deployment's PTUs are reserved on servers of its residency, and only on servers that state their
  PTUs of the model: the reservations of every provisioned deployment of the subscription are placed on its servers
  so that no server carries more than it can. A server serving several models shares itself among them: a
  reservation of `n` PTUs of a model takes `n / ptus` of a server that carries `ptus` of it alone.

Reservations are placed again at every check, the narrowest residencies first and then the largest, each on the
servers with the most room left: a deterministic packing that never over-commits a server, and may refuse an
arrangement that a cleverer packing would have found room for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from azurine import settings_table
from azurine.catalog import ModelSpec
from azurine.config import default_models_dir
from azurine.fleet.regions import allows, display_name, residency
from azurine.fleet.servers import ServerSpec
from azurine.fleet.service import ROUTED_ENGINES
from azurine.quota.capacity import PROVISIONED, STANDARD
from azurine.storage.state import StateStore


@dataclass(frozen=True)
class Gateway:
    """The gateway's own place: its region, and where its models are installed."""

    region: str
    models_dir: Path

    @classmethod
    def from_settings(cls) -> Gateway:
        return cls(settings_table.read("AZURINE_REGION", "local").lower(), default_models_dir())

    def serves(self, sku: str, location: str, model: ModelSpec) -> bool:
        return allows(sku, location, self.region) and model.path_in(self.models_dir).exists()


@dataclass(frozen=True)
class Reservation:
    """A provisioned deployment's PTUs, to be placed on servers."""

    key: str  # "{account id}/{deployment name}"
    model: str  # the catalog's name, in lower case
    sku: str
    location: str  # the account's
    ptus: int
    shown: str = ""  # "{account}/{deployment}", for messages


@dataclass
class _Room:
    name: str
    spec: ServerSpec
    free: Fraction = field(default_factory=lambda: Fraction(1))  # the share of the server not reserved yet

    def carries(self, model: str) -> int:
        served = self.spec.serves(model)
        return served.ptus if served is not None else 0

    def room_for(self, model: str) -> int:
        """Whole PTUs of `model` that still fit."""
        return int(self.free * self.carries(model))


@dataclass(frozen=True)
class Packing:
    placed: dict[str, dict[str, int]]  # reservation key → server name → PTUs
    unplaced: Reservation | None  # the first reservation that did not fit
    short_by: int = 0


def fleet_serves(servers: Sequence[tuple[str, ServerSpec]], model: ModelSpec) -> bool:
    """Whether the fleet routes the model's requests (`service.Fleet.route`'s rule)."""
    return model.engine in ROUTED_ENGINES and not model.can("image_generation") and \
        any(spec.serves(model.name) for _, spec in servers)


def pack(reservations: Iterable[Reservation], servers: Sequence[tuple[str, ServerSpec]]) -> Packing:
    """Place every reservation on servers its residency allows, or say which did not fit."""
    rooms = [_Room(name, spec) for name, spec in servers]
    placed: dict[str, dict[str, int]] = {}
    for wanted in sorted(reservations, key=lambda r: (residency(r.sku), -r.ptus, r.key)):
        need = wanted.ptus
        where = placed.setdefault(wanted.key, {})
        allowed = [r for r in rooms if r.carries(wanted.model) and allows(wanted.sku, wanted.location, r.spec.region)]
        for room in sorted(allowed, key=lambda r: (-r.room_for(wanted.model), r.name)):
            take = min(need, room.room_for(wanted.model))
            if take <= 0:
                continue
            room.free -= Fraction(take, room.carries(wanted.model))
            where[room.name] = where.get(room.name, 0) + take
            need -= take
            if need == 0:
                break
        if need:
            return Packing(placed, wanted, need)
    return Packing(placed, None)


def reservations_in(store: StateStore, subscription: str) -> list[Reservation]:
    """The subscription's provisioned deployments that the fleet may place (none names its own weights)."""
    return [Reservation(f"{account.id}/{d.name}", d.model_name.lower(), d.sku_name, account.location.lower(),
                        d.sku_capacity, f"{account.name}/{d.name}")
            for account in store.accounts(subscription) for d in store.deployments(account.id)
            if d.sku_name in PROVISIONED and not d.upstream_url and not d.model_path]


def reservations_lost(reservations: Sequence[Reservation], before: Sequence[tuple[str, ServerSpec]],
                      after: Sequence[tuple[str, ServerSpec]]) -> str | None:
    """What a change of the servers from `before` to `after` would leave without room, or None. Only models served
    both before and after count: a model newly served had no reservations, and one no longer served runs in-process
    again."""
    def served(servers: Sequence[tuple[str, ServerSpec]], model: str) -> bool:
        return any(spec.serves(model) for _, spec in servers)

    kept = [r for r in reservations if served(before, r.model) and served(after, r.model)]
    if pack(kept, before).unplaced is not None:
        return None  # already short before (written before the fleet served the model): not this change's doing
    packing = pack(kept, after)
    if packing.unplaced is None:
        return None
    lost = packing.unplaced
    return f"{packing.short_by} of the {lost.ptus} PTUs of {lost.shown or lost.key} ({lost.sku}) without a server"


def check_deployment(servers: Sequence[tuple[str, ServerSpec]], others: Iterable[Reservation], gateway: Gateway,
                     location: str, sku: str, model: ModelSpec, capacity: int, key: str) -> str | None:
    """Why the fleet cannot serve a deployment of `model` as `sku` with `capacity` in an account at `location`, or
    None. `others` are the subscription's other provisioned deployments of fleet-served models."""
    if not fleet_serves(servers, model):
        return None
    serving = [(name, spec) for name, spec in servers if spec.serves(model.name)]
    allowed = [(name, spec) for name, spec in serving if allows(sku, location, spec.region)]
    local = gateway.serves(sku, location, model)
    if not allowed and not local:
        regions = ", ".join(sorted({display_name(spec.region) for _, spec in serving}))
        return (f"No model server of this subscription serves {model.name} where a {sku} deployment of an account in "
                f"{location} may run: its servers are in {regions}.")
    if sku in STANDARD and model.rate_limit == "tokens" and not local:
        carried = [_carried(spec, model) for _, spec in allowed]
        if all(carried):
            per_minute = sum(ptus * model.ptu_input_tpm for ptus in carried)
            if capacity * 1000 > per_minute:
                return (f"There's no available capacity for {capacity}K tokens per minute of {model.name}: the model "
                        f"servers a {sku} deployment of an account in {location} may use ({_names(allowed)}) "
                        f"process at most {per_minute // 1000}K tokens per minute of it.")
    if sku in PROVISIONED:
        # a deployment of a model no server lists runs in-process, as before the fleet: it reserves nothing
        others = [r for r in others if r.key.lower() != key.lower() and any(s.serves(r.model) for _, s in servers)]
        wanted = Reservation(key, model.name.lower(), sku, location.lower(), capacity)
        packing = pack([*others, wanted], servers)
        if packing.unplaced is not None:
            total = sum(_carried(spec, model) for _, spec in allowed)
            free = _free_for(others, servers, wanted)
            return (f"There's no available capacity to reserve {capacity} PTUs of {model.name} for a {sku} "
                    f"deployment of an account in {location}: the model servers its type allows "
                    f"({_names(allowed) or 'none'}) carry {total} PTUs of it, {free} of them free.")
    return None


def _carried(spec: ServerSpec, model: ModelSpec) -> int:
    served = spec.serves(model.name)
    return served.ptus if served is not None else 0


def _names(servers: Sequence[tuple[str, ServerSpec]]) -> str:
    return ", ".join(f"{name} in {display_name(spec.region)}" for name, spec in servers)


def _free_for(others: Sequence[Reservation], servers: Sequence[tuple[str, ServerSpec]], wanted: Reservation) -> int:
    """How many PTUs a reservation like `wanted` could still take, the others placed first."""
    low, high = 0, wanted.ptus
    while low < high:  # the largest that fits: packing is monotone in the size asked
        middle = (low + high + 1) // 2
        trial = Reservation(wanted.key, wanted.model, wanted.sku, wanted.location, middle)
        if pack([*others, trial], servers).unplaced is None:
            low = middle
        else:
            high = middle - 1
    return low
