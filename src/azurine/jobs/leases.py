"""A worker's leases kept alive while it runs: the loop the batch and fine-tuning workers share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("azurine")


async def renew_leases(stop: asyncio.Event, renew: Callable[[], object], lease_s: float, what: str) -> None:
    """Call `renew` off the event loop every third of `lease_s` until `stop` is set: a renewal that fails has two
    more chances before the lease runs out. `what` names the leases in the log."""
    while not stop.is_set():
        await asyncio.sleep(lease_s / 3)
        try:
            await asyncio.to_thread(renew)
        except Exception:
            log.exception("could not renew %s", what)
