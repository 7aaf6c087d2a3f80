"""Speech engines as the scheduler runs them: each model computes on a compute thread of its own, its calls taken in
turn by class (provisioned, standard, batch) and between deployments, as the embeddings engine's are.

A transcription is one step: the file decoded and transcribed whole. Speech is a step per sentence, so a higher class
waits at most one sentence, and a client that goes away stops the synthesis at the next one. Each call is metered by
the scheduler (`CallMeter`): a transcript's tokens, or the spoken text's `Finished`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from azurine.engines.base import Embeddings, EngineError, Finished
from azurine.engines.speech import (
    BlockingSpeaker,
    BlockingTranscriber,
    SpeechChunk,
    SpeechInput,
    Transcript,
    TranscriptionOptions,
)
from azurine.quota.estimate import text_tokens
from azurine.scheduler.compute import Emit, Scheduler
from azurine.scheduler.scheduled import NoTextGeneration
from azurine.scheduler.work import WorkOrder


class _NoText(NoTextGeneration):
    """The text operations a speech or image model does not serve: its deployment's capabilities keep requests
    away."""

    async def embed(self, inputs: list[str] | list[list[int]], order: WorkOrder | None = None) -> Embeddings:
        raise EngineError("embeddings are not served by this engine", code="OperationNotSupported")


class ScheduledTranscriber(_NoText):
    def __init__(self, engine: BlockingTranscriber) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._compute = Scheduler(engine.spec.name)

    async def transcribe(self, audio: bytes, options: TranscriptionOptions, order: WorkOrder) -> Transcript:
        return await self._compute.call(order, lambda: self._engine.transcribe_blocking(audio, options))

    async def close(self) -> None:
        self._compute.close()


class ScheduledSpeaker(_NoText):
    def __init__(self, engine: BlockingSpeaker) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._compute = Scheduler(engine.spec.name)

    def speak(self, request: SpeechInput, order: WorkOrder) -> AsyncIterator[SpeechChunk | Finished]:
        def produce(emit: Emit) -> Iterator[None]:
            for chunk in self._engine.sentences(request):
                emit(chunk)
                yield
                if order.cancelled:
                    break
            # the text read is what a speech request uses: counted as tokens, the same four characters to a token
            # its admission charged
            emit(Finished("stop", text_tokens(request.text), 0))

        return self._compute.stream(order, produce)

    async def close(self) -> None:
        self._compute.close()
