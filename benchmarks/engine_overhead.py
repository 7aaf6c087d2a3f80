"""What Azurine's API costs over the raw engine: the same prompt and model, streamed through Azurine's
HTTP API and straight through llama-cpp-python in this process, runs interleaved.

    .venv/bin/python benchmarks/engine_overhead.py [--runs 5] [--max-tokens 128] [--deployments chat chat-small]

Both sides load the model with the same context size, batch size and thread count, decode greedily, and
have end-of-turn banned so that every run generates exactly --max-tokens tokens. Each pair of runs
uses a fresh prompt, so neither side answers from a cached prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

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


def end_of_turn_ban(llm) -> dict[str, float]:
    return {str(llm.token_eos()): -100.0}


def raw_run(llm, index: int, max_tokens: int) -> Run:
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for chunk in llm.create_chat_completion(messages=prompt(index), max_tokens=max_tokens, temperature=0,
                                            stream=True, logit_bias={int(k): v for k, v in
                                                                     end_of_turn_ban(llm).items()}):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
            count += 1
    return Run((first - start) * 1000, (count - 1) / (last - first), count)


def azurine_run(http: httpx.Client, deployment: str, index: int, max_tokens: int, bias: dict[str, float]) -> Run:
    body = {"messages": prompt(index), "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "logit_bias": bias}
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    with http.stream("POST", f"/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21",
                     headers={"api-key": API_KEY}, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                count += 1
    return Run((first - start) * 1000, (count - 1) / (last - first), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--deployments", nargs="+", default=["chat", "chat-small"], choices=sorted(MODELS))
    args = parser.parse_args()
    console = Console(width=120)

    from llama_cpp import Llama

    catalog = load_catalog()
    data = Path(tempfile.mkdtemp(prefix="azurine-bench-")) / "data"
    server = start_server(data, env={"AZURINE_THREADS": str(THREADS)})
    table = Table(title=f"engine overhead: {args.runs} runs × {args.max_tokens} tokens, {THREADS} threads, "
                        "medians")
    for column in ("deployment", "raw tok/s", "azurine tok/s", "tok/s ratio", "raw TTFT ms", "azurine TTFT ms",
                   "TTFT Δ ms (paired)"):
        table.add_column(column, justify="right")
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            for deployment in args.deployments:
                spec = catalog.get(MODELS[deployment])
                assert spec is not None
                llm = Llama(model_path=str(spec.path_in(default_models_dir())), n_ctx=spec.context_length,
                            n_threads=THREADS, n_batch=512, verbose=False)
                bias = end_of_turn_ban(llm)
                # warm both: model load, first-use allocations
                raw_run(llm, -1, 8)
                azurine_run(http, deployment, -1, 8, bias)
                raw: list[Run] = []
                served: list[Run] = []
                with console.status(f"{deployment}: interleaved runs") as status:
                    for index in range(args.runs):
                        status.update(f"{deployment}: run {index + 1} of {args.runs}")
                        # alternate which side goes first, so drift in the machine's load hits both alike
                        if index % 2 == 0:
                            raw.append(raw_run(llm, index, args.max_tokens))
                            served.append(azurine_run(http, deployment, index, args.max_tokens, bias))
                        else:
                            served.append(azurine_run(http, deployment, index, args.max_tokens, bias))
                            raw.append(raw_run(llm, index, args.max_tokens))
                del llm
                raw_tps = statistics.median(r.tokens_per_s for r in raw)
                az_tps = statistics.median(r.tokens_per_s for r in served)
                raw_ttft = statistics.median(r.ttft_ms for r in raw)
                az_ttft = statistics.median(r.ttft_ms for r in served)
                # each pair ran back to back on the same prompt: their difference is the API's own cost
                ttft_delta = statistics.median(a.ttft_ms - r.ttft_ms for a, r in zip(served, raw, strict=True))
                assert all(r.tokens == args.max_tokens for r in raw + served), "runs generated unequal lengths"
                table.add_row(deployment, f"{raw_tps:.1f}", f"{az_tps:.1f}", f"{az_tps / raw_tps:.3f}",
                              f"{raw_ttft:.1f}", f"{az_ttft:.1f}", f"{ttft_delta:+.1f}")
    finally:
        stop(server.process)
    console.print(table)


if __name__ == "__main__":
    main()
