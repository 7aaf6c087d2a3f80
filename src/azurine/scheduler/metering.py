"""The one place where an engine call's usage is counted and reported.

Every engine call runs under the scheduler: on the compute thread, or through an upstream server's gate. The
scheduler starts a `CallMeter` when the call starts running, shows it each event the engine emits and ends it when
the call's work is over, whatever ended it. Engines only say what they did, in their final `Finished` (or the
`Embeddings`, `Transcript` or `GeneratedImages` they return); they never report usage themselves, so a call is
counted once and only once. Audio is counted here too: the seconds a `Transcript` heard, and the seconds of each
`SpeechChunk` made, as it is made (so speech cut short counts what was spoken).

A call cut short before its `Finished` (a client that went away from an upstream stream, an engine that failed
midway) is counted from what was seen: the prompt's estimate and one token per text delta.
"""

from __future__ import annotations

from azurine.engines.base import Delta, Embeddings, Finished, HandedOver
from azurine.engines.images import GeneratedImages
from azurine.engines.speech import SpeechChunk, Transcript
from azurine.scheduler.work import WorkOrder


class CallMeter:
    def __init__(self, order: WorkOrder, prompt_estimate: int = 0) -> None:
        self._order = order
        self._prompt_tokens = prompt_estimate
        self._completion_tokens = 0
        self._cached_tokens = 0
        self._audio_seconds = 0.0
        self._exact = False
        self._started = False
        self._ended = False
        self._handed_over = False

    def start(self) -> None:
        """The call runs: its request's usage is not settled before this call has ended."""
        if self._started:
            return
        self._started = True
        if self._order.meter is not None:
            self._order.meter.hold()

    def observe(self, item: object) -> None:
        if isinstance(item, Finished):
            self._prompt_tokens, self._completion_tokens = item.prompt_tokens, item.completion_tokens
            self._cached_tokens = item.cached_tokens
            self._exact = True
        elif isinstance(item, Embeddings):
            self._prompt_tokens, self._completion_tokens = item.prompt_tokens, 0
            self._exact = True
        elif isinstance(item, Transcript):  # the prompt read, and the transcript's tokens written
            self._prompt_tokens, self._completion_tokens = item.prompt_tokens, item.completion_tokens
            self._audio_seconds = item.duration
            self._exact = True
        elif isinstance(item, SpeechChunk):  # a sentence spoken; the text read comes in the `Finished` after them
            self._audio_seconds += item.seconds
        elif isinstance(item, GeneratedImages):  # the prompt read, and the image's price units
            self._prompt_tokens, self._completion_tokens = item.prompt_tokens, item.completion_tokens
            self._exact = True
        elif isinstance(item, HandedOver):  # the call that takes the answer over counts all of it
            self._handed_over = True
        elif isinstance(item, Delta) and item.text and not self._exact:
            self._completion_tokens += 1

    def end(self) -> None:
        """Report what the call used and let go of its request; only a call that started has anything to report."""
        if not self._started or self._ended:
            return
        self._ended = True
        meter = self._order.meter
        if meter is None:
            return
        if self._handed_over:
            meter.release()
            return
        try:
            meter.add(self._order.prompt_index, self._prompt_tokens, self._completion_tokens, self._cached_tokens,
                      self._audio_seconds)
        finally:
            meter.release()
