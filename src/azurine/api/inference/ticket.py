"""What admission charged for one request, settled once all of its work is over.

A request is charged an estimate on arrival; its actual tokens are known only when its last engine
call ends, which for a streamed answer is after the handler has returned and for a client that went
away is after nobody is listening any more. The ticket counts who still holds it (the response being
sent, each engine call that started) and settles when the last one lets go, on whatever thread that is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.responses import Response, StreamingResponse

from azurine.api.errors import AzureError
from azurine.engines.base import EngineError
from azurine.quota.estimate import Estimate
from azurine.scheduler.priority import Priority
from azurine.scheduler.work import WorkOrder
from azurine.telemetry.request_metrics import Observation

T = TypeVar("T")


@dataclass(frozen=True)
class Usage:
    account_id: str
    deployment: str
    estimate: Estimate
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens read from cells evaluated before
    audio_seconds: float = 0.0  # heard by a transcription or translation, spoken by speech


class Ticket:
    def __init__(self, *, account_id: str, deployment: str, queue: str, priority: Priority, estimate: Estimate,
                 headers: dict[str, str], settle: Callable[[Usage], None],
                 observation: Observation | None = None) -> None:
        self.account_id = account_id
        self.deployment = deployment
        self.queue = queue
        self.priority = priority
        self.estimate = estimate
        self.headers = headers
        self._settle = settle
        self._observation = observation  # the request's, for its trace
        self._lock = threading.Lock()
        self._holders = 1  # the request itself, until its answer has been sent
        self._prompt_tokens: dict[int, int] = {}
        self._cached_tokens: dict[int, int] = {}
        self._completion_tokens = 0
        self._audio_seconds = 0.0

    def order(self, prompt_index: int = 0) -> WorkOrder:
        """A work order for one engine call made on this request's behalf."""
        return WorkOrder(self.priority, self.queue, self, prompt_index)

    # UsageMeter ------------------------------------------------------------------------------------

    def hold(self) -> None:
        with self._lock:
            self._holders += 1
        if self._observation is not None and self._observation.engine_started is None:
            self._observation.engine_started = time.monotonic()  # the first engine call began to run

    def add(self, prompt_index: int, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
            audio_seconds: float = 0.0) -> None:
        with self._lock:
            # the choices of one prompt share it: counted once, as `usage` counts it
            self._prompt_tokens[prompt_index] = max(self._prompt_tokens.get(prompt_index, 0), prompt_tokens)
            self._cached_tokens[prompt_index] = max(self._cached_tokens.get(prompt_index, 0), cached_tokens)
            self._completion_tokens += completion_tokens
            self._audio_seconds += audio_seconds

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders:
                return
            usage = Usage(self.account_id, self.deployment, self.estimate, sum(self._prompt_tokens.values()),
                          self._completion_tokens, sum(self._cached_tokens.values()), self._audio_seconds)
        self._settle(usage)

    # the request's own hold ------------------------------------------------------------------------

    async def check(self, stage: Awaitable[T]) -> T:
        """Await a stage between admission and serving; a refusal there lets go of the ticket."""
        try:
            return await stage
        except (AzureError, EngineError) as error:
            error.headers = {**self.headers, **error.headers}
            self.release()
            raise
        except BaseException:
            self.release()
            raise

    async def serve(self, answer: Awaitable[Response]) -> Response:
        """Await the answer, put the admission headers on it, and let go once it has been sent."""
        response = await self.check(answer)
        response.headers.update(self.headers)
        if isinstance(response, StreamingResponse):
            response.body_iterator = self._released_after(response.body_iterator)
        else:
            self.release()
        return response

    async def _released_after(self, body: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for chunk in body:
                yield chunk
        finally:
            self.release()
