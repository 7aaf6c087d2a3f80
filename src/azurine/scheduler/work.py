"""The work order: what the scheduler knows of one engine call, and where that call's usage is counted."""

from __future__ import annotations

import threading
from typing import Protocol

from azurine.scheduler.priority import Priority


class UsageMeter(Protocol):
    """Where an engine call's actual token counts (and seconds of audio) go; held while the call runs so settlement
    waits for it."""

    def hold(self) -> None: ...

    def add(self, prompt_index: int, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
            audio_seconds: float = 0.0) -> None: ...

    def release(self) -> None: ...


class WorkOrder:
    """One engine call: how urgent it is, whose queue it waits in, where its usage is counted, and whether
    it is still wanted (engines check `cancelled` between tokens; a flag, since that is on another thread)."""

    def __init__(self, priority: Priority = Priority.STANDARD, queue: str = "",
                 meter: UsageMeter | None = None, prompt_index: int = 0) -> None:
        self.priority = priority
        self.queue = queue
        self.meter = meter
        self.prompt_index = prompt_index  # which of the request's prompts this call answers
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
