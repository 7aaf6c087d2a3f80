"""The price table: US dollars per million tokens by model and deployment type, per PTU-hour for provisioned, per
hour of audio for the models Azure bills so (Whisper), and for a tunable model what fine-tuning it costs: training
per hour (or per million trained tokens) and hosting a fine-tuned deployment per hour.

The table is data (`catalog/prices.toml`, beside the model catalog it prices), so operators change prices by editing
a copy and pointing `AZURINE_PRICES` at it, not by changing code. A file is checked whole when it is read: a wrong
type, a negative price, an unknown deployment type or a missing one is refused with `PriceFileError`, which names the
file and the entry, rather than costing usage with a price that was never meant.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from azurine import settings_table
from azurine.quota.capacity import PROVISIONED, STANDARD

# the Standard types each model must price; DeveloperTier, where a model does not price it, costs what GlobalStandard
# does (Azure bills the developer tier's tokens at Global Standard prices)
REQUIRED_TOKEN_TYPES = ("Standard", "GlobalStandard", "DataZoneStandard")
DEVELOPER_TIER_FALLBACK = "GlobalStandard"


class PriceFileError(ValueError):
    """A price file that cannot be used, with the reason."""


@dataclass(frozen=True)
class TokenPrice:
    input: float  # USD per 1M input (prompt) tokens
    output: float  # USD per 1M output (completion) tokens


@dataclass(frozen=True)
class PtuPurchase:
    hourly: float  # USD per PTU-hour
    minimum: int  # the smallest deployment, in PTUs
    increment: int  # the step above it

    def round_up(self, needed: float) -> int:
        """The smallest purchasable size that holds `needed` PTUs: the minimum, or the minimum plus whole steps."""
        if needed <= self.minimum:
            return self.minimum
        # a whole number computed in floating point (1.2e6 / 4e4) may land a hair above itself
        steps = math.ceil(round((needed - self.minimum) / self.increment, 9))
        return self.minimum + steps * self.increment


@dataclass(frozen=True)
class FineTuningPrices:
    """What fine-tuning a model costs, and hosting what it made. Each is optional (None: not charged): Azure bills
    some models' training by the hour and others' by the token."""

    training_hour: float | None = None  # USD per hour of training
    training_tokens: float | None = None  # USD per 1M trained tokens
    hosting_hour: float | None = None  # USD per hour a fine-tuned deployment exists (not on DeveloperTier)


@dataclass(frozen=True)
class ModelPrices:
    name: str
    like: str  # the Azure model the prices come from
    tokens: Mapping[str, TokenPrice]  # by Standard SKU name
    provisioned: Mapping[str, PtuPurchase]  # by provisioned SKU name, the model's own sizes merged in
    audio_hour: float | None = None  # USD per hour of audio heard, on every Standard type; None: audio costs nothing
    fine_tuning: FineTuningPrices | None = None  # None: its fine-tuning and fine-tuned deployments are not priced

    def token_price(self, sku: str) -> TokenPrice | None:
        if sku in self.tokens:
            return self.tokens[sku]
        if sku == "DeveloperTier":
            return self.tokens.get(DEVELOPER_TIER_FALLBACK)
        return None


@dataclass(frozen=True)
class PriceTable:
    source: str  # the file it was read from, for messages
    models: Mapping[str, ModelPrices]  # by lower-case model name

    def model(self, name: str) -> ModelPrices | None:
        return self.models.get(name.lower())


def packaged_text() -> str:
    return resources.files("azurine.catalog").joinpath("prices.toml").read_text(encoding="utf-8")


def load_prices(path: Path | None = None) -> PriceTable:
    """The table in `path`, else in the file `AZURINE_PRICES` names, else the one packaged with Azurine."""
    if path is None:
        configured = settings_table.read("AZURINE_PRICES")
        path = Path(configured) if configured else None
    if path is None:
        return read_prices(packaged_text(), "the packaged prices.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PriceFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    return read_prices(text, str(path))


def read_prices(text: str, source: str = "prices") -> PriceTable:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PriceFileError(f"{source}: not TOML ({error})") from None
    _only(data, {"provisioned", "model"}, source, "the file")
    defaults = _provisioned_defaults(data.get("provisioned"), source)
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise PriceFileError(f"{source}: needs at least one [[model]] table")
    models: dict[str, ModelPrices] = {}
    for index, entry in enumerate(entries, start=1):
        prices = _model(entry, defaults, f"{source}: [[model]] #{index}")
        if prices.name.lower() in models:
            raise PriceFileError(f"{source}: {prices.name} is priced twice")
        models[prices.name.lower()] = prices
    return PriceTable(source=source, models=models)


def _provisioned_defaults(value: Any, source: str) -> dict[str, PtuPurchase]:
    where = f"{source}: [provisioned]"
    if not isinstance(value, dict):
        raise PriceFileError(f"{where} is missing: it prices the PTU-hour of {', '.join(sorted(PROVISIONED))}")
    _only(value, PROVISIONED, source, "[provisioned]")
    missing = sorted(PROVISIONED - value.keys())
    if missing:
        raise PriceFileError(f"{where} lacks {', '.join(missing)}")
    defaults = {}
    for sku, entry in value.items():
        here = f"{source}: [provisioned.{sku}]"
        table = _table(entry, here)
        _only(table, {"hourly", "minimum", "increment"}, source, f"[provisioned.{sku}]")
        defaults[sku] = PtuPurchase(hourly=_price(table, "hourly", here), minimum=_count(table, "minimum", here),
                                    increment=_count(table, "increment", here))
    return defaults


def _model(entry: Any, defaults: Mapping[str, PtuPurchase], where: str) -> ModelPrices:
    table = _table(entry, where)
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PriceFileError(f"{where}: `name` must be the model's name as in models.toml")
    where = f"{where} ({name})"
    like = table.get("like", "")
    if not isinstance(like, str):
        raise PriceFileError(f"{where}: `like` must be text, the Azure model the prices come from")
    unknown = set(table) - {"name", "like", "tokens", "provisioned", "audio_hour", "fine_tuning"}
    if unknown:
        raise PriceFileError(f"{where}: unknown key {', '.join(sorted(unknown))}")

    tokens_table = _table(table.get("tokens"), f"{where}: tokens")
    unknown = set(tokens_table) - STANDARD
    if unknown:
        raise PriceFileError(f"{where}: tokens.{sorted(unknown)[0]} is not a Standard deployment type "
                             f"({', '.join(sorted(STANDARD))})")
    missing = [sku for sku in REQUIRED_TOKEN_TYPES if sku not in tokens_table]
    if missing:
        raise PriceFileError(f"{where}: lacks tokens.{missing[0]}")
    tokens = {}
    for sku, value in tokens_table.items():
        here = f"{where}: tokens.{sku}"
        price = _table(value, here)
        _only(price, {"input", "output"}, where, f"tokens.{sku}")
        tokens[sku] = TokenPrice(input=_price(price, "input", here), output=_price(price, "output", here))

    own = table.get("provisioned", {})
    own_table = _table(own, f"{where}: provisioned")
    unknown = set(own_table) - PROVISIONED
    if unknown:
        raise PriceFileError(f"{where}: provisioned.{sorted(unknown)[0]} is not a provisioned deployment type "
                             f"({', '.join(sorted(PROVISIONED))})")
    provisioned = dict(defaults)
    for sku, value in own_table.items():
        here = f"{where}: provisioned.{sku}"
        sizes = _table(value, here)
        # the hourly price is the type's, whatever the model: only the purchase sizes differ by model
        _only(sizes, {"minimum", "increment"}, where, f"provisioned.{sku}")
        base = defaults[sku]
        provisioned[sku] = PtuPurchase(
            hourly=base.hourly,
            minimum=_count(sizes, "minimum", here) if "minimum" in sizes else base.minimum,
            increment=_count(sizes, "increment", here) if "increment" in sizes else base.increment)
    audio_hour = _price(table, "audio_hour", where) if "audio_hour" in table else None
    fine_tuning = _fine_tuning(table["fine_tuning"], where) if "fine_tuning" in table else None
    return ModelPrices(name=name, like=like, tokens=tokens, provisioned=provisioned, audio_hour=audio_hour,
                       fine_tuning=fine_tuning)


def _fine_tuning(value: Any, where: str) -> FineTuningPrices:
    here = f"{where}: fine_tuning"
    table = _table(value, here)
    keys = {"training_hour", "training_tokens", "hosting_hour"}
    _only(table, keys, where, "fine_tuning")
    if not table:
        raise PriceFileError(f"{here} prices nothing: give training_hour, training_tokens or hosting_hour")
    found = {key: _price(table, key, here) for key in keys if key in table}
    return FineTuningPrices(**found)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PriceFileError(f"{where} must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str] | frozenset[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise PriceFileError(f"{source}: {where} has unknown key {', '.join(unknown)} "
                             f"(expected {', '.join(sorted(allowed))})")


def _price(table: Mapping[str, Any], key: str, where: str) -> float:
    value = table.get(key)
    # TOML booleans are not numbers here, though Python's bool is an int
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PriceFileError(f"{where}: `{key}` must be a price in US dollars, a number of at least 0, not {value!r}")
    return float(value)


def _count(table: Mapping[str, Any], key: str, where: str) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PriceFileError(f"{where}: `{key}` must be a whole number of PTUs, at least 1, not {value!r}")
    return value
