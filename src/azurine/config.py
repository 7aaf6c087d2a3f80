"""Settings shared by the server and the CLI, from flags and `AZURINE_*` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_models_dir() -> Path:
    explicit = os.environ.get("AZURINE_MODELS_DIR")
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

    @classmethod
    def load(cls, data_dir: Path | str | None = None) -> Settings:
        data = Path(data_dir or os.environ.get("AZURINE_DATA_DIR") or "./azurine-data").resolve()
        url = os.environ.get("AZURINE_DATABASE_URL") or f"sqlite:///{data / 'azurine.db'}"
        return cls(
            data_dir=data,
            models_dir=default_models_dir(),
            database_url=url,
            region=os.environ.get("AZURINE_REGION", "local"),
            region_display_name=os.environ.get("AZURINE_REGION_DISPLAY_NAME", "Local"),
            redis_url=os.environ.get("AZURINE_REDIS_URL") or None,
        )


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
        raw = os.environ.get("AZURINE_UPSTREAM_CONCURRENCY", "16").strip()
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"AZURINE_UPSTREAM_CONCURRENCY must be a whole number of at least 1, not {raw!r}")
        priority = os.environ.get("AZURINE_UPSTREAM_PRIORITY", "").strip()
        everywhere = priority.lower() in ("1", "true", "yes", "all", "*")
        servers = frozenset() if everywhere or priority.lower() in ("", "0", "false", "no") else frozenset(
            server_key(url) for url in priority.split(",") if url.strip())
        return cls(concurrency=int(raw), priority_everywhere=everywhere, priority_servers=servers)


def server_key(url: str) -> str:
    """One upstream server however its URL was written: `http://h:8000/v1/` and `http://h:8000/v1` alike."""
    return url.strip().rstrip("/")
