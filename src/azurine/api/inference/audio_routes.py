"""Audio routes, each written once and mounted on both surfaces (`azurine.api.mounting`): speech to text
(`audio/transcriptions`, `audio/translations`, on a Whisper deployment) and text to speech (`audio/speech`).

A handler is the request pipeline, top to bottom, after the caller's stages (api-version → account → network →
encryption → identity): deployment and form or body → the whole request checked (for audio, its header read) →
quota (requests per minute) → content filter on the prompt or the text to speak → the engine under its compute
scheduler → content filter on the transcript → response; metering settles once the engine's call is over.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal, cast

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.caller import Caller
from azurine.api.context import Target, require_model_field
from azurine.api.deployment_stage import find_deployment, target_and_body
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.admission import admit
from azurine.api.inference.audio_form import AudioForm, read_audio_form
from azurine.api.inference.content_filter import screen_prompts
from azurine.api.inference.protocol_audio import SpeechRequest, TranscriptionAsk, transcription_ask
from azurine.api.inference.serving_speech import serve_speech
from azurine.api.inference.ticket import Ticket
from azurine.api.inference.transcript_redaction import redacted_transcript
from azurine.api.inference.transcript_render import render
from azurine.api.mounting import mount
from azurine.audio.decoding import SUPPORTED, probe
from azurine.engines.speech import AudioTooLong, Speaker, Transcriber, UnreadableAudio
from azurine.engines.whisper import max_audio_seconds
from azurine.quota.estimate import Estimate, text_tokens
from azurine.safety.guard import ContentGuard, PromptText
from azurine.telemetry.metrics import AUDIO_SECONDS

router = APIRouter()

FILTERED_TRANSCRIPT = (
    "The response was filtered due to the transcript triggering Azure OpenAI's content management policy. To learn "
    "more about our content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766"
)


def invalid_file(filename: str, error: UnreadableAudio) -> AzureError:
    """OpenAI's two answers: a name or container outside the list, or a file of a listed kind that does not decode."""
    extension = PurePath(filename).suffix.lower().lstrip(".")
    if error.unsupported or extension not in SUPPORTED:
        message = f"Invalid file format. Supported formats: {list(SUPPORTED)}"
    else:
        message = "Audio file might be corrupted or unsupported"
    return bad_request(message, "file", "invalid_value")


def too_long(limit_s: float, duration_s: float | None = None) -> AzureError:
    shown = f"{duration_s:.1f}" if duration_s is not None else f"over {limit_s:g}"
    return bad_request(f"Audio duration {shown} seconds is longer than {limit_s:g} seconds which is the maximum for "
                       "this model. Split the audio into shorter files.", "file", "invalid_value")


def filtered_transcript(annotations: dict[str, object]) -> AzureError:
    return AzureError(400, "content_filter", FILTERED_TRANSCRIPT, param=None, error_type=None,
                      include_openai_fields=True, extra={"status": 400},
                      innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": annotations})


def not_served_here(target: Target) -> AzureError:
    return bad_request(f"The deployment '{target.deployment.name}' serves its model from another server, which "
                       "Azurine does not forward audio to.", None, "OperationNotSupported")


# speech to text ---------------------------------------------------------------------------------------------------

async def target_and_form(request: Request, caller: Caller, capability: str) -> tuple[Target, AudioForm]:
    """The deployment and the form: on the dated surface the path names the deployment, found first; on v1 the form's
    `model` does."""
    if caller.surface.deployment_in_path:
        target = await find_deployment(request, caller, str(request.path_params["deployment_id"]), capability)
        return target, await read_audio_form(request)
    form = await read_audio_form(request)
    return await find_deployment(request, caller, require_model_field(form.value("model")), capability), form


async def check_audio(form: AudioForm, limit_s: float) -> None:
    """The file's header: a file that is no audio, or says it is too long, costs no quota."""
    try:
        info = await run_in_threadpool(probe, form.audio)
    except UnreadableAudio as error:
        raise invalid_file(form.filename, error) from None
    if info.duration_s is not None and info.duration_s > limit_s + 0.5:  # a container's rounding is no reason to refuse
        raise too_long(limit_s, info.duration_s)


async def serve_transcript(target: Target, form: AudioForm, ask: TranscriptionAsk, ticket: Ticket,
                           guard: ContentGuard) -> Response:
    engine = cast(Transcriber, target.engine)
    try:
        transcript = await engine.transcribe(form.audio, ask.options, ticket.order())
    except UnreadableAudio as error:
        raise invalid_file(form.filename, error) from None
    except AudioTooLong as error:
        raise too_long(error.limit_s) from None
    AUDIO_SECONDS.labels(target.deployment.name, "heard").inc(transcript.duration)
    check = await guard.check_answer(transcript.written)
    if check.filtered:
        raise filtered_transcript(check.annotations)
    if check.redacted is not None:
        transcript = redacted_transcript(transcript, check.redacted)
    return render(transcript, ask)


async def speech_to_text(request: Request, caller: Caller, capability: Literal["transcription", "translation"]) \
        -> Response:
    target, form = await target_and_form(request, caller, capability)
    if not isinstance(target.engine, Transcriber):
        raise not_served_here(target)
    ask = transcription_ask(form, "transcribe" if capability == "transcription" else "translate")
    await check_audio(form, max_audio_seconds(target.model))
    prompt = ask.options.prompt
    ticket = await admit(request, caller, target, Estimate(text_tokens(prompt) if prompt else 0, 0), capability)
    prompts = [PromptText(prompt, prompt, param="prompt")] if prompt else []
    guard = await ticket.check(screen_prompts(request, caller, target, prompts))
    return await ticket.serve(serve_transcript(target, form, ask, ticket, guard))


async def transcriptions(request: Request, caller: Caller) -> Response:
    return await speech_to_text(request, caller, "transcription")


async def translations(request: Request, caller: Caller) -> Response:
    return await speech_to_text(request, caller, "translation")


# text to speech ---------------------------------------------------------------------------------------------------

async def speech(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, SpeechRequest, "speech")
    if not isinstance(target.engine, Speaker):
        raise not_served_here(target)
    ticket = await admit(request, caller, target, Estimate(text_tokens(body.input), 0), "speech")
    await ticket.check(screen_prompts(request, caller, target, [PromptText(body.input, body.input, param="input")]))
    return await ticket.serve(serve_speech(target, body, ticket))


mount(router, "POST", "{deployment}/audio/transcriptions", transcriptions, "Transcriptions_Create")
mount(router, "POST", "{deployment}/audio/translations", translations, "Translations_Create")
mount(router, "POST", "{deployment}/audio/speech", speech, "GenerateSpeechFromText")
