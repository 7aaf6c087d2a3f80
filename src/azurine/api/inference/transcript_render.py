"""A transcript in the `response_format` asked for: `json`, `text`, `srt`, `verbose_json` or `vtt`, as OpenAI's
Whisper writes them. `json` and `verbose_json` also say, as OpenAI's do, the seconds of audio the request used."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import Response

from azurine.api.inference.protocol_audio import TranscriptionAsk
from azurine.api.sse import AzureJSONResponse
from azurine.engines.speech import Segment, Transcript
from azurine.engines.whisper_languages import LANGUAGES


def _clock(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def srt(segments: tuple[Segment, ...]) -> str:
    cues = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
            for i, s in enumerate((s for s in segments if s.text.strip()), start=1)]
    return "\n".join(cues)


def vtt(segments: tuple[Segment, ...]) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in segments if s.text.strip()]
    return "WEBVTT\n\n" + "\n".join(cues)


def _segment(segment: Segment) -> dict[str, Any]:
    return {"id": segment.id, "seek": segment.seek, "start": segment.start, "end": segment.end, "text": segment.text,
            "tokens": list(segment.tokens), "temperature": segment.temperature, "avg_logprob": segment.avg_logprob,
            "compression_ratio": segment.compression_ratio, "no_speech_prob": segment.no_speech_prob}


def _usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def render(transcript: Transcript, ask: TranscriptionAsk) -> Response:
    text_type = "text/plain; charset=utf-8"
    if ask.response_format == "text":
        return Response(transcript.text + "\n", media_type=text_type)
    if ask.response_format == "srt":
        return Response(srt(transcript.segments), media_type=text_type)
    if ask.response_format == "vtt":
        return Response(vtt(transcript.segments), media_type=text_type)
    if ask.response_format == "json":
        return AzureJSONResponse({"text": transcript.text, "usage": _usage(transcript)})
    body: dict[str, Any] = {
        "task": ask.options.task, "language": LANGUAGES.get(transcript.language, transcript.language),
        "duration": round(transcript.duration, 3), "text": transcript.text,
    }
    if "segment" in ask.granularities:
        body["segments"] = [_segment(s) for s in transcript.segments]
    if "word" in ask.granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in transcript.segments for w in s.words]
    body["usage"] = _usage(transcript)
    return AzureJSONResponse(body)
