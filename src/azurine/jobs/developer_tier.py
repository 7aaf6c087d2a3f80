"""Azure removes a DeveloperTier deployment of a fine-tuned model 24 hours after it was deployed, used or not; so
does this sweep, now and then, until the server stops.

The age is that of the deployment's current period (`storage/state.py`'s deployment periods): a deployment changed
to DeveloperTier, or to another fine-tuned model, counts from that change, as a new deployment would. Every replica
may run it: a deployment removed twice is removed once. A removed deployment's name stops answering once the
server's short-lived deployment cache lets go of it (`on_removed` clears it at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from azurine.jobs.sweeping import sweep_until
from azurine.storage.fine_tuning import FINE_TUNED_MARK
from azurine.storage.state import StateStore

SKU = "DeveloperTier"
LIFETIME_SECONDS = 24 * 3600.0
SWEEP_EVERY_SECONDS = 300.0

log = logging.getLogger("azurine")


def remove_expired(store: StateStore, now: float, lifetime_s: float = LIFETIME_SECONDS) -> list[tuple[str, str]]:
    """Delete every DeveloperTier deployment of a fine-tuned model deployed at least `lifetime_s` before `now`;
    the (account id, name) of each one removed."""
    removed = store.remove_deployments_older_than(SKU, FINE_TUNED_MARK, now - lifetime_s + 1e-6, now)
    for account_id, name in removed:
        log.info("removed the DeveloperTier deployment %s of account %s: %d hours after it was deployed", name,
                 account_id, lifetime_s // 3600)
    return removed


async def remove_expired_developer_deployments(store: StateStore, stop: asyncio.Event,
                                               on_removed: Callable[[], None] = lambda: None,
                                               every_s: float = SWEEP_EVERY_SECONDS) -> None:
    """Remove DeveloperTier deployments of fine-tuned models past their 24 hours, now and then every `every_s`,
    until `stop` is set."""

    def sweep(now: float) -> int:
        removed = remove_expired(store, now)
        if removed:
            on_removed()
        return len(removed)

    await sweep_until(stop, sweep, every_s, "DeveloperTier deployments past their 24 hours",
                      "expired DeveloperTier deployments")
