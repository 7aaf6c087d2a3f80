"""A sweep of expired rows run now and then, until the server stops: the loop the retention jobs share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

log = logging.getLogger("azurine")


async def sweep_until(stop: asyncio.Event, sweep: Callable[[float], int], every_s: float, removed_what: str,
                      failed_what: str) -> None:
    """Run `sweep(now)` off the event loop now and then every `every_s`, until `stop` is set. Its count is logged as
    `removed_what`; a sweep that fails is logged as `failed_what` and tried again at the next turn (reads already
    treat an expired row as gone)."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(sweep, time.time())
            if removed:
                log.info("removed %d %s", removed, removed_what)
        except Exception:
            log.exception("could not remove %s", failed_what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
