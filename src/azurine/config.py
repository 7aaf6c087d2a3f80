"""Settings shared by the server and the CLI, from flags and `AZURINE_*` environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from azurine import settings_table
from azurine.vision.addresses import AddressPolicy


def default_models_dir() -> Path:
    explicit = settings_table.read("AZURINE_MODELS_DIR")
    if explicit:
        return Path(explicit)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "azurine" / "models"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    models_dir: Path
    database_url: str
    region: str = "local"
    region_display_name: str = "Local"
    redis_url: str | None = None  # shared rate-limit counters for several replicas
    limits: RequestLimits = field(default_factory=lambda: RequestLimits())
    response_retention_days: int = 30  # how long a stored response of the Responses API is kept
    images: ImageSettings = field(default_factory=lambda: ImageSettings())  # chat images given by URL
    image_link_seconds: int = 3600  # how long a generated image's signed link works

    @classmethod
    def load(cls, data_dir: Path | str | None = None) -> Settings:
        data = Path(data_dir or settings_table.read("AZURINE_DATA_DIR") or "./azurine-data").resolve()
        url = settings_table.read("AZURINE_DATABASE_URL") or f"sqlite:///{data / 'azurine.db'}"
        return cls(
            data_dir=data,
            models_dir=default_models_dir(),
            database_url=url,
            region=settings_table.read("AZURINE_REGION", "local"),
            region_display_name=settings_table.read("AZURINE_REGION_DISPLAY_NAME", "Local"),
            redis_url=settings_table.read("AZURINE_REDIS_URL") or None,
            limits=RequestLimits.load(),
            response_retention_days=_count("AZURINE_RESPONSE_RETENTION_DAYS", 30),
            images=ImageSettings.load(),
            image_link_seconds=_count("AZURINE_IMAGE_LINK_SECONDS", 3600),
        )


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold before it is refused, checked before anything else reads it (authentication
    included), so an anonymous caller cannot make the server buffer or walk more than this."""

    max_header_bytes: int = 64 * 1024  # a request line and headers; Entra tokens with many groups stay well under
    # a JSON body; file uploads have their own limit (Azure's 200 MB for a batch input file)
    max_body_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 64  # nested arrays and objects in a JSON body or a batch input line
    # characters of regex patterns in the blocklists of one account, compiled together when a list changes
    max_blocklist_regex_chars: int = 100_000

    @classmethod
    def load(cls) -> RequestLimits:
        """`AZURINE_MAX_HEADER_BYTES`, `AZURINE_MAX_BODY_BYTES` (sizes such as 64KiB or 32MiB),
        `AZURINE_MAX_JSON_DEPTH` and `AZURINE_MAX_BLOCKLIST_REGEX_CHARS` (whole numbers)."""
        default = cls()
        return cls(max_header_bytes=_size("AZURINE_MAX_HEADER_BYTES", default.max_header_bytes),
                   max_body_bytes=_size("AZURINE_MAX_BODY_BYTES", default.max_body_bytes),
                   max_json_depth=_count("AZURINE_MAX_JSON_DEPTH", default.max_json_depth),
                   max_blocklist_regex_chars=_count("AZURINE_MAX_BLOCKLIST_REGEX_CHARS",
                                                    default.max_blocklist_regex_chars))


@dataclass(frozen=True)
class ImageSettings:
    """What happens to a chat image given by `http(s)://` URL (data URLs are always read): refused (`off`), downloaded
    by Azurine within bounds and sent on inline (`on`), or passed as given to an upstream deployment's server, which
    downloads it itself (`upstream`); and the addresses Azurine's downloads may reach besides public ones."""

    url_fetch: Literal["off", "on", "upstream"] = "off"
    addresses: AddressPolicy = field(default_factory=AddressPolicy)

    @classmethod
    def load(cls) -> ImageSettings:
        raw = settings_table.read("AZURINE_IMAGE_URL_FETCH", "").strip().lower() or "off"
        fetch = {"0": "off", "false": "off", "no": "off", "1": "on", "true": "on", "yes": "on"}.get(raw, raw)
        if fetch not in ("off", "on", "upstream"):
            raise ValueError(f"AZURINE_IMAGE_URL_FETCH must be off, on or upstream, not {raw!r}")
        return cls(url_fetch=fetch,  # type: ignore[arg-type]
                   addresses=AddressPolicy.parse(settings_table.read("AZURINE_IMAGE_URL_ALLOW_PRIVATE", "")))


def _size(name: str, default: int) -> int:
    raw = settings_table.read(name, "").strip()
    if not raw:
        return default
    if raw.endswith("%"):
        raise ValueError(f"{name} must be a size such as 64KiB or 32MiB, not a share of the memory ({raw!r})")
    return parse_memory(raw, 0, name)


def _count(name: str, default: int) -> int:
    raw = settings_table.read(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class UpstreamSettings:
    """How Azurine sends work to the OpenAI-compatible servers that deployments point at."""

    concurrency: int = 16  # requests in flight to one server at most; the rest wait by class
    # servers that order requests by a `priority` field (vLLM run with `--scheduling-policy priority`); any other
    # vLLM refuses a request whose priority is not 0, so the field goes only where it was asked for
    priority_everywhere: bool = False
    priority_servers: frozenset[str] = frozenset()

    def sends_priority(self, url: str) -> bool:
        return self.priority_everywhere or server_key(url) in self.priority_servers

    @classmethod
    def load(cls) -> UpstreamSettings:
        raw = settings_table.read("AZURINE_UPSTREAM_CONCURRENCY", "16").strip()
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:  # "²" is a digit to isdigit, not to int
            raise ValueError(f"AZURINE_UPSTREAM_CONCURRENCY must be a whole number of at least 1, not {raw!r}")
        priority = settings_table.read("AZURINE_UPSTREAM_PRIORITY", "").strip()
        everywhere = priority.lower() in ("1", "true", "yes", "all", "*")
        servers = frozenset() if everywhere or priority.lower() in ("", "0", "false", "no") else frozenset(
            server_key(url) for url in priority.split(",") if url.strip())
        return cls(concurrency=int(raw), priority_everywhere=everywhere, priority_servers=servers)


def server_key(url: str) -> str:
    """One upstream server however its URL was written: `http://h:8000/v1/` and `http://h:8000/v1` alike."""
    return url.strip().rstrip("/")


# the binary units, as `docker --memory` and llama.cpp read `6G`; the decimal ones as disk makers write them
_MEMORY_UNITS = {"": 1, "b": 1, "k": 2**10, "ki": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mi": 2**20,
                 "mib": 2**20, "mb": 10**6, "g": 2**30, "gi": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40,
                 "ti": 2**40, "tib": 2**40, "tb": 10**12}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*|%)\s*", re.IGNORECASE)
DEFAULT_MODEL_MEMORY = "50%"  # half the machine: the rest is for the server, its detectors and the system


def model_memory_budget() -> int:
    """Bytes the loaded in-process models may hold together (`AZURINE_MODEL_MEMORY`): `6GiB`, `800MiB`, `8GB`,
    plain bytes, or a share of the machine's memory (`50%`, the default)."""
    raw = settings_table.read("AZURINE_MODEL_MEMORY", "").strip() or DEFAULT_MODEL_MEMORY
    return parse_memory(raw, total_memory(), "AZURINE_MODEL_MEMORY")


def parse_memory(text: str, total: int, name: str) -> int:
    match = _MEMORY.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit != "%" and unit not in _MEMORY_UNITS):
        raise ValueError(f"{name} must be a size such as 6GiB, 800MiB or 8GB, or a share of the memory such as "
                         f"50%, not {text!r}")
    amount = float(match.group(1))
    if unit == "%":
        if not 0 < amount <= 100:
            raise ValueError(f"{name} must be a share between 0% and 100% of the memory, not {text!r}")
        return int(total * amount / 100)
    size = int(amount * _MEMORY_UNITS[unit])
    if size < 1:
        raise ValueError(f"{name} must be more than nothing, not {text!r}")
    return size


def total_memory() -> int:
    """The memory this process may use: the machine's, or its container's limit where that is lower (a container
    sees the whole machine in `/proc/meminfo`, and is killed at its own limit)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # v2, v1
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isascii() and limit.isdigit():
            total = min(total, int(limit))
    return total
