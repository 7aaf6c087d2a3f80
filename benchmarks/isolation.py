"""Does a provisioned deployment keep its latency while a standard deployment on the same engine is flooded?

    .venv/bin/python benchmarks/isolation.py [--model Qwen2.5-Coder-0.5B-Instruct] [--samples 30] [--rounds 2]
        [--peer-samples 8] [--flood-clients 6] [--flood-max-tokens 64] [--prompt-words 60]

One `azurine serve` (embedded defaults) gets three deployments of the same model, so all of them share one
engine: a provisioned one (ProvisionedManaged, enough PTUs never to be refused), a standard one that is
flooded, and a second standard one, the peer, which gets the same treatment as the provisioned one but
shares the flooded deployment's class.

A probe sends streamed chat requests one after another (each with its own ~--prompt-words words of prompt,
so that no request is answered from another's evaluated prefix; 8 tokens of answer; a random pause of 0.2 to
0.6 s between requests, so arrivals fall at every phase of the engine's steps) and times the first token.
It runs, in each round: on the provisioned deployment with the engine otherwise idle ("alone"), then on the
provisioned deployment while --flood-clients clients keep the standard deployment's queue full of streamed
--flood-max-tokens-token answers ("flooded"), then --peer-samples times on the peer under the same flood
("peer, flooded": each of its requests waits for its turn among the flood's, so fewer samples). Rounds
alternate so that drift on a shared machine falls on every phase alike. Ratios compare with "alone".
The default run takes about 8 minutes on two cores.

Target (issue: isolation): the provisioned deployment's flooded p99 within 1.25× of its p99 alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from azurine.storage.database import make_engine  # noqa: E402
from azurine.storage.state import StateStore  # noqa: E402
from conftest import API_KEY, API_VERSION, Server, start_server, stop  # noqa: E402

WORDS = ("river stone lantern orchard copper meadow harbor violet thunder quiet garden signal marble winter "
         "ember canyon falcon silver desert willow").split()


@dataclass
class Flood:
    tokens: int = 0
    answers: int = 0
    errors: int = 0
    started: float = 0.0
    stopped: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def add_deployments(data_dir: Path, model: str) -> dict[str, str]:
    store = StateStore(make_engine(f"sqlite:///{data_dir / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    names = {}
    for role, sku, capacity in (("provisioned", "ProvisionedManaged", 100), ("flooded", "Standard", 1000),
                                ("peer", "Standard", 1000)):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        store.create_deployment(account.id, name, model_name=model, model_version="1", model_format="x",
                                sku_name=sku, sku_capacity=capacity)
        names[role] = name
    return names


def prompt(words: int, rng: random.Random) -> str:
    return f"Note {uuid.uuid4().hex}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + \
        ". Repeat the first three words."


def chat_url(server: Server, deployment: str) -> str:
    return f"{server.url}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


async def first_token(http: httpx.AsyncClient, url: str, content: str, max_tokens: int) -> tuple[float, int, int]:
    """(seconds to the first token, answer tokens, status) of one streamed request."""
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": True,
            "temperature": 0, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    ttft, tokens = float("nan"), 0
    async with http.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return ttft, 0, response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content") and ttft != ttft:
                    ttft = time.perf_counter() - started
    return ttft, tokens, 200


async def probe(server: Server, deployment: str, samples: int, words: int, rng: random.Random,
                console: Console, label: str) -> list[float]:
    times: list[float] = []
    async with httpx.AsyncClient(timeout=600, headers={"api-key": API_KEY}) as http:
        for i in range(samples):
            ttft, _, status = await first_token(http, chat_url(server, deployment), prompt(words, rng), 8)
            if status != 200:
                raise SystemExit(f"{label}: the probe got {status}")
            times.append(ttft)
            console.log(f"{label}: {i + 1}/{samples} first token after {ttft * 1000:.0f} ms")
            await asyncio.sleep(rng.uniform(0.2, 0.6))
    return times


async def flood_client(server: Server, deployment: str, words: int, max_tokens: int, flood: Flood,
                       seed: int) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=600, headers={"api-key": API_KEY}) as http:
        while not flood.stop.is_set():
            try:
                _, tokens, status = await first_token(http, chat_url(server, deployment), prompt(words, rng),
                                                      max_tokens)
            except httpx.HTTPError:
                flood.errors += 1
                continue
            if status == 200:
                flood.answers += 1
                flood.tokens += tokens
            else:
                flood.errors += 1


async def flooded(server: Server, names: dict[str, str], measured: str, args: argparse.Namespace,
                  rng: random.Random, console: Console, label: str,
                  samples: int | None = None) -> tuple[list[float], Flood]:
    flood = Flood(started=time.perf_counter())
    clients = [asyncio.create_task(flood_client(server, names["flooded"], args.prompt_words, args.flood_max_tokens,
                                                flood, seed)) for seed in range(args.flood_clients)]
    await asyncio.sleep(3)  # the standard queue fills before the probe starts
    try:
        times = await probe(server, names[measured], samples or args.samples, args.prompt_words, rng, console,
                            label)
    finally:
        flood.stop.set()
        flood.stopped = time.perf_counter()
        await asyncio.gather(*clients)
    return times, flood


def p(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


async def run(server: Server, names: dict[str, str], args: argparse.Namespace, console: Console) -> None:
    rng = random.Random(7)
    # load the model's contexts for both classes outside the measurements
    await probe(server, names["provisioned"], 2, args.prompt_words, rng, console, "warm provisioned")
    await probe(server, names["peer"], 2, args.prompt_words, rng, console, "warm standard")
    alone: list[float] = []
    under_flood: list[float] = []
    peer: list[float] = []
    floods: list[Flood] = []
    for round_ in range(args.rounds):
        alone += await probe(server, names["provisioned"], args.samples, args.prompt_words, rng, console,
                             f"round {round_ + 1}: alone")
        times, flood = await flooded(server, names, "provisioned", args, rng, console, f"round {round_ + 1}: flooded")
        under_flood += times
        floods.append(flood)
        times, flood = await flooded(server, names, "peer", args, rng, console, f"round {round_ + 1}: peer, flooded",
                                     samples=args.peer_samples)
        peer += times
        floods.append(flood)

    table = Table(title=f"Time to first token, {args.model}, {args.rounds} rounds")
    for column in ("deployment", "condition", "n", "p50 ms", "p99 ms", "p50 ×alone", "p99 ×alone"):
        table.add_column(column, justify="right" if column not in ("deployment", "condition") else "left")
    base50, base99 = p(alone, 50), p(alone, 99)
    rows = (("provisioned", "alone", alone), ("provisioned", "standard flooded", under_flood),
            ("standard (peer)", "standard flooded", peer))
    for deployment, condition, values in rows:
        table.add_row(deployment, condition, str(len(values)), f"{p(values, 50):.0f}", f"{p(values, 99):.0f}",
                      f"{p(values, 50) / base50:.2f}", f"{p(values, 99) / base99:.2f}")
    console.print(table)
    tokens = sum(f.tokens for f in floods)
    seconds = sum(f.stopped - f.started for f in floods)
    console.print(f"flood: {sum(f.answers for f in floods)} standard answers, {tokens} tokens "
                  f"({tokens / seconds:.1f} tok/s while flooding), {sum(f.errors for f in floods)} errors")
    ratio = p(under_flood, 99) / base99
    verdict = "meets" if ratio <= 1.25 else "misses"
    console.print(f"provisioned p99 under flood / alone = {ratio:.2f} ({verdict} the 1.25× target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen2.5-Coder-0.5B-Instruct")
    parser.add_argument("--samples", type=int, default=30, help="probe requests per condition and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer-samples", type=int, default=8, help="probe requests on the peer per round")
    parser.add_argument("--flood-clients", type=int, default=6)
    parser.add_argument("--flood-max-tokens", type=int, default=64)
    parser.add_argument("--prompt-words", type=int, default=60)
    args = parser.parse_args()
    console = Console(width=120)
    data = Path(tempfile.mkdtemp(prefix="azurine-isolation-")) / "data"
    with console.status("starting azurine serve"):
        server = start_server(data)
    try:
        names = add_deployments(data, args.model)
        asyncio.run(run(server, names, args, console))
    finally:
        stop(server.process)


if __name__ == "__main__":
    main()
