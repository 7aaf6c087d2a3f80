"""What crosses the interface of the speech engines: an audio file's transcript, and speech made from text.

Both kinds compute on the thread that calls them; the scheduler runs their calls in turn on a compute thread of the
model's own (`scheduler/scheduled_speech.py`) and serves the asynchronous side (`Transcriber`, `Speaker`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from azurine.catalog import ModelSpec
from azurine.engines.base import Finished, Order


@dataclass(frozen=True)
class TranscriptionOptions:
    task: Literal["transcribe", "translate"]  # translate: into English
    language: str | None = None  # ISO 639-1; None: detected from the audio
    prompt: str | None = None
    temperature: float = 0.0  # 0: Whisper's fallback from 0 up while a segment decodes badly
    word_timestamps: bool = False


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    language: str  # ISO 639-1, given or detected
    duration: float  # seconds of audio heard
    segments: tuple[Segment, ...]
    prompt_tokens: int  # the prompt's tokens, as the model read them
    completion_tokens: int  # the transcript's tokens

    @property
    def written(self) -> str:
        """The segments' text as Whisper wrote it, each segment with its leading space."""
        return "".join(s.text for s in self.segments)

    @property
    def text(self) -> str:
        return self.written.strip()


class UnreadableAudio(Exception):
    """The file holds no audio that decodes; `unsupported` when it is a container the service does not read."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


class AudioTooLong(Exception):
    def __init__(self, limit_s: float) -> None:
        super().__init__(f"the audio is longer than {limit_s:g} seconds")
        self.limit_s = limit_s


@dataclass(frozen=True)
class SpeechInput:
    text: str
    voice: str  # one of `engines.voices.VOICES`
    speed: float = 1.0  # 0.25 to 4.0


@dataclass(frozen=True)
class SpeechChunk:
    """One sentence of speech: 16-bit mono samples, to be heard at `sample_rate` (a rate above the voice's own
    raises its pitch)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


class BlockingTranscriber(Protocol):
    spec: ModelSpec

    def transcribe_blocking(self, audio: bytes, options: TranscriptionOptions) -> Transcript:
        """Decode the file and transcribe it; `UnreadableAudio` or `AudioTooLong` when it cannot be."""
        ...


class BlockingSpeaker(Protocol):
    spec: ModelSpec

    def sentences(self, request: SpeechInput) -> Iterator[SpeechChunk]:
        """The speech, one sentence at a time, each computed when it is asked for."""
        ...


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(self, audio: bytes, options: TranscriptionOptions, order: Order) -> Transcript: ...


@runtime_checkable
class Speaker(Protocol):
    def speak(self, request: SpeechInput, order: Order) -> AsyncIterator[SpeechChunk | Finished]:
        """The speech's sentences as they are made, then one `Finished` saying what was read."""
        ...
