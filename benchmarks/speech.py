"""The real-time factor of speech to text and text to speech: Azurine's API against the raw engines in this process.

    .venv/bin/python benchmarks/speech.py [--runs 5] [--sentences 8]

The real-time factor (RTF) is compute time over audio time: 0.1 is ten times faster than real time.

- Speech to text: the same WAV (Piper's voice reading --sentences sentences) transcribed by faster-whisper called
  directly (Whisper base, int8, beam 1, as the engine runs it, decoding the file included) and through
  `/openai/deployments/whisper/audio/transcriptions` (`json`).
- Text to speech: the same text synthesized by Piper called directly (every sentence, to 16-bit samples) and through
  `/openai/deployments/tts/audio/speech` as `wav` (whole) and as `mp3` (streamed: the first byte's time is shown too).

Runs alternate between the two sides, so that drift in the machine's load hits both alike; the medians are shown.
Azurine's deployments keep their default content-filter policy, as users get them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from azurine.catalog import load_catalog  # noqa: E402
from azurine.config import default_models_dir  # noqa: E402
from conftest import API_KEY, start_server, stop  # noqa: E402

SENTENCES = [
    "The committee met on Tuesday to review the plans for the new library.",
    "Most of the members agreed that the building should open next spring.",
    "A few people asked whether the budget would cover the extra reading rooms.",
    "The architect explained that the design could still be changed in small ways.",
    "Parking remains the largest open question for the neighbours on the east side.",
    "The city will publish a summary of the meeting before the end of the month.",
    "Anyone who wants to comment may write to the planning office until then.",
    "The next meeting will take place in the school hall at seven in the evening.",
]
VERSION = "2025-04-01-preview"


def wav_bytes(samples: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(samples)
    return out.getvalue()


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def interleaved(runs: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each side once per round, in an order that turns each round."""
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(runs):
        for name in names[index % len(names):] + names[:index % len(names)]:
            times[name].append(sides[name]())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    args = parser.parse_args()
    console = Console()
    text = " ".join((SENTENCES * ((args.sentences // len(SENTENCES)) + 1))[:args.sentences])
    catalog = load_catalog()
    whisper_spec, voice_spec = catalog.get("Whisper-base"), catalog.get("Piper-en_US-joe-medium")
    assert whisper_spec is not None and voice_spec is not None
    models = default_models_dir()
    threads = os.cpu_count() or 1

    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    from piper import PiperVoice, SynthesisConfig

    onnx = next((voice_spec.path_in(models)).glob("*.onnx"))
    piper = PiperVoice.load(onnx, config_path=f"{onnx}.json")
    whisper = WhisperModel(str(whisper_spec.path_in(models)), device="cpu", compute_type="int8",
                           cpu_threads=threads, num_workers=1, local_files_only=True)

    def raw_speech() -> bytes:
        return b"".join(chunk.audio_int16_bytes for chunk in piper.synthesize(text, SynthesisConfig()))

    speech = wav_bytes(raw_speech(), piper.config.sample_rate)
    audio_s = (len(speech) - 44) / 2 / piper.config.sample_rate

    def raw_transcribe() -> None:
        segments, _ = whisper.transcribe(decode_audio(io.BytesIO(speech)), beam_size=1, best_of=1, vad_filter=False)
        list(segments)

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            http = httpx.Client(base_url=server.url, headers={"api-key": API_KEY}, timeout=600)

            def served_transcribe() -> None:
                http.post(f"/openai/deployments/whisper/audio/transcriptions?api-version={VERSION}",
                          files={"file": ("speech.wav", speech)}).raise_for_status()

            def served_speech(response_format: str) -> bytes:
                answer = http.post(f"/openai/deployments/tts/audio/speech?api-version={VERSION}",
                                   json={"input": text, "voice": "alloy", "response_format": response_format})
                answer.raise_for_status()
                return answer.content

            first_bytes: list[float] = []

            def streamed_mp3() -> float:
                start = time.perf_counter()
                with http.stream("POST", f"/openai/deployments/tts/audio/speech?api-version={VERSION}",
                                 json={"input": text, "voice": "alloy", "response_format": "mp3"}) as answer:
                    answer.raise_for_status()
                    for index, _ in enumerate(answer.iter_bytes()):
                        if index == 0:
                            first_bytes.append(time.perf_counter() - start)
                return time.perf_counter() - start

            with console.status("warming up: each model loads once on each side"):
                raw_transcribe(), served_transcribe(), served_speech("wav")
            with console.status(f"speech to text: {args.runs} rounds"):
                stt = interleaved(args.runs, {"faster-whisper, direct": lambda: timed(raw_transcribe),
                                              "Azurine transcriptions (json)": lambda: timed(served_transcribe)})
            with console.status(f"text to speech: {args.runs} rounds"):
                tts = interleaved(args.runs, {
                    "Piper, direct": lambda: timed(raw_speech),
                    "Azurine speech (wav, whole)": lambda: timed(lambda: served_speech("wav")),
                    "Azurine speech (mp3, streamed)": streamed_mp3})
        finally:
            stop(server.process)

    table = Table(title=f"Real-time factor on {threads} cores: {audio_s:.1f} s of speech, {len(text)} characters, "
                        f"median of {args.runs}")
    for column in ("task", "side", "seconds", "RTF", "× real time", "first byte (s)"):
        table.add_column(column, justify="left" if column in ("task", "side") else "right")
    for task, times in (("speech to text", stt), ("text to speech", tts)):
        for side, runs in times.items():
            median = statistics.median(runs)
            first = f"{statistics.median(first_bytes):.2f}" if "streamed" in side else ""
            table.add_row(task, side, f"{median:.2f}", f"{median / audio_s:.3f}", f"{audio_s / median:.1f}", first)
    console.print(table)


if __name__ == "__main__":
    main()
