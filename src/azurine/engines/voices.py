"""OpenAI's voice names, each a setting of the voices served here.

Piper's voice is one speaker, so a name sets how it speaks: `pitch` (its samples are heard at this multiple of their
rate, and the synthesis is slowed by as much, so only the pitch moves), `pace` (Piper's length scale before the
request's `speed`: above 1 slower), `noise` (Piper's noise scale: how much the timbre varies) and `rhythm` (its noise
width: how much phoneme lengths vary). For other languages, spoken by espeak-ng, a name picks espeak-ng's voice variant
and pitch (0-99). The table is in docs/speech.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    pitch: float
    pace: float
    noise: float
    rhythm: float
    espeak_variant: str
    espeak_pitch: int


VOICES = {
    "alloy": Voice(1.00, 1.00, 0.667, 0.8, "m1", 50),
    "ash": Voice(0.94, 1.00, 0.60, 0.8, "m3", 42),
    "ballad": Voice(0.97, 1.12, 0.80, 0.9, "m2", 46),
    "cedar": Voice(0.88, 1.05, 0.667, 0.8, "m2", 36),
    "coral": Voice(1.10, 0.95, 0.667, 0.8, "f2", 60),
    "echo": Voice(0.90, 1.00, 0.50, 0.7, "m4", 38),
    "fable": Voice(1.05, 1.05, 0.80, 0.9, "m6", 54),
    "marin": Voice(1.12, 1.00, 0.667, 0.8, "f5", 64),
    "nova": Voice(1.14, 0.95, 0.667, 0.8, "f3", 66),
    "onyx": Voice(0.84, 1.05, 0.50, 0.7, "m7", 30),
    "sage": Voice(1.02, 1.10, 0.45, 0.6, "f1", 52),
    "shimmer": Voice(1.20, 1.00, 0.75, 0.8, "f4", 72),
    "verse": Voice(1.06, 1.00, 0.90, 1.0, "m5", 56),
}
