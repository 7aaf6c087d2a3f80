"""What a registered model server is, and the checks its description passes before it is stored.

Every size is bounded here, whoever sends the description (ARM or the CLI through it): a base URL is `http` or
`https`, at most 2,048 characters, with a host and no credentials, query or fragment (a key goes in `apiKey`, sealed
at rest); a server serves at most 64 models and at most 4,096 sequences at once, and carries at most 100,000 PTUs
of a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from azurine.fleet.regions import DATA_ZONES, known, zone_of

KINDS = ("vLLM", "llama-server", "OpenAI-compatible")
MAX_URL = 2048
MAX_KEY = 4096
MAX_MODELS = 64
MAX_CAPACITY = 4096
MAX_PTUS = 100_000  # of one model on one server
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
PROBE_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,255}$")
PROBE_INTERVAL = (1, 300)  # seconds between probes
PROBE_TIMEOUT = (1, 60)


class InvalidServer(ValueError):
    """A description refused, naming the property at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ServedModel:
    name: str  # the model's name in Azurine's catalog (what deployments name)
    served_name: str  # the name the server knows it by (its `model` field)
    # the provisioned throughput units of this model the server can carry when it runs nothing else (the operator's
    # measure, in the catalog's PTUs); 0: unknown, so the server takes no PTU reservations of it
    ptus: int = 0


@dataclass(frozen=True)
class Probe:
    path: str  # "" is the kind's default
    interval_s: int = 10
    timeout_s: int = 2


@dataclass(frozen=True)
class ServerSpec:
    base_url: str
    kind: str
    models: tuple[ServedModel, ...]
    region: str
    data_zone: str
    capacity: int
    priority: bool  # the server orders its queue by vLLM's `priority` field
    probe: Probe

    def serves(self, model: str) -> ServedModel | None:
        lowered = model.lower()
        return next((m for m in self.models if m.name.lower() == lowered), None)

    def probe_url(self) -> str:
        """Where health is asked: the configured path at the server's origin, else `/health` for vLLM and
        llama-server and the base URL's `models` for others."""
        parts = urlsplit(self.base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if self.probe.path:
            return origin + self.probe.path
        if self.kind in ("vLLM", "llama-server"):
            return origin + "/health"
        return self.base_url.rstrip("/") + "/models"


def check_url(url: str) -> str:
    if len(url) > MAX_URL:
        raise InvalidServer("baseUrl", f"The base URL is longer than {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        raise InvalidServer("baseUrl", "The base URL is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServer("baseUrl", "The base URL must be an http or https URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidServer("baseUrl", "The base URL must not hold credentials: give the key as apiKey.")
    if parts.query or parts.fragment or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidServer("baseUrl", "The base URL must have no query, fragment, spaces or control characters.")
    return url.rstrip("/")


def _bounded(value: int, low: int, high: int, field: str) -> int:
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidServer(field, f"{field} must be a whole number from {low} to {high}.")
    return value


def server_spec(*, base_url: str, kind: str, models: list[tuple[str, str | None, int | None]], region: str,
                data_zone: str | None, capacity: int, priority: bool, probe_path: str | None,
                probe_interval: int | None, probe_timeout: int | None) -> ServerSpec:
    """A checked description; `InvalidServer` names the first property at fault."""
    url = check_url(base_url)
    if kind not in KINDS:
        raise InvalidServer("kind", f"The kind must be one of {', '.join(KINDS)}.")
    if not models:
        raise InvalidServer("models", "A model server serves at least one model.")
    if len(models) > MAX_MODELS:
        raise InvalidServer("models", f"A model server lists at most {MAX_MODELS} models.")
    served = []
    for name, served_name, ptus in models:
        for field, value in (("models.name", name), ("models.servedName", served_name or name)):
            if not MODEL_NAME.match(value):
                raise InvalidServer(field, f"'{value[:130]}' is not a model name: 1 to 128 letters, digits and "
                                    ". _ : / -")
        served.append(ServedModel(name, served_name or name,
                                  _bounded(ptus, 0, MAX_PTUS, "models.ptus") if ptus is not None else 0))
    if len({m.name.lower() for m in served}) != len(served):
        raise InvalidServer("models", "A model is listed twice.")
    region = region.lower()
    if not known(region):
        raise InvalidServer("region", f"'{region[:64]}' is not an Azure region name (eastus, westeurope, ...).")
    zone = zone_of(region)
    if data_zone is not None and data_zone.upper() != zone:
        where = f"data zone {zone}" if zone else "no data zone"
        given = data_zone[:8] if data_zone.upper() in DATA_ZONES else f"'{data_zone[:16]}'"
        raise InvalidServer("dataZone", f"The region {region} is in {where}, not {given}.")
    path = probe_path or ""
    if path and not PROBE_PATH.match(path):
        raise InvalidServer("healthProbe.path", "The probe path is an absolute path of at most 256 characters, "
                            "such as /health or /v1/models.")
    probe = Probe(path, _bounded(probe_interval if probe_interval is not None else 10, *PROBE_INTERVAL,
                                 "healthProbe.intervalSeconds"),
                  _bounded(probe_timeout if probe_timeout is not None else 2, *PROBE_TIMEOUT,
                           "healthProbe.timeoutSeconds"))
    return ServerSpec(url, kind, tuple(served), region, zone, _bounded(capacity, 1, MAX_CAPACITY, "capacity"),
                      priority, probe)


@dataclass(frozen=True)
class ServerRecord:
    subscription_id: str
    name: str
    spec: ServerSpec
    api_key: str | None
    etag: str
    created_by: str
    created_at: float
    updated_by: str
    updated_at: float

    @property
    def key(self) -> tuple[str, str]:
        return self.subscription_id.lower(), self.name.lower()
