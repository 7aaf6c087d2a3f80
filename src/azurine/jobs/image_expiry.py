"""Generated images are kept while their signed links work (`AZURINE_IMAGE_LINK_SECONDS`), then removed.

Reads already treat an image past its time as gone; this removes the rows. Every replica may run it: deleting what
has expired twice deletes it once.
"""

from __future__ import annotations

import asyncio

from azurine.jobs.sweeping import sweep_until
from azurine.storage.images import ImageStore

SWEEP_EVERY_SECONDS = 300.0


async def remove_expired_images(store: ImageStore, stop: asyncio.Event, every_s: float = SWEEP_EVERY_SECONDS) -> None:
    """Remove expired images now and then every `every_s`, until `stop` is set."""
    await sweep_until(stop, store.sweep, every_s, "generated images past their links' expiry", "expired images")
