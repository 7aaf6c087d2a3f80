"""The loop behind the buffers that write to the database once a second (the usage ledger, the metric recorder):
nothing on a request's path waits for the database, and a failed write is kept for the next tick."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("azurine")


async def flush_until(stopped: asyncio.Event, flush: Callable[[], None], every_s: float, what: str) -> None:
    """Call `flush` in a thread every `every_s` until `stopped` is set (the buffer's close writes what is left); a
    failed flush is logged and tried again on the next tick."""
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), timeout=every_s)
            break
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(flush)
        except Exception:
            log.exception("writing %s failed; it is kept for the next flush", what)
