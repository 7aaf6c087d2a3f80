"""The deployable models, read from `models.toml`."""

from azurine.catalog.catalog import Catalog, ModelSpec, SourceMember, load_catalog

__all__ = ["Catalog", "ModelSpec", "SourceMember", "load_catalog"]
