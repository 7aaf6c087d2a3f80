"""What the cost arithmetic (`usage/cost.py`) is told of the things usage is recorded under, read from the database:
each account's deployments, those since deleted among them (from the periods each deployment existed in, so that
their tokens are still priced), its fine-tuning jobs (whose training the ledger records under the job's id), and the
periods its fine-tuned deployments were hosted in. `azurine cost` and the Cost Management Query API read the same.
"""

from __future__ import annotations

import time

from azurine.catalog import Catalog
from azurine.storage.fine_tuning import FineTuningStore
from azurine.storage.state import StateStore
from azurine.usage.cost import TRAINING, Deployed, Hosted, Period, base_of, deployed_as, deployed_from


def billed_deployments(store: StateStore, jobs: FineTuningStore, catalog: Catalog, account_ids: list[str],
                       period: Period) -> dict[tuple[str, str], Deployed]:
    """By (account id, name): the accounts' deployments (a deleted one as its last period in `period` had it, with no
    PTUs), and their fine-tuning jobs, as the type TRAINING under the job's id."""
    found: dict[tuple[str, str], Deployed] = {}
    for item in store.deployment_periods(account_ids, period.start_minute * 60.0, period.end_minute * 60.0):
        found[(item.account_id, item.deployment)] = deployed_as(item.account_id, item.deployment, item.model,
                                                                item.sku, 0, item.started_at, catalog)
    for (account_id, job_id), model in jobs.job_models(account_ids).items():
        found[(account_id, job_id)] = deployed_as(account_id, job_id, model, TRAINING, 0, 0.0, catalog)
    for account_id in account_ids:
        for record in store.deployments(account_id):
            found[(account_id, record.name)] = deployed_from(account_id, record, catalog)
    return found


def hosted_periods(store: StateStore, account_ids: list[str], period: Period, now: float | None = None
                   ) -> list[Hosted]:
    """The periods in `period` the accounts' fine-tuned deployments existed in, those still deployed up to `now`."""
    end_now = time.time() if now is None else now
    hosted = []
    for item in store.deployment_periods(account_ids, period.start_minute * 60.0, period.end_minute * 60.0):
        base = base_of(item.model)
        if base is None:
            continue
        hosted.append(Hosted(item.account_id, item.deployment, item.model, base, item.sku, item.started_at,
                             item.ended_at if item.ended_at is not None else end_now))
    return hosted
