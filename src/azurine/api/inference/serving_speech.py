"""Speech from text: the engine's sentences encoded as they come, streamed where the format allows it.

The first sentence is made before the answer starts, so a request that cannot be spoken at all (the model's files
missing, a language that fails) gets an error rather than an empty 200. After that, a failure ends the audio where it
is: the status has been sent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from azurine.api.context import Target
from azurine.api.inference.protocol_audio import SpeechRequest
from azurine.api.inference.ticket import Ticket
from azurine.audio.encoding import FORMATS, SpeechEncoder
from azurine.engines.base import Finished
from azurine.engines.speech import Speaker, SpeechChunk, SpeechInput
from azurine.telemetry.metrics import AUDIO_SECONDS

log = logging.getLogger("azurine")


async def _chunks(events: AsyncIterator[SpeechChunk | Finished]) -> AsyncIterator[SpeechChunk]:
    # closed with this one: the engine's call ends (and stops synthesizing) when its reader does
    async with aclosing(events) as items:  # type: ignore[type-var]
        async for event in items:
            if isinstance(event, SpeechChunk):
                yield event


async def serve_speech(target: Target, body: SpeechRequest, ticket: Ticket) -> Response:
    output = FORMATS[body.response_format or "mp3"]
    encoder = SpeechEncoder(output)
    speaker = cast(Speaker, target.engine)
    request = SpeechInput(body.input, body.voice, body.speed or 1.0)
    chunks = _chunks(speaker.speak(request, ticket.order()))
    deployment = target.deployment.name
    try:
        first = await anext(chunks, None)
    except BaseException:
        await chunks.aclose()
        raise
    if not output.streams:
        audio = bytearray()
        async with aclosing(chunks):
            chunk = first
            while chunk is not None:
                AUDIO_SECONDS.labels(deployment, "spoken").inc(chunk.seconds)
                audio += await run_in_threadpool(encoder.add, chunk.samples, chunk.sample_rate)
                chunk = await anext(chunks, None)
        audio += await run_in_threadpool(encoder.finish)
        return Response(bytes(audio), media_type=output.media_type)

    async def body_bytes() -> AsyncIterator[bytes]:
        async with aclosing(chunks):
            chunk = first
            try:
                while chunk is not None:
                    AUDIO_SECONDS.labels(deployment, "spoken").inc(chunk.seconds)
                    encoded = await run_in_threadpool(encoder.add, chunk.samples, chunk.sample_rate)
                    if encoded:
                        yield encoded
                    chunk = await anext(chunks, None)
            except Exception:  # the status is sent: the audio ends where it got to
                log.exception("speech on %s failed after it had started", deployment)
            yield await run_in_threadpool(encoder.finish)

    return StreamingResponse(body_bytes(), media_type=output.media_type)
