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
