"""What Azurine's API costs over the raw engine: the same prompt and model, streamed through Azurine's
HTTP API and straight through llama-cpp-python in this process, runs interleaved.

    .venv/bin/python benchmarks/engine_overhead.py [--runs 11] [--ttft-runs 31] [--max-tokens 128]
        [--deployments chat chat-small] [--show-runs]

Both sides load the model with the same context size, batch size, thread count and OMP_WAIT_POLICY
(passive unless set), decode greedily, and have end-of-turn banned so that every run generates exactly
--max-tokens tokens. Each pair of runs uses a fresh prompt, so neither side answers from a cached prompt.

Azurine's deployments keep their default content-filter policy, as users get them: its stream releases
text in screened windows of several tokens, not a chunk per token. So tokens are counted, not chunks:
Azurine's from the stream's final `usage` chunk (`stream_options.include_usage`), the raw engine's by a
logits processor that sees every sampled token (llama-cpp-python's stream carries no usage). Generation
tokens/s is the tokens after the first text chunk (its text re-tokenized) over the time from the first text
chunk to the last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.status import Status
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# OpenMP's threads busy-wait between decoding steps by default; where other work shares the cores that slows
# decoding 5-10x, and unevenly between two processes. Both sides here sleep instead, unless told otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from azurine.catalog import load_catalog  # noqa: E402
from azurine.config import default_models_dir  # noqa: E402
from conftest import API_KEY, start_server, stop  # noqa: E402

MODELS = {"chat": "Qwen2.5-Coder-0.5B-Instruct", "chat-small": "SmolLM2-135M-Instruct"}
THREADS = int(os.environ.get("AZURINE_THREADS", 0)) or os.cpu_count() or 1


@dataclass
class Run:
    ttft_ms: float
    tokens_per_s: float
    tokens: int


def prompt(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {index}. Explain how a hash map works, step by step."}]


def end_of_turn_ban(llm) -> dict[str, int]:
    return {str(llm.token_eos()): -100}


def run_of(llm, start: float, first: float, last: float, first_text: str, tokens: int) -> Run:
    """`tokens` generated; those after the first text chunk, over the time from it to the last chunk."""
    after_first = tokens - len(llm.tokenize(first_text.encode(), add_bos=False, special=False))
    return Run((first - start) * 1000, after_first / (last - first) if last > first else 0.0, tokens)


def raw_run(llm, index: int, max_tokens: int) -> Run:
    from llama_cpp import LogitsProcessorList

    eos = llm.token_eos()
    sampled = 0

    # one call per sampled token; it bans end-of-turn itself, since llama-cpp-python drops a logits
    # processor passed beside logit_bias
    def count_and_ban(_input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        nonlocal sampled
        sampled += 1
        scores[eos] -= 100.0
        return scores

    start = time.perf_counter()
    first = last = 0.0
    first_text = ""
    for chunk in llm.create_chat_completion(messages=prompt(index), max_tokens=max_tokens, temperature=0,
                                            stream=True, logits_processor=LogitsProcessorList([count_and_ban])):
        if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
            last = time.perf_counter()
            first, first_text = (first, first_text) if first else (last, text)
    return run_of(llm, start, first, last, first_text, sampled)


def azurine_run(llm, http: httpx.Client, deployment: str, index: int, max_tokens: int,
                bias: dict[str, int]) -> Run:
    body = {"messages": prompt(index), "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "logit_bias": bias, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = last = 0.0
    first_text = ""
    tokens = 0
    with http.stream("POST", f"/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21",
                     headers={"api-key": API_KEY}, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk["choices"]
            if choices and (text := (choices[0].get("delta") or {}).get("content")):
                last = time.perf_counter()
                first, first_text = (first, first_text) if first else (last, text)
    return run_of(llm, start, first, last, first_text, tokens)


def interleaved(count: int, raw: Callable[[int], Run], served: Callable[[int], Run], status: Status,
                what: str) -> tuple[list[Run], list[Run]]:
    """Run both sides `count` times, alternating which goes first so drift in load hits both alike."""
    raw_runs: list[Run] = []
    served_runs: list[Run] = []
    for index in range(count):
        status.update(f"{what}: pair {index + 1} of {count}")
        if index % 2 == 0:
            raw_runs.append(raw(index))
            served_runs.append(served(index))
        else:
            served_runs.append(served(index))
            raw_runs.append(raw(index))
    return raw_runs, served_runs


def measure(deployment: str, http: httpx.Client, args: argparse.Namespace, console: Console) -> list[str]:
    """One table row: both sides on one deployment's model."""
    from llama_cpp import Llama

    spec = load_catalog().get(MODELS[deployment])
    assert spec is not None
    llm = Llama(model_path=str(spec.path_in(default_models_dir())), n_ctx=spec.context_length,
                n_threads=THREADS, n_batch=512, verbose=False)
    bias = end_of_turn_ban(llm)
    # warm both: model load, first-use allocations
    raw_run(llm, -1, 8)
    azurine_run(llm, http, deployment, -1, 8, bias)
    with console.status(f"{deployment}: interleaved runs") as status:
        # generation speed: a few long answers
        raw, served = interleaved(
            args.runs, lambda i: raw_run(llm, i, args.max_tokens),
            lambda i: azurine_run(llm, http, deployment, i, args.max_tokens, bias), status, "generation")
        # time to first token: many short answers, since one prompt evaluation varies by tens of ms
        raw_first, served_first = interleaved(
            args.ttft_runs, lambda i: raw_run(llm, 1000 + i, 2),
            lambda i: azurine_run(llm, http, deployment, 1000 + i, 2, bias), status, "first token")
    assert all(r.tokens == args.max_tokens for r in raw + served), "runs generated unequal lengths"
    raw_tps = statistics.median(r.tokens_per_s for r in raw)
    az_tps = statistics.median(r.tokens_per_s for r in served)
    # each pair ran back to back on the same prompt: their difference is the API's own cost
    deltas = [a.ttft_ms - r.ttft_ms for a, r in zip(served_first, raw_first, strict=True)]
    if args.show_runs:
        console.print(f"{deployment} paired TTFT differences, ms: " + ", ".join(f"{d:+.1f}" for d in deltas))
    return [deployment, f"{raw_tps:.1f}", f"{az_tps:.1f}", f"{az_tps / raw_tps:.3f}",
            f"{statistics.median(r.ttft_ms for r in raw_first):.1f}",
            f"{statistics.median(r.ttft_ms for r in served_first):.1f}", f"{statistics.median(deltas):+.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--deployments", nargs="+", default=["chat", "chat-small"], choices=sorted(MODELS))
    parser.add_argument("--ttft-runs", type=int, default=31, help="short paired runs that measure TTFT")
    parser.add_argument("--show-runs", action="store_true", help="print every pair's TTFT difference")
    args = parser.parse_args()
    console = Console(width=120)

    data = Path(tempfile.mkdtemp(prefix="azurine-bench-")) / "data"
    server = start_server(data, env={"AZURINE_THREADS": str(THREADS)})
    table = Table(title=f"engine overhead, {THREADS} threads, medians: tok/s over {args.runs} pairs of "
                        f"{args.max_tokens}-token answers, TTFT over {args.ttft_runs} pairs")
    for column in ("deployment", "raw tok/s", "azurine tok/s", "tok/s ratio", "raw TTFT ms", "azurine TTFT ms",
                   "TTFT Δ ms (paired)"):
        table.add_column(column, justify="right")
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            for deployment in args.deployments:
                table.add_row(*measure(deployment, http, args, console))
    finally:
        stop(server.process)
    console.print(table)


if __name__ == "__main__":
    main()
