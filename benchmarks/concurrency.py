"""How Azurine serves many users at once, beside llama.cpp's own server on the same GGUF.

    .venv/bin/python benchmarks/concurrency.py [--deployment chat] [--clients 1,4,8,16] [--answers 2]
        [--max-tokens 64] [--slot-context 1024] [--filters default|off]

At each number of clients N, N clients each stream --answers chat answers, one after another: greedy, up to
--max-tokens tokens, `stream_options.include_usage` on. Every prompt is its own (the client, answer and a
subject come first in the message), so neither server answers from another request's cached prefix. The
two servers get the same prompts, one server after the other at each N (which goes first alternates):

- Azurine: `azurine serve` on a free port and a fresh data dir, its default deployments, so the deployment
  has the default content-filter policy (what users get); with --filters off, a deployment of the same model whose
  policy turns every filter off (what the filter costs is the difference between two runs);
- llama-server: `llama-server -np N` on the deployment's GGUF, N slots of --slot-context tokens each, built
  from the llama.cpp that llama-cpp-python vendors (benchmarks/llama_server.py; the first run builds it).

Both use the same thread count ($AZURINE_THREADS, else every core) and OMP_WAIT_POLICY (passive unless set).
Columns:

- tok/s: completion tokens, from each stream's final `usage` chunk, over the wall time from the first request
  sent to the last answer's end, all clients together;
- TTFT p50/p99: request sent to the first chunk carrying text;
- ITL p99: per answer, the gap between consecutive text-bearing chunks divided by the tokens the later chunk
  carries (its text re-tokenized with the model's vocabulary), counted once per token, so a held-back window
  of text counts as the tokens in it; gap p99 is the same gap undivided, the longest waits a reader sees.

Ratios are Azurine ÷ llama-server: above 1 is better for Azurine on tok/s, worse on the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# OpenMP's threads busy-wait between decoding steps by default; where other work shares the cores that slows
# decoding 5-10x, and unevenly between two processes. Both sides here sleep instead, unless told otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(ROOT / "benchmarks"))

from azurine.catalog import load_catalog  # noqa: E402
from azurine.config import default_models_dir  # noqa: E402
from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS  # noqa: E402
from conftest import API_KEY, API_VERSION, start_server, stop  # noqa: E402
from llama_server import llama_server, llama_server_binary  # noqa: E402
from safety import add_deployments  # noqa: E402

THREADS = int(os.environ.get("AZURINE_THREADS", 0)) or os.cpu_count() or 1
REQUEST_TIMEOUT_S = 300.0
LEVEL_TIMEOUT_S = 900.0  # one server at one N; Azurine answering 16 clients one at a time needs about a minute
SUBJECTS = ("a hash map", "a B-tree", "TCP congestion control", "a garbage collector", "a bloom filter",
            "public-key encryption", "a compiler's register allocator", "DNS resolution", "a CPU cache",
            "virtual memory", "a database index", "the Raft consensus protocol", "a JIT compiler",
            "a regular expression engine", "a load balancer", "gradient descent", "a file system journal",
            "an event loop", "copy-on-write", "a skip list")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]


@dataclass
class Answer:
    sent: float
    chunks: list[tuple[float, str]] = field(default_factory=list)  # (arrival, text) of text-bearing chunks
    tokens: int = 0  # completion tokens, from `usage`
    ended: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Summary:
    tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p99_ms: float
    gap_p99_ms: float
    answers: int
    errors: int


def prompt(level: int, client: int, answer: int) -> list[dict[str, str]]:
    subject = SUBJECTS[(client * 3 + answer) % len(SUBJECTS)]
    return [{"role": "user", "content": f"Request {level}.{client}.{answer}: explain how {subject} works, "
                                        "step by step, for a new engineer."}]


def chunk_text(chunk: dict) -> str:
    return "".join((choice.get("delta") or {}).get("content") or "" for choice in chunk.get("choices") or [])


async def stream(http: httpx.AsyncClient, target: Target, messages: list[dict[str, str]], max_tokens: int) -> Answer:
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    answer = Answer(sent=time.perf_counter())
    try:
        async with http.stream("POST", target.url, json=body, headers=target.headers) as response:
            if response.status_code != 200:
                answer.error = f"{response.status_code}: {(await response.aread())[:200]!r}"
                return answer
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if text := chunk_text(chunk):
                    answer.chunks.append((time.perf_counter(), text))
                if chunk.get("usage"):
                    answer.tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as error:
        answer.error = f"{type(error).__name__}: {error}"
    answer.ended = time.perf_counter()
    if answer.error is None and not answer.tokens:
        answer.error = "no usage chunk"
    return answer


async def run_level(target: Target, level: int, clients: int, answers: int,
                    max_tokens: int) -> tuple[float, list[Answer]]:
    """Wall seconds and every answer of `clients` clients streaming `answers` answers each."""
    async def client(index: int) -> list[Answer]:
        return [await stream(http, target, prompt(level, index, a), max_tokens) for a in range(answers)]

    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        started = time.perf_counter()
        per_client = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), LEVEL_TIMEOUT_S)
    return time.perf_counter() - started, [a for answers_of in per_client for a in answers_of]


def summarize(wall_s: float, answers: list[Answer], count_tokens: Callable[[str], int]) -> Summary:
    done = [a for a in answers if a.error is None and a.chunks]
    ttfts = [(a.chunks[0][0] - a.sent) * 1000 for a in done]
    gaps: list[float] = []
    per_token: list[float] = []
    for answer in done:
        for (before, _), (after, text) in zip(answer.chunks, answer.chunks[1:], strict=False):
            gap_ms = (after - before) * 1000
            tokens = max(1, count_tokens(text))
            gaps.append(gap_ms)
            per_token.extend([gap_ms / tokens] * tokens)

    def pct(values: list[float], q: int) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    return Summary(sum(a.tokens for a in done) / wall_s, pct(ttfts, 50), pct(ttfts, 99), pct(per_token, 99),
                   pct(gaps, 99), len(answers), len(answers) - len(done))


def measure(target: Target, level: int, clients: int, args: argparse.Namespace, count_tokens: Callable[[str], int],
            console: Console) -> Summary:
    console.log(f"{target.name}: {clients} client(s) × {args.answers} answers")
    wall_s, answers = asyncio.run(run_level(target, level, clients, args.answers, args.max_tokens))
    for answer in answers:
        if answer.error:
            console.log(f"[red]{target.name}: {answer.error}")
    return summarize(wall_s, answers, count_tokens)


def warm(target: Target) -> None:
    """Model load and first-use allocations, outside the measurement."""
    _, answers = asyncio.run(run_level(target, 0, 1, 1, 8))
    if answers[0].error:
        raise RuntimeError(f"{target.name} did not answer: {answers[0].error}")


def model_of(deployment: str) -> str:
    return next(d.model for d in DEFAULT_DEPLOYMENTS if d.name == deployment)


def row(name: str, s: Summary) -> list[str]:
    errors = f"{s.errors}/{s.answers}"
    return [name, f"{s.tokens_per_s:.1f}", f"{s.ttft_p50_ms:.0f}", f"{s.ttft_p99_ms:.0f}", f"{s.itl_p99_ms:.1f}",
            f"{s.gap_p99_ms:.1f}", errors]


def ratio_row(az: Summary, peer: Summary) -> list[str]:
    def r(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "-"

    return ["azurine ÷ llama-server", r(az.tokens_per_s, peer.tokens_per_s), r(az.ttft_p50_ms, peer.ttft_p50_ms),
            r(az.ttft_p99_ms, peer.ttft_p99_ms), r(az.itl_p99_ms, peer.itl_p99_ms), r(az.gap_p99_ms, peer.gap_p99_ms),
            ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    chat = [d.name for d in DEFAULT_DEPLOYMENTS if load_catalog().get(d.model).can("chat")]
    parser.add_argument("--deployment", default="chat", choices=chat)
    parser.add_argument("--clients", default="1,4,8,16", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--answers", type=int, default=2, help="answers each client streams, one after another")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slot-context", type=int, default=1024, help="llama-server's context per slot")
    parser.add_argument("--filters", choices=("default", "off"), default="default",
                        help="Azurine's content filters: the default policy (what users get) or none")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    console = Console(width=120)

    from llama_cpp import Llama

    spec = load_catalog().get(model_of(args.deployment))
    assert spec is not None
    gguf = spec.path_in(default_models_dir())
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)

    def count_tokens(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    binary = llama_server_binary(console)
    load_before = os.getloadavg()[0]
    data = Path(tempfile.mkdtemp(prefix="azurine-concurrency-")) / "data"
    server = start_server(data, env={"AZURINE_THREADS": str(THREADS)})
    deployment = args.deployment if args.filters == "default" else add_deployments(data, spec.name)["unfiltered"]
    azurine = Target("azurine", f"{server.url}/openai/deployments/{deployment}/chat/completions"
                                f"?api-version={API_VERSION}", {"api-key": API_KEY})
    results: dict[int, tuple[Summary, Summary]] = {}
    try:
        warm(azurine)
        for index, clients in enumerate(levels):
            level = index + 1
            with llama_server(gguf, clients, clients * args.slot_context, THREADS, binary) as url:
                peer = Target("llama-server", f"{url}/v1/chat/completions", {})
                warm(peer)
                # which server goes first alternates, so that drift on a shared machine falls on both alike
                if index % 2 == 0:
                    az = measure(azurine, level, clients, args, count_tokens, console)
                    theirs = measure(peer, level, clients, args, count_tokens, console)
                else:
                    theirs = measure(peer, level, clients, args, count_tokens, console)
                    az = measure(azurine, level, clients, args, count_tokens, console)
            results[clients] = (az, theirs)
    finally:
        stop(server.process)

    table = Table(title=f"{args.deployment} ({spec.name}), {THREADS} threads, content filters {args.filters}: each "
                        f"client streams {args.answers} answers of up to {args.max_tokens} tokens")
    for column in ("clients", "server", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p99 ms", "gap p99 ms",
                   "errors"):
        table.add_column(column, justify="right")
    for clients, (az, theirs) in results.items():
        table.add_row(str(clients), *row("azurine", az))
        table.add_row("", *row("llama-server", theirs))
        table.add_row("", *ratio_row(az, theirs), end_section=True)
    # other work on a shared machine slows both servers, and not alike: say how busy it was
    table.caption = (f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; 1-minute load average {load_before:.1f} at "
                     f"the start, {os.getloadavg()[0]:.1f} at the end")
    console.print(table)


if __name__ == "__main__":
    main()
