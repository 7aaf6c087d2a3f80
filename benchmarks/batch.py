"""Does a batch use the engine at least as well as the same requests sent online, without slowing online traffic?

    .venv/bin/python benchmarks/batch.py [--lines 1000] [--max-tokens 16] [--online-sample 120]
        [--concurrency 1,2,4,8] [--probes 30]

One `azurine serve` (embedded defaults: the API and a batch worker in one process) gets a GlobalBatch
deployment of chat-small's model (SmolLM2-135M-Instruct).

1. Throughput. The same kind of requests as the batch's, --online-sample of them, are sent online to
   chat-small at each --concurrency. Then a --lines-line chat batch (each line its own short prompt,
   --max-tokens of answer at temperature 0) runs from `batches.create` until `completed`; tokens/s is its
   lines' prompt + completion tokens over that wall time. Then the best concurrency runs online once more.
   The peer is the mean of the best online rate before and after the batch, so that the machine drifting
   over the batch's minutes weighs on both sides alike. Ratio = batch ÷ peer.
2. Online latency. --probes streamed requests, one after another, to chat-small: first with the engine idle,
   then while a second batch of the same size runs; time to first token p50/p99, and the ratio to idle.

Targets (issue: files and batch): throughput ratio ≥ 1.0; online TTFT p99 while a batch runs within 1.25×
of idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import openai
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_helpers import add_batch_deployment, read_lines, sqlite_url  # noqa: E402
from conftest import API_VERSION, Server, start_server, stop  # noqa: E402

WORDS = ("river stone lantern orchard copper meadow harbor violet thunder quiet garden signal marble winter "
         "ember canyon falcon silver desert willow").split()
DEPLOYMENT = "chat-small-batch"


def prompt(rng: random.Random) -> str:
    return f"Write one sentence about a {rng.choice(WORDS)} and a {rng.choice(WORDS)} ({rng.randrange(10**6)})."


def batch_file(count: int, max_tokens: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = [{"custom_id": f"line-{i}", "method": "POST", "url": "/chat/completions",
              "body": {"model": DEPLOYMENT, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": prompt(rng)}]}} for i in range(count)]
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def run_batch(client: openai.AzureOpenAI, content: bytes, console: Console, label: str) -> tuple[float, int, int]:
    """Wall seconds from create to completed, tokens used, lines."""
    uploaded = client.files.create(file=("batch.jsonl", content), purpose="batch")
    started = time.perf_counter()
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions",
                                    completion_window="24h")
    total = created.request_counts.total if created.request_counts else 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        while True:
            batch = client.batches.retrieve(created.id)
            counts = batch.request_counts
            progress.update(task, completed=(counts.completed + counts.failed) if counts else 0)
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                break
            time.sleep(0.5)
    elapsed = time.perf_counter() - started
    assert batch.status == "completed", batch
    outputs = read_lines(client, batch.output_file_id)
    tokens = sum(line["response"]["body"]["usage"]["total_tokens"] for line in outputs)
    return elapsed, tokens, len(outputs)


async def online(server: Server, count: int, concurrency: int, max_tokens: int, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    prompts = [prompt(rng) for _ in range(count)]
    tokens = 0
    url = f"{server.url}/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}"
    async with httpx.AsyncClient(timeout=600, headers={"api-key": server.key}) as http:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in prompts:
            queue.put_nowait(text)

        async def client() -> None:
            nonlocal tokens
            while not queue.empty():
                text = queue.get_nowait()
                response = await http.post(url, json={"messages": [{"role": "user", "content": text}],
                                                      "max_tokens": max_tokens, "temperature": 0})
                response.raise_for_status()
                tokens += response.json()["usage"]["total_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - started, tokens


def first_token(http: httpx.Client, server: Server, text: str) -> float:
    url = f"{server.url}/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}"
    started = time.perf_counter()
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0, "stream": True}
    with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line.replace(" ", "") and '"content":""' not in \
                    line.replace(" ", ""):
                return time.perf_counter() - started
    return time.perf_counter() - started


def probe(server: Server, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    times = []
    with httpx.Client(timeout=600, headers={"api-key": server.key}) as http:
        for _ in range(count):
            times.append(first_token(http, server, prompt(rng)))
            time.sleep(rng.uniform(0.2, 0.6))
    return times


def p(values: list[float], q: int) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--online-sample", type=int, default=120)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    console = Console(width=120)
    data = Path(tempfile.mkdtemp(prefix="azurine-batch-")) / "data"
    server = start_server(data)
    try:
        add_batch_deployment(sqlite_url(data), DEPLOYMENT, capacity=100_000)
        client = server.azure(timeout=600)
        probe(server, 3, seed=0)  # load the model

        # the online sweep runs before the batch, and its best concurrency again after it: the peer is the mean of
        # the two, so that the machine drifting during the batch's minutes weighs on both sides alike
        rates = {}
        for level in (int(c) for c in args.concurrency.split(",")):
            seconds, used = asyncio.run(online(server, args.online_sample, level, args.max_tokens, 2))
            rates[level] = used / seconds
            console.log(f"online, {level} at a time: {rates[level]:.0f} tokens/s")
        best = max(rates, key=lambda level: rates[level])
        elapsed, tokens, lines = run_batch(client, batch_file(args.lines, args.max_tokens, 1), console,
                                           f"batch of {args.lines} lines")
        batch_rate = tokens / elapsed
        seconds, used = asyncio.run(online(server, args.online_sample, best, args.max_tokens, 6))
        after = used / seconds
        console.log(f"online again, {best} at a time: {after:.0f} tokens/s")
        peer = (rates[best] + after) / 2
        table = Table(title=f"throughput on SmolLM2-135M ({args.max_tokens}-token answers)")
        for column in ("how", "requests", "tokens/s", "÷ peer"):
            table.add_column(column)
        table.add_row(f"batch ({elapsed:.0f} s)", str(lines), f"{batch_rate:.0f}", f"{batch_rate / peer:.2f}")
        for level, rate in rates.items():
            table.add_row(f"online before, concurrency {level}", str(args.online_sample), f"{rate:.0f}",
                          f"{rate / peer:.2f}")
        table.add_row(f"online after, concurrency {best}", str(args.online_sample), f"{after:.0f}",
                      f"{after / peer:.2f}")
        table.add_row("peer: best online, mean of before and after", "", f"{peer:.0f}", "1.00")
        console.print(table)

        idle = probe(server, args.probes, seed=3)
        content = batch_file(args.lines, args.max_tokens, 4)
        uploaded = client.files.create(file=("batch.jsonl", content), purpose="batch")
        running = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions",
                                        completion_window="24h")
        time.sleep(2)  # let the worker fill its slots
        busy = probe(server, args.probes, seed=5)
        still = client.batches.retrieve(running.id).status
        client.batches.cancel(running.id)
        table = Table(title=f"online time to first token on chat-small, {args.probes} streamed probes")
        for column in ("engine", "p50 ms", "p99 ms", "p99 ÷ idle"):
            table.add_column(column)
        table.add_row("idle", f"{p(idle, 50):.0f}", f"{p(idle, 99):.0f}", "1.00")
        table.add_row(f"batch running ({still} at the end)", f"{p(busy, 50):.0f}", f"{p(busy, 99):.0f}",
                      f"{p(busy, 99) / p(idle, 99):.2f}")
        console.print(table)
    finally:
        stop(server.process)


if __name__ == "__main__":
    main()
