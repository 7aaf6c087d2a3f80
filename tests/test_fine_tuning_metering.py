"""Fine-tuning as Azure meters and bills it, in-process and without training: a job's training seconds and tokens
billed into the usage ledger with the checkpoint that keeps them (work a crash lost is not billed, a cancelled job's
finished steps are), a job reading `validating_files` while its files are checked, a fine-tuned deployment's hosting
hours from its creation to its deletion, all priced from the price table in `azurine cost show`, `azurine billing
show` and the Cost Management query's meters; a DeveloperTier deployment of a fine-tuned model removed 24 hours
after it was deployed (the clock injected), and `azurine deployments create` deploying a fine-tuned model.

The training itself, and these figures for a real job killed and resumed, are `test_fine_tuning.py`'s."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import text, update
from typer.testing import CliRunner

from azurine.catalog import load_catalog
from azurine.cli import cost as cost_cli
from azurine.cli import usage as usage_cli
from azurine.cli.main import app
from azurine.jobs.developer_tier import remove_expired
from azurine.storage.content import ContentSealer
from azurine.storage.database import make_engine, migrate
from azurine.storage.fine_tuning import FineTuningStore, JobRecord
from azurine.storage.state import AccountRecord, StateStore, UsageRow
from azurine.storage.tables import DeploymentPeriod
from azurine.telemetry.metrics_query import definitions
from azurine.usage.billed import billed_deployments, hosted_periods
from azurine.usage.cost import Hosted, Period, cost_by_day, cost_by_deployment, deployed_as
from azurine.usage.cost_query import charges, parse_query
from azurine.usage.prices import PriceFileError, load_prices, packaged_text, read_prices
from migrating import migrate_to

BASE = "SmolLM2-135M-Instruct"
DAY = 24 * 3600.0
PACKAGED_FINE_TUNING = "fine_tuning = { training_hour = 100.0, hosting_hour = 1.70 }"


def stores(tmp_path: Path) -> tuple[StateStore, FineTuningStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    return StateStore(engine), FineTuningStore(engine, ContentSealer())


def a_job(jobs: FineTuningStore, account_id: str, suffix: str | None = None) -> JobRecord:
    return jobs.create(account_id, BASE, "file-train", None, {"n_epochs": 2, "batch_size": "auto",
                                                              "learning_rate_multiplier": "auto"}, suffix, 7)


def training(store: StateStore, account_id: str) -> dict[str, tuple[float, int]]:
    """The training seconds and tokens the ledger holds, by job."""
    found: dict[str, tuple[float, int]] = {}
    for row in store.usage(account_id, 0):
        seconds, tokens = found.get(row.deployment, (0.0, 0))
        found[row.deployment] = (seconds + row.training_seconds, tokens + row.trained_tokens)
    return found


def succeeded_model(store: StateStore, jobs: FineTuningStore, account_id: str, suffix: str) -> str:
    """A job of the account that made a model (its adapter a few bytes: nothing here loads it)."""
    job = a_job(jobs, account_id, suffix)
    jobs.validated(account_id, job.id, {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0}, None)
    assert jobs.claim("worker-1", 30) is not None
    name = f"{BASE.lower()}.ft-{job.id.removeprefix('ftjob-')}-{suffix}"
    assert jobs.succeed(account_id, job.id, "worker-1", name, b"adapter", "file-results", 64)
    return name


def test_a_job_reads_validating_files_until_its_files_are_checked(tmp_path: Path) -> None:
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    job = a_job(jobs, account.id)
    assert job.status == "validating_files" and job.hyperparameters["batch_size"] == "auto"
    assert jobs.claim("worker-1", 30) is None  # nothing to train until it is queued
    queued = jobs.validated(account.id, job.id, {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0},
                            None)
    assert queued is not None and queued.status == "queued" and queued.hyperparameters["batch_size"] == 1
    events = [e.message for e in reversed(jobs.events(job.id, None, 10))]
    assert events[1:] == ["Validating training file: file-train", "Files validated, moving job to queued state"]

    bad = a_job(jobs, account.id)
    failed = jobs.validated(account.id, bad.id, {}, {"code": "invalid_training_file", "message": "Line 3 is not "
                                                     "valid JSON.", "param": "training_file"})
    assert failed is not None and failed.status == "failed" and failed.error is not None

    cancelled = a_job(jobs, account.id)
    jobs.change(account.id, cancelled.id, "cancel")  # while its files were being checked
    kept = jobs.validated(account.id, cancelled.id, {"n_epochs": 1}, None)
    assert kept is not None and kept.status == "cancelled"


def test_training_is_billed_with_the_checkpoint_that_keeps_it(tmp_path: Path) -> None:
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    job = a_job(jobs, account.id)
    jobs.validated(account.id, job.id, {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0}, None)
    assert jobs.claim("worker-1", 30) is not None
    assert jobs.add_checkpoint(account.id, job.id, "worker-1", 5, {}, b"state", seconds=2.5, tokens=300)
    # a worker that lost the job bills nothing: its steps are redone and billed by the job's holder
    assert not jobs.add_checkpoint(account.id, job.id, "worker-2", 7, {}, b"state", seconds=9.0, tokens=999)
    assert jobs.succeed(account.id, job.id, "worker-1", "m", b"adapter", "file-results", 600, seconds=1.5,
                        tokens=300)
    assert training(store, account.id) == {job.id: (4.0, 600)}  # what the job says it trained, once

    stopped = a_job(jobs, account.id)
    jobs.validated(account.id, stopped.id, {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0}, None)
    assert jobs.claim("worker-1", 30) is not None
    jobs.change(account.id, stopped.id, "cancel")
    # Azure bills a cancelled run for the steps it finished
    assert jobs.bill_cancelled(account.id, stopped.id, "worker-1", 0.75, 40)
    assert not jobs.bill_cancelled(account.id, stopped.id, "worker-1", 0.75, 40)  # and only once
    assert training(store, account.id)[stopped.id] == (0.75, 40)


def test_training_hosting_and_a_fine_tuned_models_tokens_are_priced() -> None:
    prices = load_prices()  # the packaged table: training $100 an hour, hosting $1.70 an hour
    catalog = load_catalog()
    assert prices.model(BASE) is not None and prices.model(BASE).fine_tuning is not None  # type: ignore[union-attr]
    model = f"{BASE.lower()}.ft-0123abcd-taught"
    job = "ftjob-0123abcd"
    period = Period(0, 10 * 60)  # ten hours
    deployments = {("a", "taught"): deployed_as("a", "taught", model, "Standard", 1, 0.0, catalog),
                   ("a", "trial"): deployed_as("a", "trial", model, "DeveloperTier", 1, 0.0, catalog),
                   ("a", job): deployed_as("a", job, BASE, "FineTuning", 0, 0.0, catalog)}
    rows = [UsageRow("a", job, 10, 0, 0, 0, 0, training_seconds=1800.0, trained_tokens=5000),
            UsageRow("a", "taught", 70, 2, 1_000_000, 1_000_000, 0, 2_000_000),
            UsageRow("a", "trial", 70, 1, 1_000_000, 0, 0, 1_000_000)]
    hosted = [Hosted("a", "taught", model, BASE.lower(), "Standard", 0.0, 2 * 3600.0),  # deleted after 2 hours
              Hosted("a", "trial", model, BASE.lower(), "DeveloperTier", 0.0, 5 * 3600.0)]
    report = cost_by_deployment(rows, deployments, prices, period, hosted)
    lines = {line.key: line for line in report.lines}
    assert not report.unpriced
    assert lines[job].training_cost == pytest.approx(50.0)  # half an hour × $100
    assert (lines[job].training_seconds, lines[job].trained_tokens) == (1800.0, 5000)
    assert lines["taught"].hosting_hours == pytest.approx(2.0) and lines["taught"].hosting_cost == pytest.approx(3.4)
    # its tokens at the base model's Standard prices, $0.165 and $0.66 per 1M
    assert lines["taught"].token_cost == pytest.approx(0.825)
    assert lines["trial"].hosting_hours == 0 and lines["trial"].cost == pytest.approx(0.15)  # no hosting fee
    assert report.total == pytest.approx(50 + 3.4 + 0.825 + 0.15)
    assert cost_by_day(rows, deployments, prices, period, hosted).total == pytest.approx(report.total)

    query = parse_query({"type": "ActualCost", "timeframe": "Custom",
                         "timePeriod": {"from": "1970-01-01T00:00:00Z", "to": "1970-01-01T09:59:00Z"},
                         "dataset": {"granularity": "Hourly",
                                     "aggregation": {"cost": {"name": "Cost", "function": "Sum"}}}},
                        datetime(2026, 1, 1, tzinfo=UTC))
    account = AccountRecord("a", "contoso", "sub", "rg", "OpenAI", "local", None, "k1", "k2")
    meters: dict[str, tuple[float, float]] = {}
    for charge in charges(query, rows, {"a": account}, deployments, prices, hosted):
        quantity, cost = meters.get(charge.meter, (0.0, 0.0))
        meters[charge.meter] = (quantity + charge.quantity, cost + charge.cost)
    assert {meter: (round(q, 9), round(c, 9)) for meter, (q, c) in meters.items()} == ({
        f"{BASE} ft Training Hours": (0.5, 50.0),
        f"{BASE} ft Hosting regnl Hours": (2.0, 3.4),
        f"{BASE} ft Inp regnl Tokens": (1_000_000, 0.165),
        f"{BASE} ft Outp regnl Tokens": (1_000_000, 0.66),
        f"{BASE} ft Inp dev Tokens": (1_000_000, 0.15),
    })


def test_deployment_periods_run_from_creation_to_deletion(tmp_path: Path) -> None:
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    model = succeeded_model(store, jobs, account.id, "taught")
    for name in ("taught", "kept"):
        store.put_deployment(account.id, name, model_format="HuggingFace", model_name=model, model_version="1",
                             sku_name="Standard", sku_capacity=1, rai_policy_name="Microsoft.DefaultV2",
                             version_upgrade_option="NoAutoUpgrade", properties={}, tags={}, principal="me")
    assert store.delete_deployment(account.id, "taught")
    start, end = 0.0, 4e9
    periods = {p.deployment: p for p in store.deployment_periods([account.id], start, end)}
    assert periods["taught"].ended_at is not None and periods["kept"].ended_at is None
    assert periods["taught"].started_at <= periods["taught"].ended_at
    hosted = {h.deployment: h for h in hosted_periods(store, [account.id], Period(0, int(end // 60)), now=end)}
    assert hosted["kept"].end == end and hosted["taught"].end == periods["taught"].ended_at  # or to now
    # the deleted deployment's tokens are still priced: its model and type are its last period's
    known = billed_deployments(store, jobs, load_catalog(), [account.id], Period(0, int(end // 60)))
    assert known[(account.id, "taught")].sku == "Standard" and known[(account.id, "taught")].base_model == BASE


def test_a_developer_tier_deployment_of_a_fine_tuned_model_goes_after_24_hours(tmp_path: Path) -> None:
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    model = succeeded_model(store, jobs, account.id, "trial")
    for name, sku in (("trial", "DeveloperTier"), ("standard", "Standard")):
        store.put_deployment(account.id, name, model_format="HuggingFace", model_name=model, model_version="1",
                             sku_name=sku, sku_capacity=1, rai_policy_name="Microsoft.DefaultV2",
                             version_upgrade_option="NoAutoUpgrade", properties={}, tags={}, principal="me")
    deployed_at = store.deployment_periods([account.id], 0, 4e9)[0].started_at

    assert remove_expired(store, deployed_at + DAY - 60) == []  # a minute short of its 24 hours
    assert store.deployment(account.id, "trial") is not None
    assert remove_expired(store, deployed_at + DAY) == [(account.id, "trial")]
    assert store.deployment(account.id, "trial") is None
    assert store.deployment(account.id, "standard") is not None  # only DeveloperTier goes
    period = next(p for p in store.deployment_periods([account.id], 0, 4e9) if p.deployment == "trial")
    assert period.ended_at == deployed_at + DAY


def test_the_command_line_deploys_a_fine_tuned_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_DATABASE_URL", raising=False)
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    model = succeeded_model(store, jobs, account.id, "taught")
    runner = CliRunner()
    done = runner.invoke(app, ["deployments", "create", "taught", "--model", model, "--sku", "DeveloperTier",
                               "--capacity", "1", "--data-dir", str(tmp_path), "--account", "contoso"])
    assert done.exit_code == 0, done.output
    deployment = store.deployment(account.id, "taught")
    assert deployment is not None and deployment.model_name == model and deployment.model_version == "1"
    assert deployment.sku_name == "DeveloperTier"
    batch = runner.invoke(app, ["deployments", "create", "night", "--model", model, "--sku", "GlobalBatch",
                                "--data-dir", str(tmp_path), "--account", "contoso"])
    assert batch.exit_code == 1 and "GlobalBatch" in batch.output
    other = store.create_account("fabrikam", location="local", subscription_id="sub", resource_group="rg")
    theirs = runner.invoke(app, ["deployments", "create", "stolen", "--model", model, "--data-dir", str(tmp_path),
                                 "--account", other.name])
    assert theirs.exit_code == 1 and "DeploymentModelNotSupported" in theirs.output


def test_cost_and_billing_show_training_and_hosting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("AZURINE_PRICES", raising=False)
    monkeypatch.setattr(cost_cli, "console", Console(width=250))
    monkeypatch.setattr(usage_cli, "console", Console(width=250))
    store, jobs = stores(tmp_path)
    account = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
    job = a_job(jobs, account.id, "taught")
    jobs.validated(account.id, job.id, {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0}, None)
    assert jobs.claim("worker-1", 30) is not None
    model = f"{BASE.lower()}.ft-{job.id.removeprefix('ftjob-')}-taught"
    assert jobs.succeed(account.id, job.id, "worker-1", model, b"adapter", "file-results", 1200, seconds=360.0,
                        tokens=1200)
    store.put_deployment(account.id, "taught", model_format="HuggingFace", model_name=model, model_version="1",
                         sku_name="Standard", sku_capacity=1, rai_policy_name="Microsoft.DefaultV2",
                         version_upgrade_option="NoAutoUpgrade", properties={}, tags={}, principal="me")
    now = store.deployment_periods([account.id], 0, 4e9)[0].started_at + 2 * 3600  # two hours hosted
    with store.engine.begin() as connection:  # deleted after an hour and a half
        connection.execute(update(DeploymentPeriod).values(ended_at=now - 1800))
    monkeypatch.setattr(cost_cli, "_now", lambda: now)

    shown = CliRunner().invoke(app, ["cost", "show", "--since", "1d", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[2].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in shown.output.splitlines() if "contoso" in line}
    # 0.1 hours of training at $100, 1.5 hours of hosting at $1.70
    assert rows[job.id][-4:] == ["0.10", "1,200", "", "$10.00"]
    assert rows["taught"][-4:] == ["", "", "1.50", "$2.55"]
    assert "Not priced" not in shown.output

    billed = CliRunner().invoke(app, ["billing", "show", "--minutes", "1440", "--data-dir", str(tmp_path)])
    assert billed.exit_code == 0, billed.output
    line = next(line for line in billed.output.splitlines() if job.id in line)
    assert line.replace("│", " ").split()[-2:] == ["0.1000", "1,200"]  # training (h), trained


def test_the_training_hours_metric_is_azure_monitors() -> None:
    found = {d["name"]["value"]: d for d in definitions("/subscriptions/s/resourceGroups/g/providers/"
                                                         "Microsoft.CognitiveServices/accounts/a")["value"]}
    metric = found["FineTunedTrainingHours"]
    assert metric["name"]["localizedValue"] == "Processed FineTuned Training Hours"
    assert (metric["category"], metric["unit"], metric["primaryAggregationType"]) == ("Azure OpenAI - Usage",
                                                                                       "Count", "Total")


@pytest.mark.parametrize(("entry", "says"), [
    ('fine_tuning = { training_hour = -1 }', "fine_tuning: `training_hour` must be a price"),
    ('fine_tuning = { hosting_houre = 1.7 }', "fine_tuning has unknown key hosting_houre"),
    ("fine_tuning = {}", "fine_tuning prices nothing"),
])
def test_a_bad_fine_tuning_price_is_refused(entry: str, says: str) -> None:
    packaged = packaged_text()
    assert PACKAGED_FINE_TUNING in packaged
    with pytest.raises(PriceFileError, match=says):
        read_prices(packaged.replace(PACKAGED_FINE_TUNING, entry), "prices.toml")


def test_the_metering_migration_backfills_the_deployments_periods(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate_to(engine, "0017")
    store = StateStore(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (id, name, subscription_id, resource_group, kind, location, "
                                "sku_name, key1, key2, properties, tags, etag, created_by, updated_by, created_at, "
                                "updated_at) VALUES ('acct-1', 'contoso', 'sub', 'rg', 'OpenAI', 'local', 'S0', 'k1', "
                                "'k2', '{}', '{}', '', '', '', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
        connection.execute(text("INSERT INTO deployments (id, account_id, name, model_format, model_name, "
                                "model_version, sku_name, sku_capacity, rai_policy_name, version_upgrade_option, "
                                "properties, tags, etag, created_by, updated_by, created_at, updated_at) VALUES "
                                "('d-1', 'acct-1', 'chat', 'HuggingFace', 'm.ft-1', '1', 'Standard', 1, 'p', 'o', "
                                "'{}', '{}', '', '', '', '2026-01-01 12:00:00', '2026-01-01 12:00:00')"))
    migrate_to(engine, "head")
    (period,) = store.deployment_periods(["acct-1"], 0, 4e9)
    assert (period.deployment, period.model, period.ended_at) == ("chat", "m.ft-1", None)
    assert period.started_at == datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    migrate_to(engine, "0017", down=True)
    migrate_to(engine, "head")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT training_seconds, trained_tokens FROM usage_minutes")).all() == []
