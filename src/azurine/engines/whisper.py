"""Whisper on the CPU: faster-whisper (CTranslate2) in int8, from a local directory only.

Greedy decoding (beam 1): on a 2-core machine it transcribes about 17 times faster than real time, where a beam of 5
is some three times slower for a few words' difference on clear speech (`benchmarks/speech.py`). The engine computes
on the thread that calls it; the scheduler runs its calls in turn (`scheduler/scheduled_speech.py`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from azurine.audio.decoding import decode
from azurine.catalog import ModelSpec
from azurine.engines.base import EngineUnavailable
from azurine.engines.speech import Segment, Transcript, TranscriptionOptions, Word

# OpenAI's temperature 0: start greedy, and where a segment decodes badly (repetitive, or unlikely) try it again warmer
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DEFAULT_MAX_AUDIO_SECONDS = 1500.0


def max_audio_seconds(spec: ModelSpec) -> float:
    """The longest audio one request may send: the catalog's `max_audio_seconds`."""
    return float(spec.extra.get("max_audio_seconds", DEFAULT_MAX_AUDIO_SECONDS))  # type: ignore[arg-type]


class WhisperEngine:
    def __init__(self, spec: ModelSpec, model_dir: Path, threads: int | None = None) -> None:
        self.spec = spec
        self._dir = model_dir
        self._threads = threads or os.cpu_count() or 1
        self._model: Any = None
        self._lock = threading.Lock()
        self.max_audio_seconds = max_audio_seconds(spec)

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if not (self._dir / "model.bin").exists():
                    raise EngineUnavailable(
                        f"The model files for {self.spec.name} are not installed; run `azurine models install`.")
                from faster_whisper import WhisperModel

                self._model = WhisperModel(str(self._dir), device="cpu", compute_type="int8",
                                           cpu_threads=self._threads, num_workers=1, local_files_only=True)
            return self._model

    # residency (`scheduler/residency`): the weights' file, which CTranslate2 holds in memory about as stored

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def footprint(self, priorities: Collection[int]) -> int:
        try:
            return sum(path.stat().st_size for path in self._dir.iterdir() if path.is_file())
        except OSError:
            return 0

    def unload(self) -> None:
        with self._lock:
            self._model = None

    def transcribe_blocking(self, audio: bytes, options: TranscriptionOptions) -> Transcript:
        samples = decode(audio, self.max_audio_seconds)
        model = self._load()
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else (options.temperature,)
        found, info = model.transcribe(
            samples, task=options.task, language=options.language, initial_prompt=options.prompt or None,
            temperature=temperature, beam_size=1, best_of=1, word_timestamps=options.word_timestamps,
            vad_filter=False, condition_on_previous_text=True)
        segments = tuple(_segment(s) for s in found)  # the generator decodes as it is read
        prompt_tokens = len(model.hf_tokenizer.encode(" " + options.prompt.strip()).ids) if options.prompt else 0
        return Transcript(language=info.language, duration=info.duration, segments=segments,
                          prompt_tokens=prompt_tokens, completion_tokens=sum(len(s.tokens) for s in segments))


def _segment(found: Any) -> Segment:
    words = tuple(Word(w.word, round(float(w.start), 3), round(float(w.end), 3)) for w in (found.words or ()))
    return Segment(id=found.id - 1, seek=found.seek, start=round(float(found.start), 3), end=round(float(found.end), 3),
                   text=found.text, tokens=tuple(found.tokens), temperature=float(found.temperature or 0.0),
                   avg_logprob=float(found.avg_logprob), compression_ratio=float(found.compression_ratio),
                   no_speech_prob=float(found.no_speech_prob), words=words)
