"""Speech in other languages from Debian's espeak-ng, where it is installed (`apt-get install espeak-ng`).

Formant synthesis: robotic next to Piper's voice, but some hundred languages. Each sentence is one run of the
`espeak-ng` program, the text on its standard input (never on its command line), its WAV on standard output.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from functools import cache

import numpy as np

from azurine.engines.base import EngineError
from azurine.engines.speech import SpeechChunk
from azurine.engines.voices import Voice

WORDS_PER_MINUTE = 175  # espeak-ng's own default rate
MIN_WPM, MAX_WPM = 80, 450  # what it speaks intelligibly
RUN_TIMEOUT_S = 60
SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


@cache
def languages() -> frozenset[str]:
    """The languages espeak-ng has voices for, by their codes ("de", "pt-br"); none where it is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        return frozenset()
    try:
        listing = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                                 check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1].lower() for line in listing.splitlines()[1:] if len(line.split()) > 1)


def speaks(language: str | None) -> bool:
    return language is not None and language in languages()


def sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in SENTENCE_END.split(text)) if s]


def speak(text: str, language: str, voice: Voice, speed: float) -> Iterator[SpeechChunk]:
    """`text` in `language` (one of `languages()`), a sentence at a time."""
    program = shutil.which("espeak-ng")
    if program is None or language not in languages():
        raise EngineError(f"espeak-ng does not speak '{language}' here.", code="OperationNotSupported")
    wpm = min(MAX_WPM, max(MIN_WPM, round(WORDS_PER_MINUTE * speed / voice.pace)))
    command = [program, "-v", f"{language}+{voice.espeak_variant}", "-p", str(voice.espeak_pitch), "-s", str(wpm),
               "--stdout"]
    for sentence in sentences(text):
        run = subprocess.run(command, input=sentence.encode("utf-8"), capture_output=True, timeout=RUN_TIMEOUT_S,
                             check=False)
        if run.returncode != 0:
            raise EngineError(f"espeak-ng could not speak the input: {run.stderr.decode(errors='replace')[:200]}",
                              code="ServiceUnavailable", status=503, error_type=None)
        yield _wav_chunk(run.stdout)


def _wav_chunk(wav: bytes) -> SpeechChunk:
    """espeak-ng's WAV: 16-bit mono PCM, its sizes left at "unknown" since it writes to a pipe."""
    rate = struct.unpack_from("<I", wav, 24)[0] if len(wav) >= 28 else 22050
    start = wav.find(b"data")
    body = wav[start + 8:] if start >= 0 else b""
    samples = np.frombuffer(body[: len(body) - len(body) % 2], dtype="<i2")
    return SpeechChunk(samples.copy(), rate)
