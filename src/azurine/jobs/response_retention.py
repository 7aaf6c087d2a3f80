"""Stored responses are kept for the retention the settings give (`AZURINE_RESPONSE_RETENTION_DAYS`), then removed.

Reads already treat a response past its time as gone; this removes the rows. Every replica may run it: deleting
what has expired twice deletes it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from azurine.storage.responses import ResponseStore

log = logging.getLogger("azurine")
SWEEP_EVERY_SECONDS = 3600.0


async def remove_expired_responses(store: ResponseStore, stop: asyncio.Event,
                                   every_s: float = SWEEP_EVERY_SECONDS) -> None:
    """Remove expired responses now and then every `every_s`, until `stop` is set."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(store.sweep, time.time())
            if removed:
                log.info("removed %d stored responses past their retention", removed)
        except Exception:  # the next sweep tries again; nothing reads an expired response meanwhile
            log.exception("could not remove expired responses")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
