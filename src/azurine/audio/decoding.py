"""An uploaded audio file as the 16 kHz mono samples Whisper hears, decoded by PyAV (FFmpeg).

Only the containers Azure OpenAI names for Whisper are read (flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm),
and ADTS AAC, which the speech API writes for `aac`: FFmpeg could open many more, and every demuxer it runs on a
tenant's bytes is code that reads untrusted input.
Decoding stops as soon as the audio passes the longest a request may send, so a small file that unpacks into hours
of silence costs no more than that.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from azurine.engines.speech import AudioTooLong, UnreadableAudio

SAMPLE_RATE = 16_000
# what Azure's error lists; "mpga" is MPEG audio (mp3) and "oga" Ogg audio
SUPPORTED = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
# FFmpeg's names of the demuxers that read them (mp4 and m4a are one demuxer, as are webm and Matroska)
DEMUXERS = frozenset({"aac", "flac", "mov,mp4,m4a,3gp,3g2,mj2", "mp3", "mpeg", "ogg", "wav", "matroska,webm"})


@dataclass(frozen=True)
class AudioInfo:
    container: str
    codec: str
    duration_s: float | None  # as the container states it; None where it does not


def _open(data: bytes):
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as error:
        raise UnreadableAudio(str(error)) from None
    if container.format.name not in DEMUXERS:
        container.close()
        raise UnreadableAudio(f"the container is {container.format.name}", unsupported=True)
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        container.close()
        raise UnreadableAudio("the file holds no audio stream")
    return container, stream


def probe(data: bytes) -> AudioInfo:
    """What the file says it is, read from its header alone: cheap enough to check before a request is admitted."""
    import av

    container, stream = _open(data)
    with container:
        duration = container.duration / av.time_base if container.duration else None
        return AudioInfo(container.format.name, stream.codec_context.name, duration)


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    """The whole audio as float32 samples in [-1, 1) at 16 kHz, mono; `AudioTooLong` past `max_seconds`."""
    import av

    container, stream = _open(data)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0

    def keep(frames: list) -> None:
        nonlocal total
        for frame in frames:
            samples = frame.to_ndarray().reshape(-1)
            total += samples.size
            if total > limit:
                raise AudioTooLong(max_seconds)
            chunks.append(samples)

    with container:
        try:
            for frame in container.decode(stream):
                keep(resampler.resample(frame))
        except av.FFmpegError as error:
            # a file cut short or damaged near its end still gives what decoded before, as FFmpeg's tools do
            if not chunks:
                raise UnreadableAudio(str(error)) from None
        keep(resampler.resample(None))
    if not total:
        raise UnreadableAudio("no audio samples decode from the file")
    return np.concatenate(chunks).astype(np.float32) / 32768.0
