"""Speech to text (Whisper) and text to speech (Piper) through the openai SDK, on the dated and the v1 surfaces of the
session's server: speech transcribed back to its words, every response format of both, Azure's errors, the content
filter on both sides, a Whisper deployment made over ARM with its requests-per-minute limit, and the seconds of audio
heard and spoken in the usage ledger."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import av
import httpx
import numpy as np
import openai
import pytest

from azurine.config import default_models_dir
from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS
from conftest import API_VERSION, ROOT, Server

SPEECH_VERSION = "2025-04-01-preview"  # the dated versions with audio/speech
SENTENCE = "The weather is lovely today, so we will walk to the park after lunch."
SPOKEN = "Please send the quarterly report to the team before Friday afternoon."
HATEFUL = "People of that religion are vermin and must be driven out of our country by force."
ARM = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/azurine/providers/" \
      "Microsoft.CognitiveServices/accounts/default/deployments"
TTS_FORMATS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}  # FFmpeg reads ADTS as aac


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def word_error_rate(reference: str, heard: str) -> float:
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / len(ref)


@cache
def spoken(text: str) -> bytes:
    """`text` as a WAV file, spoken by espeak-ng where it is installed, else by the Piper voice in this process (so
    that a text the service's own filters refuse can still be spoken)."""
    if shutil.which("espeak-ng"):
        return subprocess.run(["espeak-ng", "-v", "en-us", "--stdout"], input=text.encode(), capture_output=True,
                              check=True).stdout
    from azurine.catalog import load_catalog
    from azurine.engines.piper_voice import PiperEngine
    from azurine.engines.speech import SpeechInput

    spec = load_catalog().get("Piper-en_US-joe-medium")
    assert spec is not None
    chunks = list(PiperEngine(spec, spec.path_in(default_models_dir())).sentences(SpeechInput(text, "alloy")))
    return wav(b"".join(c.samples.tobytes() for c in chunks), chunks[0].sample_rate)


def wav(pcm: bytes, rate: int, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(width)
        file.setframerate(rate)
        file.writeframes(pcm)
    return out.getvalue()


def dated(server: Server) -> openai.AzureOpenAI:
    """The SDK on the dated surface, at a version with `audio/speech`."""
    return openai.AzureOpenAI(azure_endpoint=server.url, api_key=server.key, api_version=SPEECH_VERSION,
                              max_retries=0)


def audio_of(data: bytes) -> tuple[str, int, float]:
    """The container, sample rate and seconds of an audio file, as FFmpeg reads it."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name, stream.rate, samples / stream.rate


def test_the_default_deployments_include_speech(server: Server) -> None:
    assert {d.name for d in DEFAULT_DEPLOYMENTS} >= {"whisper", "tts"}
    ids = [m.id for m in server.azure().models.list()]
    assert "whisper-base" in ids and "piper-en_us-joe-medium" in ids


def test_speech_is_transcribed_to_its_words_on_both_surfaces(server: Server) -> None:
    audio = spoken(SENTENCE)
    dated = server.azure().audio.transcriptions.create(model="whisper", file=("speech.wav", audio), language="en")
    v1 = server.v1().audio.transcriptions.create(model="whisper", file=("speech.wav", audio))
    assert word_error_rate(SENTENCE, dated.text) <= 0.1, dated.text
    assert word_error_rate(SENTENCE, v1.text) <= 0.1, v1.text


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_transcript_format(server: Server, response_format: str) -> None:
    with server.http() as http:
        answer = http.post(f"/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}",
                           headers={"api-key": server.key}, files={"file": ("speech.wav", spoken(SENTENCE))},
                           data={"response_format": response_format})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-remaining-requests"]
    if response_format in ("json", "verbose_json"):
        body = answer.json()
        assert word_error_rate(SENTENCE, body["text"]) <= 0.1
        assert body["usage"] == {"type": "duration", "seconds": pytest.approx(body["usage"]["seconds"])}
        if response_format == "verbose_json":
            assert body["task"] == "transcribe" and body["language"] == "english"
            assert 2 < body["duration"] < 10 and body["segments"][0]["start"] == 0
            assert {"id", "seek", "tokens", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(
                body["segments"][0])
        return
    text = answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    if response_format == "srt":
        assert re.match(r"1\n00:00:00,000 --> 00:00:0\d,\d{3}\n\S", text), text
    if response_format == "vtt":
        assert re.match(r"WEBVTT\n\n00:00:00\.000 --> 00:00:0\d\.\d{3}\n\S", text), text
    cue_text = " ".join(line for line in text.splitlines() if line and "-->" not in line and not line.isdigit()
                        and line != "WEBVTT")
    assert word_error_rate(SENTENCE, cue_text) <= 0.1, text


def test_word_and_segment_timestamps(server: Server) -> None:
    verbose = server.v1().audio.transcriptions.create(
        model="whisper", file=("speech.wav", spoken(SENTENCE)), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    assert verbose.words and verbose.segments
    # the words as heard, compared as the other tests here compare them: Whisper capitalises the first word on some
    # CPUs and not on others ("the weather is", start 0.0, on an AMD EPYC with espeak-ng's voice)
    assert [words(w.word) for w in verbose.words][:3] == [["the"], ["weather"], ["is"]]
    assert all(a.start <= b.start for a, b in zip(verbose.words, verbose.words[1:], strict=False))
    assert verbose.words[-1].end <= verbose.duration + 0.5
    only_words = server.v1().audio.transcriptions.create(
        model="whisper", file=("speech.wav", spoken(SENTENCE)), response_format="verbose_json",
        timestamp_granularities=["word"])
    assert only_words.words and not only_words.segments


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
def test_translations_are_english_on_both_surfaces(server: Server) -> None:
    audio = spoken(SENTENCE)
    for client in (server.azure(), server.v1()):
        translated = client.audio.translations.create(model="whisper", file=("speech.wav", audio))
        assert word_error_rate(SENTENCE, translated.text) <= 0.1, translated.text
    verbose = server.v1().audio.translations.create(model="whisper", file=("speech.wav", audio),
                                                    response_format="verbose_json")
    assert verbose.model_dump()["task"] == "translate"


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_in_every_format_is_heard_back(server: Server, response_format: str) -> None:
    audio = server.v1().audio.speech.create(model="tts", voice="alloy", input=SPOKEN,
                                            response_format=response_format).content  # type: ignore[arg-type]
    if response_format == "pcm":  # raw 16-bit samples at 24 kHz, no header
        assert len(audio) % 2 == 0 and len(audio) > 24_000 * 2
        audio = wav(audio, 24_000)
    else:
        container, rate, seconds = audio_of(audio)
        assert container == TTS_FORMATS[response_format] and rate in (24_000, 48_000)  # Opus decodes at 48 kHz
        assert 2 < seconds < 10
    extension = "wav" if response_format == "pcm" else {"opus": "ogg"}.get(response_format, response_format)
    heard = server.azure().audio.transcriptions.create(model="whisper", file=(f"speech.{extension}", audio))
    assert word_error_rate(SPOKEN, heard.text) <= 0.1, heard.text


def test_voices_and_speed(server: Server) -> None:
    client = dated(server)
    lengths = {}
    for voice in ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"):
        lengths[voice] = len(client.audio.speech.create(model="tts", voice=voice, input="Good morning.",  # type: ignore[arg-type]
                                                        response_format="pcm").content)
    assert all(size > 24_000 for size in lengths.values()) and len(set(lengths.values())) > 5
    slow, fast = (len(client.audio.speech.create(model="tts", voice="alloy", input=SPOKEN, response_format="pcm",
                                                 speed=speed).content) for speed in (0.5, 2.0))
    assert slow > 2 * fast


def test_speech_streams_as_it_is_made(server: Server) -> None:
    text = " ".join([SPOKEN] * 4)
    with server.v1().audio.speech.with_streaming_response.create(model="tts", voice="echo", input=text,
                                                                 response_format="mp3") as answer:
        assert "content-length" not in answer.headers and answer.headers["content-type"] == "audio/mpeg"
        parts = list(answer.iter_bytes())
    assert len(parts) > 1
    assert audio_of(b"".join(parts))[2] > 10
    with server.v1().audio.speech.with_streaming_response.create(model="tts", voice="echo", input=SPOKEN,
                                                                 response_format="wav") as whole:
        assert int(whole.headers["content-length"]) == len(whole.read())  # wav is sent whole, its sizes exact


def post_audio(server: Server, data: bytes, name: str, fields: dict[str, str] | None = None,
               path: str = "/openai/deployments/whisper/audio/transcriptions") -> httpx.Response:
    with server.http() as http:
        return http.post(f"{path}?api-version={API_VERSION}", headers={"api-key": server.key},
                         files={"file": (name, data)}, data=fields or {})


def test_files_that_are_no_audio_get_azures_errors(server: Server) -> None:
    corrupt = post_audio(server, b"\xff\xfb" + b"\x00garbage" * 500, "speech.mp3")
    assert corrupt.status_code == 400
    assert corrupt.json()["error"] == {"code": "invalid_value", "message": "Audio file might be corrupted or "
                                       "unsupported", "param": "file", "type": "invalid_request_error"}
    text = post_audio(server, b"this is not audio", "notes.txt")
    assert text.status_code == 400
    assert text.json()["error"]["message"] == ("Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', "
                                               "'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']")
    aiff = io.BytesIO()  # real audio, in a container Azure does not take
    with av.open(aiff, "w", format="aiff") as container:
        stream = container.add_stream("pcm_s16be", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(__import__("numpy").zeros((1, 16_000), dtype="int16"), format="s16",
                                           layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert post_audio(server, aiff.getvalue(), "speech.aiff").json()["error"]["message"].startswith(
        "Invalid file format.")


def test_a_file_over_25_mb_is_refused_with_azures_413(server: Server) -> None:
    big = b"\x00" * (25 * 1024 * 1024 + 1)
    answer = post_audio(server, big, "speech.wav")
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert re.fullmatch(r"Maximum content size limit \(26214400\) exceeded \(\d+ bytes read\)", error["message"])
    assert error["type"] == "server_error"

    def unsized() -> Iterator[bytes]:  # no Content-Length: cut off as it arrives
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        yield boundary
        for _ in range(27):
            yield b"\x00" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    with server.http() as http:
        streamed = http.post("/openai/v1/audio/transcriptions?api-version=v1", content=unsized(),
                             headers={"api-key": server.key, "content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413


def test_audio_longer_than_the_limit_is_refused(server: Server) -> None:
    long_silence = wav(b"\x80" * (8_000 * 1_501), 8_000, width=1)  # 25 minutes and a second, 12 MB
    answer = post_audio(server, long_silence, "long.wav")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("Audio duration 1501.0 seconds is longer than 1500 seconds")


def test_a_decoded_file_stops_at_the_limit() -> None:
    from azurine.audio.decoding import decode
    from azurine.engines.speech import AudioTooLong

    with pytest.raises(AudioTooLong):
        decode(wav(b"\x00\x00" * 16_000 * 3, 16_000), max_seconds=2)
    assert decode(wav(b"\x00\x00" * 16_000, 16_000), max_seconds=2).size == 16_000


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": "xml"}, "response_format"),
    ({"temperature": "2"}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"language": "klingon"}, "language"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),
    ({"timestamp_granularities[]": "sentence", "response_format": "verbose_json"}, "timestamp_granularities"),
    ({"stream": "true"}, "stream"),
])
def test_bad_transcription_fields_are_refused_by_name(server: Server, fields: dict[str, str], param: str) -> None:
    answer = post_audio(server, spoken(SENTENCE), "speech.wav", fields)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_missing_file_or_model(server: Server) -> None:
    with server.http() as http:
        no_file = http.post(f"/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}",
                            headers={"api-key": server.key}, files={"language": (None, "en")})
        no_model = http.post("/openai/v1/audio/transcriptions", headers={"api-key": server.key},
                             files={"file": ("speech.wav", spoken(SENTENCE))})
        json_body = http.post(f"/openai/deployments/whisper/audio/translations?api-version={API_VERSION}",
                              headers={"api-key": server.key}, json={"file": "speech.wav"})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    assert json_body.status_code == 400


@pytest.mark.parametrize(("body", "param"), [
    ({"voice": "bob"}, "voice"),
    ({"input": "x" * 4097}, "input"),
    ({"input": ""}, "input"),
    ({"speed": 5}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"response_format": "ogg"}, "response_format"),
    ({"instructions": "Speak like a pirate."}, "instructions"),
])
def test_bad_speech_requests_are_refused_by_name(server: Server, body: dict[str, object], param: str) -> None:
    with server.http() as http:
        answer = http.post("/openai/v1/audio/speech", headers={"api-key": server.key},
                           json={"model": "tts", "input": "Hello.", "voice": "alloy", **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_each_deployment_serves_only_its_operations(server: Server) -> None:
    client = dated(server)
    with pytest.raises(openai.BadRequestError) as chat:
        client.audio.transcriptions.create(model="chat", file=("speech.wav", spoken(SENTENCE)))
    assert chat.value.body["code"] == "OperationNotSupported"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as whisper:
        client.audio.speech.create(model="whisper", voice="alloy", input="Hello.")
    assert whisper.value.body["code"] == "OperationNotSupported"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as tts:
        client.chat.completions.create(model="tts", messages=[{"role": "user", "content": "hi"}])
    assert tts.value.body["code"] == "OperationNotSupported"  # type: ignore[index]


def test_the_content_filter_reads_both_sides(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as text_in:
        server.v1().audio.speech.create(model="tts", voice="alloy", input=HATEFUL)
    assert text_in.value.body["code"] == "content_filter"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as heard:
        server.azure().audio.transcriptions.create(model="whisper", file=("speech.wav", spoken(HATEFUL)))
    error = heard.value.body
    assert error["code"] == "content_filter"  # type: ignore[index]
    assert error["innererror"]["content_filter_result"]["hate"]["filtered"] is True  # type: ignore[index]


def arm_token(server: Server) -> str:
    out = subprocess.run([sys.executable, "-m", "azurine", "token", "get", "--resource",
                          "https://management.azure.com/", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return str(json.loads(out.stdout)["accessToken"])


def test_an_arm_deployment_of_whisper_is_limited_in_requests_a_minute(server: Server) -> None:
    short = wav(b"\x00\x00" * 8_000, 16_000)  # half a second of silence: the quickest request
    with server.http() as http:
        arm = {"Authorization": f"Bearer {arm_token(server)}"}
        body = {"sku": {"name": "Standard", "capacity": 1},
                "properties": {"model": {"format": "OpenAI", "name": "Whisper-base", "version": "1"}}}
        provisioned = http.put(f"{ARM}/stt-ptu?api-version=2024-10-01", headers=arm,
                               json={**body, "sku": {"name": "ProvisionedManaged", "capacity": 1}})
        assert provisioned.status_code == 400 and "Standard, GlobalStandard" in provisioned.text
        made = http.put(f"{ARM}/stt-one?api-version=2024-10-01", headers=arm, json=body)
        try:
            assert made.status_code in (200, 201), made.text
            properties = made.json()["properties"]
            assert properties["rateLimits"] == [{"count": 1.0, "key": "request", "renewalPeriod": 60.0}]
            assert properties["capabilities"]["audio"] == "true"
            # the window is the clock's minute: both requests must fall in one that neither has been charged in.
            # Where the minute turns between them, the second may have been charged in the next one, so the next
            # try waits for the minute after that
            for turned in (False, True):
                if turned or 60 - time.time() % 60 < 10:
                    time.sleep(60 - time.time() % 60 + 0.05)
                minute = time.time() // 60
                first = post_audio(server, short, "s.wav", path="/openai/deployments/stt-one/audio/transcriptions")
                second = post_audio(server, short, "s.wav", path="/openai/deployments/stt-one/audio/transcriptions")
                if time.time() // 60 == minute:
                    break
            assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
            assert "x-ratelimit-limit-tokens" not in first.headers
            assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
            assert "Transcriptions_Create Operation" in second.json()["error"]["message"]
        finally:
            http.delete(f"{ARM}/stt-one?api-version=2024-10-01", headers=arm)


def test_audio_is_metered(server: Server) -> None:
    server.v1().audio.speech.create(model="tts", voice="alloy", input="Count me.", response_format="wav")
    server.v1().audio.transcriptions.create(model="whisper", file=("speech.wav", spoken(SENTENCE)))
    metrics = httpx.get(server.metrics_url, timeout=30).text
    heard = re.search(r'azurine_audio_seconds_total\{deployment="whisper",direction="heard"\} ([0-9.e+]+)', metrics)
    said = re.search(r'azurine_audio_seconds_total\{deployment="tts",direction="spoken"\} ([0-9.e+]+)', metrics)
    assert heard and float(heard.group(1)) > 2 and said and float(said.group(1)) > 0.5
    from azurine.storage.database import make_engine
    from azurine.storage.state import StateStore

    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the ledger writes once a second
        rows = {r.deployment: r for r in store.usage(None, int(time.time() // 60) - 5)}
        if "whisper" in rows and "tts" in rows:
            break
        time.sleep(0.5)
    assert rows["whisper"].requests >= 1 and rows["whisper"].completion_tokens > 0
    assert rows["tts"].requests >= 1 and rows["tts"].prompt_tokens > 0
    assert rows["whisper"].audio_seconds > 2 and rows["tts"].audio_seconds > 0.5


def ledger_totals(server: Server, deployments: set[str], requests: int) -> dict[str, tuple[int, float]]:
    """Each deployment's requests and seconds of audio in the ledger, over the last minutes, once `requests` of them
    are written (the ledger writes once a second)."""
    from azurine.storage.database import make_engine
    from azurine.storage.state import StateStore

    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    deadline = time.monotonic() + 15
    while True:
        totals = dict.fromkeys(deployments, (0, 0.0))
        for row in store.usage(None, int(time.time() // 60) - 5):  # a minute may turn between the requests
            if row.deployment in totals:
                count, seconds = totals[row.deployment]
                totals[row.deployment] = (count + row.requests, seconds + row.audio_seconds)
        if sum(count for count, _ in totals.values()) >= requests or time.monotonic() > deadline:
            return totals
        time.sleep(0.25)


def test_the_ledger_records_the_seconds_of_audio_heard_and_spoken(server: Server) -> None:
    """Audio of a known length leads to exactly its seconds in the usage ledger: a transcription and a translation of
    speech whose length FFmpeg measures, and speech whose length its raw samples give."""
    audio = spoken(SENTENCE)
    heard = audio_of(audio)[2]
    suffix = uuid.uuid4().hex[:8]  # deployments of their own, so that no other test's usage is in their rows
    stt, tts = f"stt-ledger-{suffix}", f"tts-ledger-{suffix}"
    with server.http() as http:
        arm = {"Authorization": f"Bearer {arm_token(server)}"}
        try:
            for name, publisher, model in ((stt, "OpenAI", "Whisper-base"), (tts, "Rhasspy", "Piper-en_US-joe-medium")):
                made = http.put(f"{ARM}/{name}?api-version=2024-10-01", headers=arm, json={
                    "sku": {"name": "Standard", "capacity": 10},
                    "properties": {"model": {"format": publisher, "name": model, "version": "1"}}})
                assert made.status_code in (200, 201), made.text
            transcribed = post_audio(server, audio, "speech.wav", {"response_format": "verbose_json"},
                                     path=f"/openai/deployments/{stt}/audio/transcriptions")
            translated = post_audio(server, audio, "speech.wav", path=f"/openai/deployments/{stt}/audio/translations")
            said = http.post(f"/openai/deployments/{tts}/audio/speech?api-version={SPEECH_VERSION}",
                             headers={"api-key": server.key},
                             json={"model": tts, "input": SPOKEN, "voice": "alloy", "response_format": "pcm"})
            assert (transcribed.status_code, translated.status_code, said.status_code) == (200, 200, 200)
            spoken_seconds = len(said.content) / 2 / 24_000  # 16-bit samples at 24 kHz
            assert transcribed.json()["duration"] == pytest.approx(heard, abs=0.01)

            totals = ledger_totals(server, {stt, tts}, 3)
            assert totals[stt][0] == 2 and totals[tts][0] == 1
            assert totals[stt][1] == pytest.approx(2 * heard, abs=0.02)  # Whisper hears it at 16 kHz
            assert totals[tts][1] == pytest.approx(spoken_seconds, abs=0.02)  # Piper speaks at 22,050 Hz
            assert spoken_seconds > 2
        finally:
            for name in (stt, tts):
                http.delete(f"{ARM}/{name}?api-version=2024-10-01", headers=arm)


def test_the_call_meter_counts_the_audio_a_call_heard_or_spoke() -> None:
    from azurine.engines.base import Finished
    from azurine.engines.speech import SpeechChunk, Transcript
    from azurine.scheduler.metering import CallMeter
    from azurine.scheduler.work import WorkOrder
    from meters import CountingMeter

    heard = CountingMeter()
    meter = CallMeter(WorkOrder(meter=heard))
    meter.start()
    meter.observe(Transcript("en", 12.34, (), 3, 20))
    meter.end()
    assert (heard.added, heard.audio_seconds) == ([(0, 3, 20)], 12.34)

    spoke = CountingMeter()
    meter = CallMeter(WorkOrder(meter=spoke))
    meter.start()
    for samples in (22_050, 11_025):  # a second and half a second of speech at 22,050 Hz
        meter.observe(SpeechChunk(np.zeros(samples, np.int16), 22_050))
    meter.observe(Finished("stop", 5, 0))
    meter.end()
    assert (spoke.added, spoke.audio_seconds) == ([(0, 5, 0)], 1.5)


def test_the_catalog_installs_the_speech_models() -> None:
    from azurine.catalog import load_catalog
    from azurine.catalog.install import is_installed

    catalog = load_catalog()
    for name in ("Whisper-base", "Piper-en_US-joe-medium"):
        spec = catalog.get(name)
        assert spec is not None and is_installed(spec, default_models_dir())
    assert (Path(default_models_dir()) / "whisper-base" / "tokenizer.json").exists()


def test_a_redacted_transcript_is_redacted_in_its_segments_and_words_too() -> None:
    from azurine.api.inference.transcript_redaction import redacted_transcript
    from azurine.engines.speech import Segment, Transcript, Word

    def segment(index: int, text: str, words: list[str]) -> Segment:
        return Segment(index, 0, index, index + 1, text, (), 0.0, 0.0, 1.0, 0.0,
                       tuple(Word(w, index, index + 1) for w in words))

    transcript = Transcript("en", 2.0, (
        segment(0, " Call John Smith", [" Call", " John", " Smith"]),
        segment(1, " at noon.", [" at", " noon."]),
    ), 0, 6)
    shown = redacted_transcript(transcript, " Call [PERSON] at noon.")
    assert [s.text for s in shown.segments] == [" Call [PERSON]", " at noon."]
    assert [w.word for w in shown.segments[0].words] == [" Call", " [PERSON]"]
    assert shown.text == "Call [PERSON] at noon."
