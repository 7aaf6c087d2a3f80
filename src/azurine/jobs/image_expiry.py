"""Generated images are kept while their signed links work (`AZURINE_IMAGE_LINK_SECONDS`), then removed.

Reads already treat an image past its time as gone; this removes the rows. Every replica may run it: deleting what
has expired twice deletes it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from azurine.storage.images import ImageStore

log = logging.getLogger("azurine")
SWEEP_EVERY_SECONDS = 300.0


async def remove_expired_images(store: ImageStore, stop: asyncio.Event, every_s: float = SWEEP_EVERY_SECONDS) -> None:
    """Remove expired images now and then every `every_s`, until `stop` is set."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(store.sweep, time.time())
            if removed:
                log.info("removed %d generated images past their links' expiry", removed)
        except Exception:  # the next sweep tries again; nothing reads an expired image meanwhile
            log.exception("could not remove expired images")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
