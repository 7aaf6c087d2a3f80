"""What the audio routes accept: a speech-to-text request's form fields, and a speech request's JSON body, with the
types and limits of Azure's specs (2024-10-21 for transcriptions and translations, 2025-04-01-preview for speech).

As for the other routes, a field Azurine does not act on is refused by name rather than ignored, and fields outside
the specs are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StrictStr, field_validator

from azurine.api.errors import bad_request
from azurine.api.inference.audio_form import AudioForm
from azurine.api.inference.protocol import Absent, Number, _Body, unsupported
from azurine.engines.speech import TranscriptionOptions
from azurine.engines.voices import VOICES
from azurine.engines.whisper_languages import LANGUAGES

TEXT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
MAX_PROMPT_CHARS = 4096  # Whisper reads the last 224 tokens of a prompt; this bounds what is screened and counted
MAX_SPEECH_CHARS = 4096


def _listed(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


@dataclass(frozen=True)
class TranscriptionAsk:
    options: TranscriptionOptions
    response_format: str
    granularities: frozenset[str]  # of verbose_json: which of segments and words it holds


def transcription_ask(form: AudioForm, task: Literal["transcribe", "translate"]) -> TranscriptionAsk:
    response_format = form.value("response_format") or "json"
    if response_format not in TEXT_FORMATS:
        raise bad_request(f"Invalid value: '{response_format[:64]}'. Supported values are: {_listed(TEXT_FORMATS)}.",
                          "response_format", "invalid_value")
    raw_temperature = form.value("temperature")
    temperature = 0.0
    if raw_temperature is not None:
        try:
            temperature = float(raw_temperature)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:
            raise bad_request(f"Invalid value for 'temperature': '{raw_temperature[:64]}' is not a number from 0 to "
                              "1.", "temperature", "invalid_value")
    language = None
    if task == "transcribe":  # a translation's language is the audio's, into English; the spec has no field for it
        language = (form.value("language") or "").strip().lower() or None
        if language is not None and language not in LANGUAGES:
            raise bad_request(f"Invalid language '{language[:16]}'. Language parameter must be specified in "
                              "ISO-639-1 format.", "language", "invalid_value")
    prompt = form.value("prompt") or None
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise bad_request(f"Invalid 'prompt': it is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,} "
                          "are read.", "prompt", "string_above_max_length")
    asked = form.fields.get("timestamp_granularities[]", []) + form.fields.get("timestamp_granularities", [])
    for granularity in asked:
        if granularity not in GRANULARITIES:
            raise bad_request(f"Invalid value: '{granularity[:32]}'. Supported values are: 'word' and 'segment'.",
                              "timestamp_granularities", "invalid_value")
    if asked and response_format != "verbose_json":
        raise bad_request("timestamp_granularities[] needs response_format 'verbose_json'.",
                          "timestamp_granularities", "invalid_value")
    if (form.value("stream") or "").lower() == "true":
        raise bad_request("Unsupported parameter: 'stream' is not supported with this model: its transcript comes "
                          "whole.", "stream", "unsupported_parameter")
    granularities = frozenset(asked or ("segment",))
    options = TranscriptionOptions(task=task, language=language, prompt=prompt, temperature=temperature,
                                   word_timestamps="word" in granularities)
    return TranscriptionAsk(options, response_format, granularities)


class SpeechRequest(_Body):
    model: StrictStr | None = None
    input: Annotated[StrictStr, Field(min_length=1, max_length=MAX_SPEECH_CHARS)]
    voice: StrictStr
    response_format: Absent[Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]] = None
    speed: Absent[Annotated[Number, Field(ge=0.25, le=4.0)]] = None
    instructions: Absent[StrictStr] = None
    stream_format: Absent[Literal["audio", "sse"]] = None

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, value: str) -> str:
        if value not in VOICES:
            raise ValueError(f"'{value[:32]}' is not a voice: use one of {', '.join(VOICES)}")
        return value

    @field_validator("instructions")
    @classmethod
    def _no_instructions(cls, value: str | None) -> str | None:
        if value:
            raise unsupported("Unsupported parameter: 'instructions' is not supported with this model: its voices "
                              "are set by 'voice' and 'speed'.")
        return value

    @field_validator("stream_format")
    @classmethod
    def _audio_only(cls, value: str | None) -> str | None:
        if value == "sse":
            raise unsupported("Unsupported parameter: 'stream_format' 'sse' is not supported with this model: the "
                              "audio streams as the response body.")
        return value
