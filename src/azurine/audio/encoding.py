"""Synthesized speech in the formats OpenAI's speech API answers with, encoded by PyAV (FFmpeg) as it arrives.

Every format is 24 kHz mono, as OpenAI's are (`pcm` is raw 16-bit little-endian samples at 24 kHz, no header).
mp3, opus (in Ogg), aac (ADTS) and pcm are written as the speech comes, so a client hears the first sentence while
the next is synthesized; wav and flac are held until the end, since their headers give the length (a streamed WAV
would have to claim an unknown size that many readers refuse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTPUT_RATE = 24_000


@dataclass(frozen=True)
class OutputFormat:
    name: str
    container: str | None  # None: raw samples
    codec: str | None
    media_type: str
    streams: bool
    bit_rate: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # the muxer's


FORMATS = {f.name: f for f in (
    OutputFormat("mp3", "mp3", "libmp3lame", "audio/mpeg", True, 64_000),
    # Ogg pages of 0.1 s rather than the default second, so a short sentence goes out when it is encoded
    OutputFormat("opus", "ogg", "libopus", "audio/opus", True, 32_000, (("page_duration", "100000"),)),
    OutputFormat("aac", "adts", "aac", "audio/aac", True, 64_000),
    OutputFormat("flac", "flac", "flac", "audio/flac", False),
    OutputFormat("wav", "wav", "pcm_s16le", "audio/wav", False),
    OutputFormat("pcm", None, None, "audio/pcm", True),
)}


class _Sink:
    """Where the muxer writes: no `seek`, so FFmpeg writes each container as a stream, front to back."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


class SpeechEncoder:
    """Takes 16-bit mono samples at any rate (`add`), gives the encoded bytes ready so far; `finish` gives the
    rest. Not thread-safe: one request's encoder is used by one task."""

    def __init__(self, output: OutputFormat) -> None:
        import av

        self.output = output
        self._sink = _Sink()
        self._held = bytearray()
        sample_format = "s16"
        self._container = None
        if output.container is not None:
            self._container = av.open(self._sink, mode="w", format=output.container, options=dict(output.options))
            self._stream = self._container.add_stream(output.codec, rate=OUTPUT_RATE, layout="mono")
            if output.bit_rate:
                self._stream.codec_context.bit_rate = output.bit_rate
            sample_format = self._stream.codec_context.format.name
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=OUTPUT_RATE)
        self._closed = False

    def add(self, samples: np.ndarray, sample_rate: int) -> bytes:
        """Encode `samples` (int16), heard at `sample_rate`: a rate other than the voice's own shifts its pitch."""
        import av

        if not samples.size:
            return b""
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = sample_rate
        return self._encode(self._resampler.resample(frame))

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._encode(self._resampler.resample(None))
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return out + self._released(final=True)

    def _encode(self, frames: list) -> bytes:
        for frame in frames:
            if self._container is None:
                self._sink.write(frame.to_ndarray().astype("<i2").tobytes())
                continue
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._released(final=False)

    def _released(self, final: bool) -> bytes:
        written = self._sink.take()
        if self.output.streams:
            return written
        self._held += written
        if not final:
            return b""
        out = bytes(self._held)
        self._held.clear()
        return out
