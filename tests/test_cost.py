"""Costs at the price table's prices and the PTU advisor: the arithmetic against hand-computed figures, the price
file's checks, and `azurine cost show` and `azurine cost advise` on a SQLite database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from azurine.catalog import load_catalog
from azurine.cli import cost as cost_cli
from azurine.cli.main import app
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import StateStore, UsageRow
from azurine.storage.tables import Deployment
from azurine.usage.cost import (
    Deployed,
    NoAdvice,
    Period,
    advise,
    audio_cost,
    cost_by_day,
    cost_by_deployment,
    token_cost,
    usd,
)
from azurine.usage.prices import PriceFileError, PtuPurchase, TokenPrice, load_prices, read_prices

PROVISIONED_TABLES = """
[provisioned.GlobalProvisionedManaged]
hourly = 1.00
minimum = 15
increment = 5

[provisioned.DataZoneProvisionedManaged]
hourly = 1.10
minimum = 15
increment = 5

[provisioned.ProvisionedManaged]
hourly = 2.00
minimum = 50
increment = 50
"""

PRICES = PROVISIONED_TABLES + """
[[model]]
name = "mini"
like = "gpt-4o-mini"
tokens.GlobalStandard = { input = 0.15, output = 0.60 }
tokens.DataZoneStandard = { input = 0.165, output = 0.66 }
tokens.Standard = { input = 0.165, output = 0.66 }
provisioned.ProvisionedManaged = { minimum = 25, increment = 25 }

[[model]]
name = "big"
like = "a model at $10 / $40"
tokens.GlobalStandard = { input = 10.0, output = 40.0 }
tokens.DataZoneStandard = { input = 11.0, output = 44.0 }
tokens.Standard = { input = 11.0, output = 44.0 }
"""


def table():
    return read_prices(PRICES, "test prices")


def usage(deployment: str, minute: int, prompt: int, completion: int, requests: int = 1,
          account_id: str = "a") -> UsageRow:
    return UsageRow(account_id=account_id, deployment=deployment, minute=minute, requests=requests,
                    prompt_tokens=prompt, completion_tokens=completion, estimated_tokens=prompt + completion,
                    billed_tokens=prompt + completion)


def deployed(name: str, sku: str, model: str = "mini", capacity: int = 0, since_minute: int = 0, tpm: int = 100_000,
             weight: float = 4) -> Deployed:
    return Deployed(account_id="a", name=name, model=model, sku=sku, capacity=capacity, since_minute=since_minute,
                    ptu_input_tpm=tpm, ptu_output_weight=weight)


# pay-as-you-go, batch, provisioned -------------------------------------------------------------------------------

def test_tokens_cost_their_types_price_per_million_and_batch_half_of_it() -> None:
    mini = table().model("MINI")
    assert mini is not None
    # 1M prompt × $0.15 + 0.5M completion × $0.60 = 0.15 + 0.30
    assert token_cost(mini, "GlobalStandard", 1_000_000, 500_000) == pytest.approx(0.45)
    assert token_cost(mini, "DeveloperTier", 1_000_000, 500_000) == pytest.approx(0.45)  # Global Standard's price
    # Data Zone: 0.165 + 0.33; regional Standard the same
    assert token_cost(mini, "DataZoneStandard", 1_000_000, 500_000) == pytest.approx(0.495)
    assert token_cost(mini, "Standard", 1_000_000, 500_000) == pytest.approx(0.495)
    # batch: half of its Standard counterpart
    assert token_cost(mini, "GlobalBatch", 1_000_000, 500_000) == pytest.approx(0.225)
    assert token_cost(mini, "DataZoneBatch", 1_000_000, 500_000) == pytest.approx(0.2475)
    # provisioned: paid by the PTU-hour, the tokens add nothing
    assert token_cost(mini, "GlobalProvisionedManaged", 1_000_000, 500_000) == 0


def test_cost_by_deployment_prices_tokens_batch_and_ptu_hours() -> None:
    period = Period(0, 120)  # two hours
    deployments = {
        ("a", "chat"): deployed("chat", "GlobalStandard"),
        ("a", "night"): deployed("night", "GlobalBatch"),
        # 20 PTUs from minute 60: one hour of the period
        ("a", "reserved"): deployed("reserved", "GlobalProvisionedManaged", capacity=20, since_minute=60),
        ("a", "idle"): deployed("idle", "DataZoneProvisionedManaged", capacity=15, since_minute=90),
    }
    rows = [usage("chat", 10, 600_000, 200_000, requests=2), usage("chat", 11, 400_000, 300_000, requests=3),
            usage("night", 20, 1_000_000, 500_000), usage("reserved", 70, 50_000, 5_000),
            usage("gone", 30, 1_000, 1_000), usage("chat", 120, 9_000_000, 9_000_000)]  # the last: after the end

    report = cost_by_deployment(rows, deployments, table(), period)

    by_name = {line.key: line for line in report.lines}
    chat = by_name["chat"]
    assert (chat.requests, chat.prompt_tokens, chat.completion_tokens) == (5, 1_000_000, 500_000)
    assert chat.cost == pytest.approx(0.45)
    assert by_name["night"].cost == pytest.approx(0.225)
    reserved = by_name["reserved"]
    assert (reserved.ptu_hours, reserved.token_cost, reserved.cost) == (20, 0, 20.0)  # 20 PTUs × 1 h × $1
    idle = by_name["idle"]  # no traffic, still paid: 15 PTUs × 0.5 h × $1.10
    assert (idle.requests, idle.ptu_hours) == (0, 7.5)
    assert idle.cost == pytest.approx(8.25)
    assert by_name["gone"].priced is False
    assert report.unpriced == ("a/gone: gone is no longer deployed, so its type and model are unknown",)
    assert report.total == pytest.approx(0.45 + 0.225 + 20 + 8.25)


WHISPER = """
[[model]]
name = "whisper"
like = "whisper"
tokens.GlobalStandard = { input = 0.0, output = 0.0 }
tokens.DataZoneStandard = { input = 0.0, output = 0.0 }
tokens.Standard = { input = 0.0, output = 0.0 }
audio_hour = 0.36
"""


def test_audio_costs_its_hours_where_the_model_is_priced_by_them() -> None:
    prices = read_prices(PRICES + WHISPER)
    whisper, mini = prices.model("whisper"), prices.model("mini")
    assert whisper is not None and mini is not None
    assert (whisper.audio_hour, mini.audio_hour) == (0.36, None)
    assert audio_cost(whisper, "Standard", 1800) == pytest.approx(0.18)  # half an hour × $0.36
    assert audio_cost(whisper, "GlobalStandard", 1) == pytest.approx(0.0001)
    assert audio_cost(whisper, "GlobalBatch", 1800) == pytest.approx(0.09)
    assert audio_cost(whisper, "GlobalProvisionedManaged", 1800) == 0
    assert audio_cost(mini, "Standard", 1800) == 0

    deployments = {("a", "stt"): deployed("stt", "Standard", model="whisper"),
                   ("a", "tts"): deployed("tts", "GlobalStandard")}
    rows = [replace(usage("stt", 10, 0, 300, requests=2), audio_seconds=5_000.5),
            replace(usage("stt", 11, 0, 100), audio_seconds=399.5),
            replace(usage("tts", 11, 1_000_000, 0), audio_seconds=60.0)]  # spoken: a model without an audio price
    by_deployment = {line.key: line for line in cost_by_deployment(rows, deployments, prices, Period(0, 60)).lines}
    stt = by_deployment["stt"]
    assert (stt.requests, stt.completion_tokens, stt.audio_seconds) == (3, 400, 5_400.0)
    assert (stt.token_cost, stt.audio_cost) == (0, pytest.approx(0.54))  # 1.5 hours × $0.36
    assert by_deployment["tts"].audio_seconds == 60 and by_deployment["tts"].cost == pytest.approx(0.15)
    (day,) = cost_by_day(rows, deployments, prices, Period(0, 60)).lines
    assert (day.audio_seconds, day.cost) == (5_460.0, pytest.approx(0.54 + 0.15))


def test_cost_by_day_splits_tokens_and_ptu_hours_at_midnight_utc() -> None:
    midnight = 20_000 * 1440  # a UTC midnight, in minutes
    period = Period(midnight - 60, midnight + 120)
    deployments = {("a", "chat"): deployed("chat", "Standard"),
                   ("a", "reserved"): deployed("reserved", "ProvisionedManaged", capacity=50, since_minute=0)}
    rows = [usage("chat", midnight - 30, 1_000_000, 0), usage("chat", midnight + 30, 0, 1_000_000)]

    report = cost_by_day(rows, deployments, table(), period)

    before, after = report.lines
    assert (before.key, after.key) == ("2024-10-03", "2024-10-04")
    # the day before: 1M prompt × $0.165 + 50 PTUs × 1 h × $2
    assert (before.prompt_tokens, before.ptu_hours) == (1_000_000, 50)
    assert before.cost == pytest.approx(0.165 + 100)
    # the day after: 1M completion × $0.66 + 50 PTUs × 2 h × $2
    assert (after.completion_tokens, after.ptu_hours) == (1_000_000, 100)
    assert after.cost == pytest.approx(0.66 + 200)
    assert report.unpriced == ()


# the advisor ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("needed", "purchase", "bought"), [
    (0, PtuPurchase(1.0, 15, 5), 15),  # nothing needed still buys the minimum
    (15, PtuPurchase(1.0, 15, 5), 15),
    (15.01, PtuPurchase(1.0, 15, 5), 20),
    (37, PtuPurchase(1.0, 15, 5), 40),
    (40, PtuPurchase(1.0, 15, 5), 40),
    (51, PtuPurchase(2.0, 50, 50), 100),
    (26, PtuPurchase(2.0, 25, 25), 50),
    (30, PtuPurchase(1.0, 15, 10), 35),  # steps count from the minimum: 15, 25, 35
])
def test_ptus_are_rounded_up_to_the_minimum_and_the_increment(needed: float, purchase: PtuPurchase,
                                                             bought: int) -> None:
    assert purchase.round_up(needed) == bought


def test_a_model_can_have_its_own_purchase_sizes_at_its_types_hourly_price() -> None:
    mini, big = table().model("mini"), table().model("big")
    assert mini is not None and big is not None
    assert mini.provisioned["ProvisionedManaged"] == PtuPurchase(2.0, 25, 25)
    assert big.provisioned["ProvisionedManaged"] == PtuPurchase(2.0, 50, 50)
    assert mini.provisioned["GlobalProvisionedManaged"] == PtuPurchase(1.0, 15, 5)


def steady_traffic() -> list[UsageRow]:
    """Two hours of 600k prompt + 100k completion a minute (1M weighted at 4×), minute 45 at 1.1M prompt (1.5M)."""
    return [usage("chat", minute, 1_100_000 if minute == 45 else 600_000, 100_000) for minute in range(120)]


def test_the_advisor_recommends_ptus_when_pay_as_you_go_costs_more() -> None:
    big = table().model("big")
    advice = advise(deployed("chat", "GlobalStandard", model="big"), steady_traffic(), big, Period(0, 120))

    # prompt 119 × 600k + 1.1M = 72.5M, completion 120 × 100k = 12M, weighted 72.5M + 4 × 12M = 120.5M
    assert (advice.prompt_tokens, advice.completion_tokens, advice.weighted_tokens) == (72_500_000, 12_000_000,
                                                                                       120_500_000)
    assert advice.payg_cost == pytest.approx(72.5 * 10 + 12 * 40)  # $1,205
    # the busiest minute, 1.5M weighted, needs 1.5M ÷ 100k = 15 PTUs: the Global minimum
    assert (advice.peak_minute, advice.peak_minute_tokens, advice.ptus_needed, advice.ptus) == (45, 1_500_000, 15, 15)
    assert advice.provisioned_sku == "GlobalProvisionedManaged"
    assert advice.ptu_cost == pytest.approx(15 * 1.0 * 2)  # $30 over the two hours
    assert advice.ptu_monthly == pytest.approx(15 * 730)  # $10,950
    # $1,205 ÷ 120.5M = $10 per 1M weighted; $10,950 ÷ $10 = 1,095M weighted tokens a month
    assert advice.payg_per_million == pytest.approx(10.0)
    assert advice.break_even_per_month == pytest.approx(1_095_000_000)
    assert advice.recorded_per_month == pytest.approx(120_500_000 * 730 / 2)
    # the busiest hour, minutes 0-59: 59 × 1M + 1.5M = 60.5M, ÷ 60 a minute, ÷ 15 × 100k the PTUs process
    assert advice.peak_hour == 0
    assert advice.utilization == pytest.approx(60_500_000 / 60 / 1_500_000)
    assert advice.recommendation == "PTU"
    assert advice.reason == ("buy 15 GlobalProvisionedManaged PTUs: pay-as-you-go cost $1,205.00 over the 2 hours, "
                             "more than their $30.00")
    assert advice.arithmetic == (
        "recorded over 2 hours: 72,500,000 prompt + 4 × 12,000,000 completion tokens = 120,500,000 weighted tokens",
        "pay-as-you-go at GlobalStandard prices: 72,500,000 × $10.00 + 12,000,000 × $40.00 per 1M = $1,205.00",
        "busiest minute (1970-01-01 00:45 UTC): 1,500,000 weighted tokens ÷ 100,000 per PTU = 15.00 PTUs → 15 "
        "(GlobalProvisionedManaged is bought from 15 PTUs in steps of 5)",
        "PTUs over the same time: 15 × $1.00 per PTU-hour × 2 hours = $30.00",
        "PTUs for a month: 15 × $1.00 × 730 hours = $10,950.00",
        "pay-as-you-go per 1M weighted tokens of this mix: $1,205.00 ÷ 120.5M = $10.00",
        "break-even: $10,950.00 ÷ $10.00 per 1M = 1,095.00M weighted tokens a month; recorded pace: "
        "120,500,000 × 730 ÷ 2 hours = 43,982.50M a month",
        "15 PTUs process at most 1,500,000 a minute × 60 × 730 = 65,700.00M weighted tokens a month, so breaking even "
        "needs 1.7% of that, all month",
        "busiest hour (1970-01-01 00:00 UTC): 60,500,000 weighted tokens ÷ 60 = 1,008,333 a minute ÷ 1,500,000 the "
        "PTUs process = 67.2% utilization",
    )


def test_the_advisor_keeps_pay_as_you_go_when_ptus_cost_more() -> None:
    big = table().model("big")
    # one request an hour: 1,000 prompt + 250 completion = 2,000 weighted
    advice = advise(deployed("chat", "GlobalStandard", model="big"), [usage("chat", 5, 1_000, 250)], big,
                    Period(0, 60))

    assert advice.payg_cost == pytest.approx((1_000 * 10 + 250 * 40) / 1e6)  # $0.02
    assert (advice.ptus_needed, advice.ptus) == (0.02, 15)  # the minimum, however little is needed
    assert advice.ptu_cost == pytest.approx(15.0)  # 15 × $1 × 1 h
    assert advice.break_even_per_month == pytest.approx(15 * 730 / 10 * 1e6)  # same $10 per 1M weighted
    assert advice.recorded_per_month == pytest.approx(2_000 * 730)
    assert advice.utilization == pytest.approx(2_000 / 60 / 1_500_000)
    assert advice.recommendation == "pay-as-you-go"
    assert advice.reason == ("stay pay-as-you-go: $0.02 over the 1 hour, against $15.00 for 15 "
                             "GlobalProvisionedManaged PTUs; they pay off from 1,095.00M weighted tokens a month, and "
                             "the recorded pace is 1.46M")


def test_the_advisor_weighs_regional_and_provisioned_deployments_against_their_counterparts() -> None:
    mini = table().model("mini")
    # regional Standard against regional PTUs, which mini buys 25 at a time: 2.6M ÷ 100k = 26 → 50
    regional = advise(deployed("chat", "Standard"), [usage("chat", 0, 2_600_000, 0)], mini, Period(0, 60))
    assert (regional.provisioned_sku, regional.ptus_needed, regional.ptus) == ("ProvisionedManaged", 26, 50)
    assert regional.ptu_cost == pytest.approx(50 * 2.0)
    assert regional.payg_cost == pytest.approx(2.6 * 0.165)
    # a provisioned deployment is weighed at its Standard counterpart's token prices
    provisioned = advise(deployed("reserved", "DataZoneProvisionedManaged", capacity=100), [
        usage("reserved", 0, 1_000_000, 0)], mini, Period(0, 60))
    assert (provisioned.standard_sku, provisioned.provisioned_sku) == ("DataZoneStandard",
                                                                        "DataZoneProvisionedManaged")
    assert provisioned.payg_cost == pytest.approx(0.165)
    assert provisioned.ptu_cost == pytest.approx(15 * 1.10)


def test_the_advisor_counts_only_the_deployments_traffic_in_the_part_of_the_period_it_existed() -> None:
    mini = table().model("mini")
    rows = [usage("chat", 10, 1_000_000, 0), usage("chat", 40, 2_000_000, 0), usage("other", 40, 9_000_000, 0),
            usage("chat", 40, 9_000_000, 0, account_id="b")]
    advice = advise(deployed("chat", "GlobalStandard", since_minute=30), rows, mini, Period(0, 60))
    assert (advice.hours, advice.prompt_tokens, advice.peak_minute) == (0.5, 2_000_000, 40)


def test_the_advisor_declines_batch_unpriced_and_unmeasured_deployments() -> None:
    mini = table().model("mini")
    with pytest.raises(NoAdvice, match="batch"):
        advise(deployed("night", "GlobalBatch"), [], mini, Period(0, 60))
    with pytest.raises(NoAdvice, match="not in the price table"):
        advise(deployed("chat", "GlobalStandard", model="other"), [], None, Period(0, 60))
    with pytest.raises(NoAdvice, match="ptu_input_tpm"):
        advise(deployed("chat", "GlobalStandard", tpm=0), [], mini, Period(0, 60))


def test_no_traffic_buys_nothing_and_says_so() -> None:
    advice = advise(deployed("chat", "GlobalStandard"), [], table().model("mini"), Period(0, 60))
    assert (advice.payg_cost, advice.ptus, advice.break_even_per_month, advice.recommendation) == (
        0, 15, None, "pay-as-you-go")
    assert "no traffic recorded: the smallest GlobalProvisionedManaged purchase is 15 PTUs" in advice.arithmetic


def test_dollars_are_shown_to_the_cent_and_under_a_dollar_to_three_digits() -> None:
    assert [usd(0), usd(1205), usd(2.5), usd(0.45), usd(0.225), usd(0.02), usd(0.02634), usd(0.0057), usd(0.000165),
            usd(1e-9)] == ["$0.00", "$1,205.00", "$2.50", "$0.45", "$0.225", "$0.02", "$0.0263", "$0.0057",
                           "$0.000165", "<$0.000001"]


# the price file ---------------------------------------------------------------------------------------------------

def test_the_packaged_table_prices_every_catalog_model_at_azures_figures() -> None:
    prices = load_prices()
    for model in load_catalog():
        assert prices.model(model.name) is not None, model.name
    qwen = prices.model("Qwen2.5-Coder-0.5B-Instruct")
    embeddings = prices.model("all-MiniLM-L6-v2")
    assert qwen is not None and embeddings is not None
    assert qwen.like == "gpt-4o-mini"
    assert (qwen.tokens["GlobalStandard"].input, qwen.tokens["GlobalStandard"].output) == (0.15, 0.60)
    assert (qwen.tokens["DataZoneStandard"].input, qwen.tokens["Standard"].output) == (0.165, 0.66)
    assert embeddings.like == "text-embedding-3-small" and embeddings.tokens["GlobalStandard"].input == 0.02
    assert qwen.provisioned == {"GlobalProvisionedManaged": PtuPurchase(1.00, 15, 5),
                                "DataZoneProvisionedManaged": PtuPurchase(1.10, 15, 5),
                                "ProvisionedManaged": PtuPurchase(2.00, 25, 25)}
    assert embeddings.provisioned["ProvisionedManaged"] == PtuPurchase(2.00, 50, 50)
    whisper, speech = prices.model("Whisper-base"), prices.model("Piper-en_US-joe-medium")
    assert whisper is not None and speech is not None
    # Whisper by the hour of audio ($0.36), its tokens free; speech by its characters, four to a token ($15 per 1M)
    assert (whisper.audio_hour, whisper.tokens["Standard"]) == (0.36, TokenPrice(0.0, 0.0))
    assert (speech.audio_hour, speech.tokens["GlobalStandard"]) == (None, TokenPrice(60.0, 0.0))


def test_azurine_prices_names_the_file_to_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "prices.toml"
    own.write_text(PRICES)
    monkeypatch.setenv("AZURINE_PRICES", str(own))
    assert load_prices().source == str(own) and load_prices().model("big") is not None
    monkeypatch.setenv("AZURINE_PRICES", str(tmp_path / "missing.toml"))
    with pytest.raises(PriceFileError, match="missing.toml: cannot be read"):
        load_prices()


MODEL = """
[[model]]
name = "mini"
tokens.GlobalStandard = { input = 0.15, output = 0.60 }
tokens.DataZoneStandard = { input = 0.165, output = 0.66 }
tokens.Standard = { input = 0.165, output = 0.66 }
"""


@pytest.mark.parametrize(("text", "message"), [
    ("[[model]\nname = 'x'", "not TOML"),
    (MODEL, r"\[provisioned\] is missing"),
    (PROVISIONED_TABLES.replace("[provisioned.DataZoneProvisionedManaged]", "[provisioned.Nope]") + MODEL,
     "unknown key Nope"),
    (PROVISIONED_TABLES.split("[provisioned.ProvisionedManaged]")[0] + MODEL, "lacks ProvisionedManaged"),
    (PROVISIONED_TABLES.replace("hourly = 2.00", "houly = 2.00") + MODEL, "unknown key houly"),
    (PROVISIONED_TABLES.replace("hourly = 2.00", "hourly = -2.00") + MODEL, "`hourly` must be a price"),
    (PROVISIONED_TABLES.replace("minimum = 50", "minimum = 0") + MODEL, "`minimum` must be a whole number"),
    (PROVISIONED_TABLES.replace("increment = 50", "increment = 2.5") + MODEL, "`increment` must be a whole number"),
    (PROVISIONED_TABLES, r"needs at least one \[\[model\]\]"),
    (PROVISIONED_TABLES + MODEL.replace("input = 0.15", 'input = "0.15"'), r"`input` must be a price.*'0.15'"),
    (PROVISIONED_TABLES + MODEL.replace("input = 0.15", "input = true"), "`input` must be a price"),
    (PROVISIONED_TABLES + MODEL.replace("input = 0.15", "input = nan"), "`input` must be a price"),
    (PROVISIONED_TABLES + MODEL.replace("tokens.Standard", "tokens.Premium"), "tokens.Premium is not a Standard"),
    (PROVISIONED_TABLES + MODEL.replace("tokens.Standard = { input = 0.165, output = 0.66 }", ""),
     "lacks tokens.Standard"),
    (PROVISIONED_TABLES + MODEL.replace("output = 0.60", "ouput = 0.60"), "unknown key ouput"),
    (PROVISIONED_TABLES + MODEL.replace('name = "mini"', "name = 3"), "`name` must be the model's name"),
    (PROVISIONED_TABLES + MODEL + MODEL, "mini is priced twice"),
    (PROVISIONED_TABLES + MODEL + "provisioned.ProvisionedManaged = { hourly = 1.0 }",
     "provisioned.ProvisionedManaged has unknown key hourly"),
    (PROVISIONED_TABLES + MODEL + "provisioned.GlobalBatch = { minimum = 1 }",
     "provisioned.GlobalBatch is not a provisioned"),
    (PROVISIONED_TABLES + MODEL + "prices = 1", "unknown key prices"),
    (PROVISIONED_TABLES + MODEL + "audio_hour = -0.36", "`audio_hour` must be a price"),
    (PROVISIONED_TABLES + MODEL + 'audio_hour = "0.36"', "`audio_hour` must be a price"),
])
def test_a_bad_price_file_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(PriceFileError, match=message) as refused:
        read_prices(text, "my-prices.toml")
    assert str(refused.value).startswith("my-prices.toml: ")


# the commands -----------------------------------------------------------------------------------------------------

NOW = 29_000_000 * 60 + 30  # the commands' clock, half-way through minute 29,000,000
END = 29_000_001  # the end of their period: the current minute included


def sqlite_store(data_dir: Path) -> StateStore:
    engine = make_engine(f"sqlite:///{data_dir / 'azurine.db'}")
    migrate(engine)
    return StateStore(engine)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An account with four deployments of the catalog's models and two hours of their usage."""
    monkeypatch.delenv("AZURINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("AZURINE_PRICES", raising=False)
    monkeypatch.setattr(cost_cli, "console", Console(width=250))
    monkeypatch.setattr(cost_cli, "_now", lambda: NOW)
    store = sqlite_store(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    other = store.create_account("fabrikam", location="local", subscription_id="sub", resource_group="rg")
    chat = "Qwen2.5-Coder-0.5B-Instruct"
    for name, model, sku, capacity in [("chat", chat, "GlobalStandard", 10), ("night", chat, "GlobalBatch", 10),
                                       ("reserved", chat, "GlobalProvisionedManaged", 15),
                                       ("vectors", "all-MiniLM-L6-v2", "Standard", 10)]:
        store.create_deployment(account.id, name, model_name=model, model_version="1", model_format="OpenAI",
                                sku_name=sku, sku_capacity=capacity)
    store.create_deployment(other.id, "chat", model_name=chat, model_version="1", model_format="OpenAI",
                            sku_name="GlobalStandard", sku_capacity=10)
    with store.engine.begin() as connection:  # every deployment has existed for the last hour of the period
        connection.execute(update(Deployment).values(created_at=datetime.fromtimestamp((END - 60) * 60, UTC)))
    store.add_usage([usage("chat", END - 10, 1_000_000, 500_000, requests=4, account_id=account.id),
                     usage("night", END - 20, 2_000_000, 1_000_000, requests=2, account_id=account.id),
                     usage("vectors", END - 30, 5_000_000, 0, requests=50, account_id=account.id),
                     usage("reserved", END - 5, 10_000, 1_000, requests=1, account_id=account.id),
                     usage("chat", END - 121, 7_000_000, 7_000_000, account_id=account.id),  # before --since 2h
                     usage("chat", END - 10, 100, 100, account_id=other.id)])
    return tmp_path


def cells(output: str, marker: str) -> list[list[str]]:
    return [line.replace("│", " ").split() for line in output.splitlines() if marker in line]


def test_cost_show_prices_each_deployment(server: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "show", "--account", "contoso", "--since", "2h",
                                      "--data-dir", str(server)])

    assert result.exit_code == 0, result.output
    assert "From 2025-02-19 19:21 to 2025-02-19 21:21 UTC (2 hours), at the prices of the packaged prices.toml" in (
        result.output)
    assert cells(result.output, "contoso") == [
        # 1M × $0.15 + 0.5M × $0.60
        ["contoso", "chat", "Qwen2.5-Coder-0.5B-Instruct", "GlobalStandard", "4", "1,000,000", "500,000", "$0.45"],
        # (2M × $0.15 + 1M × $0.60) × 50%
        ["contoso", "night", "Qwen2.5-Coder-0.5B-Instruct", "GlobalBatch", "2", "2,000,000", "1,000,000", "$0.45"],
        # 15 PTUs × 1 hour × $1.00, its tokens nothing more
        ["contoso", "reserved", "Qwen2.5-Coder-0.5B-Instruct", "GlobalProvisionedManaged", "1", "10,000", "1,000",
         "15", "$15.00"],
        # 5M × $0.02, regional Standard
        ["contoso", "vectors", "all-MiniLM-L6-v2", "Standard", "50", "5,000,000", "0", "$0.10"],
    ]
    assert cells(result.output, "total") == [["total", "57", "8,010,000", "1,501,000", "15", "$16.00"]]
    assert "fabrikam" not in result.output


def test_cost_show_prices_whisper_by_the_hour_of_audio(server: Path) -> None:
    store = sqlite_store(server)
    account = store.account_named("contoso")
    assert account is not None
    store.create_deployment(account.id, "stt", model_name="Whisper-base", model_version="1", model_format="OpenAI",
                            sku_name="GlobalStandard", sku_capacity=10)
    store.add_usage([replace(usage("stt", END - 3, 0, 120, requests=3, account_id=account.id),
                             audio_seconds=5_400.0)])
    result = CliRunner().invoke(app, ["cost", "show", "--account", "contoso", "--since", "2h",
                                      "--data-dir", str(server)])

    assert result.exit_code == 0, result.output
    assert "audio (s)" in result.output
    # 5,400 seconds = 1.5 hours × $0.36; its 120 transcript tokens cost nothing
    assert ["contoso", "stt", "Whisper-base", "GlobalStandard", "3", "0", "120", "5,400.00", "$0.54"] in cells(
        result.output, "contoso")
    assert cells(result.output, "total") == [["total", "60", "8,010,000", "1,501,120", "5,400.00", "15", "$16.54"]]


def test_cost_show_by_day_and_for_every_account(server: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "show", "--by", "day", "--since", "2h", "--data-dir", str(server)])

    assert result.exit_code == 0, result.output
    # fabrikam's 100 + 100 tokens at Global Standard prices add $0.000075
    assert cells(result.output, "2025-02-19 ")[1:] == [["2025-02-19", "58", "8,010,100", "1,501,100", "15", "$16.00"]]


def test_cost_show_refuses_a_bad_price_file_and_an_unknown_account(server: Path) -> None:
    bad = server / "prices.toml"
    bad.write_text(PROVISIONED_TABLES)
    runner = CliRunner()

    refused = runner.invoke(app, ["cost", "show", "--prices", str(bad), "--data-dir", str(server)])
    assert refused.exit_code == 2
    assert "Cannot use the price file" in refused.output and "needs at least one [[model]] table" in refused.output

    missing = runner.invoke(app, ["cost", "show", "--account", "nobody", "--data-dir", str(server)])
    assert missing.exit_code == 1 and "No account named nobody" in missing.output

    since = runner.invoke(app, ["cost", "show", "--since", "yesterday", "--data-dir", str(server)])
    assert since.exit_code == 2 and "neither a duration" in since.output


def test_cost_advise_keeps_pay_as_you_go_at_azures_prices(server: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "advise", "--account", "contoso", "--deployment", "chat", "--since",
                                      "2h", "--data-dir", str(server)])

    assert result.exit_code == 0, result.output
    # 1M + 4 × 0.5M = 3M weighted in one minute ÷ 500 per PTU = 6,000 PTUs, for the hour chat has existed
    assert cells(result.output, "contoso")[0] == [
        "contoso", "chat", "GlobalStandard", "1", "hour", "$0.45", "6000", "GlobalProvisionedManaged", "$6,000.00",
        "1.7%", "pay-as-you-go"]
    assert ("busiest minute (2025-02-19 21:11 UTC): 3,000,000 weighted tokens ÷ 500 per PTU = 6,000.00 PTUs → 6000 "
            "(GlobalProvisionedManaged is bought from 15 PTUs in steps of 5)") in result.output
    assert "stay pay-as-you-go: $0.45 over the 1 hour, against $6,000.00 for 6000" in result.output


def test_cost_advise_recommends_ptus_at_an_operators_prices(server: Path) -> None:
    dear = server / "dear.toml"
    dear.write_text(PROVISIONED_TABLES + """
[[model]]
name = "Qwen2.5-Coder-0.5B-Instruct"
tokens.GlobalStandard = { input = 4000.0, output = 8000.0 }
tokens.DataZoneStandard = { input = 4000.0, output = 8000.0 }
tokens.Standard = { input = 4000.0, output = 8000.0 }
""")
    result = CliRunner().invoke(app, ["cost", "advise", "--account", "contoso", "--since", "2h", "--prices",
                                      str(dear), "--data-dir", str(server)])

    assert result.exit_code == 0, result.output
    # 1M × $4,000 + 0.5M × $8,000 = $8,000, against 6,000 PTUs × $1 × 1 hour
    assert "buy 6000 GlobalProvisionedManaged PTUs: pay-as-you-go cost $8,000.00 over the 1 hour, more than " \
           "their $6,000.00" in result.output
    # the provisioned deployment is weighed too, and its own PTUs shown
    assert "it has 15 PTUs now: $15.00 over the 1 hour" in result.output
    # batch is declined with the reason; all-MiniLM-L6-v2 is not in this file
    assert "contoso/night: night is a batch deployment" in result.output
    assert "contoso/vectors: all-MiniLM-L6-v2 is not in the price table" in result.output


def test_cost_advise_names_a_missing_deployment(server: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "advise", "--deployment", "nope", "--data-dir", str(server)])
    assert result.exit_code == 1 and "No deployment named nope" in result.output
