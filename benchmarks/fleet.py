"""Throughput of one gateway in front of 1, 2 and 3 model servers, as a ratio to one server.

    .venv/bin/python benchmarks/fleet.py [--servers 1,2,3] [--clients 6] [--requests 24] [--max-tokens 48]
        [--server-threads 1] [--capacity 2]

Three real `python -m llama_cpp.server` processes on the catalog's SmolLM2 GGUF (as tests/test_fleet.py starts
them: --n_threads 1, 1,024 tokens of context) stand for three regions; a gateway (`azurine serve`, region Brazil
South, no chat model installed, so every answer comes from a server) serves a GlobalStandard deployment. For each
number of servers N, a fresh subscription registers the first N (each `--capacity` sequences at once), and
--clients clients send --requests chat requests in all (non-streamed, greedy, every answer runs to --max-tokens:
the end-of-text tokens are biased away), each prompt its own so no server answers from another's cached prefix.
One warm-up request per server comes first and is not counted. Columns: completion tokens per second over the wall
time from the first request to the last answer, all clients together; p50 and p99 latency per request; how the
requests spread over the servers' regions (`x-ms-region`); the ratio of tok/s to one server's.

What the ratio can and cannot show: each server decodes on one thread, so N servers need N cores, and the gateway
(its routing, content filter and HTTP relay) needs some more. On a 2-core machine the third server shares cores
with the other two and the gateway, so the ratio at 3 says that routing spreads the load and adds no bottleneck of
its own; it cannot show 3× scaling, which needs a core per server (or servers on their own machines, as in a real
fleet). The ratio at 2 is bounded by the gateway's share of the two cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # decoding threads sleep between steps rather than spin

from conftest import API_VERSION, Server, free_port, stop  # noqa: E402
from test_fleet import (  # noqa: E402
    NO_END,
    ModelServer,
    Tenant,
    arm,
    health,
    register,
    running,
    start_gateway,
    tenant,
)

REGIONS = ("eastus", "westeurope", "japaneast")
REQUEST_TIMEOUT_S = 600.0


@contextmanager
def model_servers(count: int, threads: int, logs: Path) -> Iterator[list[ModelServer]]:
    servers = [ModelServer(free_port(), logs / f"server-{i}.log", threads) for i in range(count)]
    with running(servers):
        yield servers


@contextmanager
def gateway(root: Path) -> Iterator[Server]:
    running = start_gateway(root)
    try:
        yield running
    finally:
        stop(running.process)


@dataclass(frozen=True)
class Answer:
    seconds: float
    tokens: int
    region: str


def ask(gate: Server, who: Tenant, prompt: str, max_tokens: int) -> Answer:
    started = time.perf_counter()
    response = httpx.post(
        f"{gate.url}/accounts/{who.account}/openai/deployments/global/chat/completions?api-version={API_VERSION}",
        headers={"api-key": who.key}, timeout=REQUEST_TIMEOUT_S,
        json={"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0,
              "logit_bias": NO_END})
    if response.status_code != 200:  # said whole: a refusal's body says which stage refused
        raise RuntimeError(f"the gateway answered {response.status_code}: {response.text}")
    return Answer(time.perf_counter() - started, response.json()["usage"]["completion_tokens"],
                  response.headers.get("x-ms-region", ""))


@dataclass(frozen=True)
class Level:
    servers: int
    wall_s: float
    answers: list[Answer]

    @property
    def tokens_per_s(self) -> float:
        return sum(a.tokens for a in self.answers) / self.wall_s


def run_level(gate: Server, servers: list[ModelServer], clients: int, requests: int, max_tokens: int,
              capacity: int) -> Level:
    who = tenant(gate, "eastus", ("global", "GlobalStandard"))
    for i, server in enumerate(servers):
        register(gate, who.subscription, f"bench-{i}", server.url, REGIONS[i], capacity)
    deadline = time.monotonic() + 120
    while not all(health(gate, who.subscription, f"bench-{i}")["lastProbe"] for i in range(len(servers))):
        if time.monotonic() > deadline:
            raise SystemExit("the gateway never probed the model servers")
        time.sleep(0.2)
    with ThreadPoolExecutor(len(servers)) as pool:  # one warm-up each: not counted
        list(pool.map(lambda i: ask(gate, who, f"Warm up {i}.", 4), range(len(servers))))
    prompts = [f"Request {n} ({uuid.uuid4().hex[:6]}): write about the number {n}." for n in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda p: ask(gate, who, p, max_tokens), prompts))
    wall = time.perf_counter() - started
    for i in range(len(servers)):
        arm(gate, "DELETE", f"/subscriptions/{who.subscription}/providers/Azurine.Fleet/modelServers/bench-{i}"
                            "?api-version=2025-06-01")
    return Level(len(servers), wall, answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="1,2,3", help="numbers of model servers, comma-separated")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--requests", type=int, default=24, help="requests per level, all clients together")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--server-threads", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=2, help="each server's sequences at once")
    args = parser.parse_args()
    counts = [int(n) for n in args.servers.split(",")]
    if not counts or min(counts) < 1 or max(counts) > len(REGIONS):
        raise SystemExit(f"--servers takes numbers from 1 to {len(REGIONS)}")

    levels: list[Level] = []
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp) / "gateway") as gate, \
            model_servers(max(counts), args.server_threads, Path(tmp)) as servers:
        for count in counts:
            levels.append(run_level(gate, servers[:count], args.clients, args.requests, args.max_tokens,
                                    args.capacity))
    base = next((lv.tokens_per_s for lv in levels if lv.servers == 1), levels[0].tokens_per_s)
    table = Table(title=f"one gateway, N model servers (SmolLM2, {args.server_threads} thread each, capacity "
                        f"{args.capacity}): {args.requests} requests of {args.max_tokens} tokens from "
                        f"{args.clients} clients, {os.cpu_count()} cores")
    for column in ("servers", "tok/s", "p50 s", "p99 s", "requests by region", "× one server"):
        table.add_column(column, justify="right")
    for level in levels:
        seconds = sorted(a.seconds for a in level.answers)
        spread = Counter(a.region for a in level.answers)
        table.add_row(str(level.servers), f"{level.tokens_per_s:.1f}", f"{statistics.median(seconds):.2f}",
                      f"{seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]:.2f}",
                      ", ".join(f"{region} {n}" for region, n in sorted(spread.items())),
                      f"{level.tokens_per_s / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
