"""Stored responses are kept for the retention the settings give (`AZURINE_RESPONSE_RETENTION_DAYS`), then removed.

Reads already treat a response past its time as gone; this removes the rows. Every replica may run it: deleting
what has expired twice deletes it once.
"""

from __future__ import annotations

import asyncio

from azurine.jobs.sweeping import sweep_until
from azurine.storage.responses import ResponseStore

SWEEP_EVERY_SECONDS = 3600.0


async def remove_expired_responses(store: ResponseStore, stop: asyncio.Event,
                                   every_s: float = SWEEP_EVERY_SECONDS) -> None:
    """Remove expired responses now and then every `every_s`, until `stop` is set."""
    await sweep_until(stop, store.sweep, every_s, "stored responses past their retention", "expired responses")
