"""Text to speech with Piper (VITS voices in ONNX, run by onnxruntime on the CPU), from a local directory only.

Piper phonemizes the text with its own build of espeak-ng and synthesizes it a sentence at a time, which is how the
speech API streams it. Text in a language other than the voice's goes to Debian's espeak-ng where it is installed
(`espeak_voice`); without it, the voice reads it as best it can. The engine computes on the thread that calls it;
the scheduler runs its calls in turn (`scheduler/scheduled_speech.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from azurine.catalog import ModelSpec
from azurine.engines import espeak_voice
from azurine.engines.base import EngineUnavailable
from azurine.engines.speech import SpeechChunk, SpeechInput
from azurine.engines.voices import VOICES
from azurine.safety.language import detect_language

PAUSE_S = 0.2  # silence after each sentence: Piper's sentences end where their last phoneme does
VOLUME = 0.9  # Piper scales each sentence to full scale; a little below keeps lossy encoders from clipping


class PiperEngine:
    def __init__(self, spec: ModelSpec, model_dir: Path) -> None:
        self.spec = spec
        self._dir = model_dir
        self._voice: Any = None
        self._lock = threading.Lock()
        self.language = str(spec.extra.get("language", "en"))

    def _model_file(self) -> Path | None:
        return next(iter(sorted(self._dir.glob("*.onnx"))), None) if self._dir.is_dir() else None

    def _load(self) -> Any:
        with self._lock:
            if self._voice is None:
                model = self._model_file()
                if model is None:
                    raise EngineUnavailable(
                        f"The model files for {self.spec.name} are not installed; run `azurine models install`.")
                from piper import PiperVoice

                self._voice = PiperVoice.load(model, config_path=f"{model}.json")
            return self._voice

    # residency (`scheduler/residency`): the ONNX file, which onnxruntime holds in memory about as stored

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def footprint(self, priorities: Collection[int]) -> int:
        model = self._model_file()
        try:
            return model.stat().st_size if model is not None else 0
        except OSError:
            return 0

    def unload(self) -> None:
        with self._lock:
            self._voice = None

    def sentences(self, request: SpeechInput) -> Iterator[SpeechChunk]:
        voice = VOICES[request.voice]
        language = detect_language(request.text)
        if language is not None and language != self.language and espeak_voice.speaks(language):
            yield from espeak_voice.speak(request.text, language, voice, request.speed)
            return
        from piper import SynthesisConfig

        piper = self._load()
        # heard `pitch` times faster, so synthesized that much slower: the pitch moves and the pace stays
        config = SynthesisConfig(length_scale=voice.pace * voice.pitch / request.speed, noise_scale=voice.noise,
                                 noise_w_scale=voice.rhythm, volume=VOLUME)
        rate = round(piper.config.sample_rate * voice.pitch)
        pause = np.zeros(round(rate * PAUSE_S / request.speed), dtype=np.int16)
        for chunk in piper.synthesize(request.text, config):
            yield SpeechChunk(np.concatenate([chunk.audio_int16_array, pause]), rate)
