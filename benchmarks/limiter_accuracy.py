"""How exactly three replicas hold one Standard deployment to its quota: with Redis shared between them, and with
each counting in its own memory, under 50 clients that send as fast as they are let.

    .venv/bin/python benchmarks/limiter_accuracy.py [--seconds 60] [--memory-seconds 60] [--clients 50]
        [--capacity 20] [--chars 1000] [--threads 1] [--show-windows]

Six replicas of `azurine serve` share one new PostgreSQL database (dropped at the end): three with
AZURINE_REDIS_URL and three without, each trio with its own Standard deployment of all-MiniLM-L6-v2 of
--capacity (capacity req/10 s and capacity × 1000 tokens/min). Every request embeds the same --chars-long text,
charged exactly `embeddings_estimate` tokens, so that the token limit binds before the request limit does
(1,000 characters: 250 tokens, so 80 requests a minute against the 120 the request limit would allow); the
request limit still binds in each 10 s window until the minute's tokens run out. All replicas start and warm
their model first (one engine thread each, --threads); then the Redis trio is loaded, then the memory trio.

Method. Limits are fixed windows on the clock (Redis's clock, the same host's), so each backend's load starts
on a minute boundary (a 10 s one for runs under a minute), or at once if one passed under 2 s ago (printed),
and runs whole 10 s windows (--seconds rounded up to tens; tokens per minute only from whole minutes); the
memory trio's load starts where the Redis trio's ended. Clients go round-robin over their trio's replicas,
request by request; after a 429 a client sleeps for retry-after-ms (+5 ms) capped at 1 s. An admitted request
is counted in the window in which its answer arrived: admission happens between sending and answering, and once
a limit binds, a window's budget is spent within its first moments, so no admission falls late in a window. The
"ambiguous" column counts admitted requests sent in one window and answered in the next; when it is 0, every
count is exact. For the Redis trio, the minute's counter is also read back from Redis.

The default run takes 2¾ to 3¾ minutes: some 45 s to start and warm six replicas on two cores, 0 to 60 s of
waiting for a minute to start, then two minutes of load (one per backend, since a token-per-minute ratio needs
a whole clock minute; --memory-seconds 30 shortens it, at the cost of the memory trio's tokens/min).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.status import Status
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from azurine.quota.estimate import embeddings_estimate  # noqa: E402
from azurine.storage.database import make_engine  # noqa: E402
from azurine.storage.state import StateStore  # noqa: E402
from conftest import API_KEY, API_VERSION, Server, fresh_database, start_server, stop  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUEST_WINDOW_S, TOKEN_WINDOW_S = 10, 60
SENTENCE = "The quick brown fox jumps over the lazy dog while the rate limiter counts every token. "


@dataclass
class Tally:
    """What one backend's clients saw: admitted requests as (sent, answered) times, and the refusals."""

    admitted: list[tuple[float, float]] = field(default_factory=list)
    refused_tokens: int = 0
    refused_requests: int = 0
    errors: int = 0
    first_error: str = ""
    late_start_ms: float = 0.0

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


@dataclass
class Backend:
    name: str
    servers: list[Server]
    deployment: str
    deployment_id: str
    seconds: int


def add_deployment(database_url: str, capacity: int) -> tuple[str, str]:
    """A Standard deployment of the embeddings model on the first account: its name and id."""
    store = StateStore(make_engine(database_url))
    account = store.first_account()
    assert account is not None
    name = f"accuracy-{uuid.uuid4().hex[:8]}"
    store.create_deployment(account.id, name, model_name=MODEL, model_version="1", model_format="x",
                            sku_name="Standard", sku_capacity=capacity)
    record = store.deployment(account.id, name)
    assert record is not None
    return name, record.id


def embeddings_url(server: Server, deployment: str) -> str:
    return f"{server.url}/openai/deployments/{deployment}/embeddings?api-version={API_VERSION}"


async def warm(servers: list[Server]) -> None:
    """Load every replica's model outside the measured windows (on the unlimited-enough default deployment)."""
    async with httpx.AsyncClient(timeout=300, headers={"api-key": API_KEY}) as http:
        answers = await asyncio.gather(*(http.post(embeddings_url(s, "embeddings"), json={"input": "warm"})
                                         for s in servers))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]


async def client(index: int, backend: Backend, https: list[httpx.AsyncClient], text: str, end: float,
                 tally: Tally) -> None:
    turn = index
    while (now := time.time()) < end:
        replica = turn % len(backend.servers)
        turn += 1
        sent = now
        try:
            answer = await https[replica].post(embeddings_url(backend.servers[replica], backend.deployment),
                                               json={"input": text})
        except httpx.HTTPError as error:
            tally.error(f"{type(error).__name__}: {error}")
            await asyncio.sleep(0.1)
            continue
        answered = time.time()
        if answer.status_code == 200:
            tally.admitted.append((sent, answered))
        elif answer.status_code == 429:
            if answer.headers.get("policy-id") == "DeploymentRatelimit-Token":
                tally.refused_tokens += 1
            else:
                tally.refused_requests += 1
            wait = min(int(answer.headers.get("retry-after-ms", "1000")) / 1000 + 0.005, 1.0)
            await asyncio.sleep(max(0.0, min(wait, end - time.time())))
        else:
            tally.error(f"{answer.status_code}: {answer.text[:200]}")
            await asyncio.sleep(0.1)


async def load(backend: Backend, start: float, clients: int, text: str, status: Status) -> Tally:
    """`clients` clients from `start` (a window boundary) for the backend's seconds."""
    tally = Tally()
    end = start + backend.seconds
    # idle connections are dropped well before uvicorn's 5 s keep-alive ends, so no request races its close
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2)
    https = [httpx.AsyncClient(timeout=60, limits=limits, headers={"api-key": API_KEY}) for _ in backend.servers]
    try:
        await asyncio.sleep(max(0.0, start - time.time()))
        tally.late_start_ms = (time.time() - start) * 1000
        tasks = [asyncio.create_task(client(i, backend, https, text, end, tally)) for i in range(clients)]
        while not all(task.done() for task in tasks):
            status.update(f"{backend.name}: {max(0.0, end - time.time()):.0f} s left, {len(tally.admitted)} "
                          f"admitted, {tally.refused_tokens + tally.refused_requests} refused, {tally.errors} errors")
            await asyncio.wait(tasks, timeout=0.5)
        for task in tasks:
            task.result()
    finally:
        for http in https:
            await http.aclose()
    return tally


def redis_minute_tokens(deployment_id: str, minute_start: float) -> int:
    """The token counter RedisLimiter kept for that minute (its key lives two windows after its last charge)."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    try:
        index = int(minute_start * 1000) // (TOKEN_WINDOW_S * 1000)
        return int(connection.get(f"azurine:rl:{deployment_id}:tok:{index}") or 0)
    finally:
        connection.close()


def window_of(moment: float, start: float, width: int) -> int:
    return math.floor((moment - start) / width)


@dataclass
class Result:
    backend: str
    seconds: int
    per_ten: list[int]  # admitted requests in each whole 10 s window
    tokens_per_minute: list[int]  # admitted tokens in each whole minute
    redis_tokens: list[int]  # the Redis trio's own token counter for each whole minute
    tally: Tally
    ambiguous: int

    def cells(self, capacity: int) -> list[str]:
        tpm = capacity * 1000
        minutes = len(self.tokens_per_minute)
        mean_tokens = sum(self.tokens_per_minute) / minutes if minutes else None
        return [self.backend, f"{self.seconds}", f"{mean_tokens:,.0f}" if mean_tokens is not None else "—",
                f"{mean_tokens / tpm:.3f}" if mean_tokens is not None else "—",
                f"{sum(self.redis_tokens) / minutes / tpm:.3f}" if self.redis_tokens else "—",
                f"{self.peak_requests(capacity):.2f}", f"{sum(self.per_ten) / len(self.per_ten) / capacity:.2f}",
                f"{sum(self.per_ten):,}", f"{self.tally.refused_tokens:,}", f"{self.tally.refused_requests:,}",
                f"{self.tally.errors}", f"{self.ambiguous}"]

    def peak_requests(self, capacity: int) -> float:
        return max(self.per_ten) / capacity

    def mean_tokens(self) -> float | None:
        return sum(self.tokens_per_minute) / len(self.tokens_per_minute) if self.tokens_per_minute else None


def summarise(backend: Backend, tally: Tally, start: float, tokens: int, redis_tokens: list[int]) -> Result:
    """Admitted requests by the window their answer arrived in, whole windows only."""
    per_ten = [0] * (backend.seconds // REQUEST_WINDOW_S)
    ambiguous = 0
    for sent, answered in tally.admitted:
        window = window_of(answered, start, REQUEST_WINDOW_S)
        if 0 <= window < len(per_ten):
            per_ten[window] += 1
            ambiguous += window_of(sent, start, REQUEST_WINDOW_S) != window
    per_minute = [sum(per_ten[m * 6:(m + 1) * 6]) * tokens for m in range(backend.seconds // TOKEN_WINDOW_S)]
    return Result(backend.name, backend.seconds, per_ten, per_minute, redis_tokens, tally, ambiguous)


def start_together(data: Path, replicas: list[tuple[str, dict[str, str]]], servers: list[Server]) -> None:
    """Start replicas side by side, each added to `servers` (for stopping) even if another fails to start."""
    with ThreadPoolExecutor(len(replicas)) as pool:
        futures = [pool.submit(start_server, data / name, env) for name, env in replicas]
    failures: list[Exception] = []
    for future in futures:
        try:
            servers.append(future.result())
        except Exception as error:
            failures.append(error)
    if failures:
        raise failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="load on the Redis replicas (rounded up to 10 s)")
    parser.add_argument("--memory-seconds", type=int, default=None,
                        help="load on the memory replicas (rounded up to 10 s) [default: --seconds]")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--capacity", type=int, default=20, help="the Standard deployments' capacity")
    parser.add_argument("--chars", type=int, default=1000, help="length of the one text every request embeds")
    parser.add_argument("--threads", type=int, default=1,
                        help="engine threads (torch, llama.cpp) per replica: six must not oversubscribe two cores")
    parser.add_argument("--show-windows", action="store_true", help="print every window's admitted count")
    args = parser.parse_args()
    console = Console(width=120)
    text = (SENTENCE * (args.chars // len(SENTENCE) + 1))[:args.chars]
    tokens = embeddings_estimate([text]).total
    tens = [math.ceil(s / REQUEST_WINDOW_S) * REQUEST_WINDOW_S for s in (args.seconds, args.memory_seconds
                                                                          or args.seconds)]

    data = Path(tempfile.mkdtemp(prefix="azurine-bench-"))
    servers: list[Server] = []
    results: list[Result] = []
    began = time.time()
    ready = waited = stopping = 0.0
    with fresh_database("azurine_bench") as database_url:
        try:
            with console.status("starting 6 replicas on one PostgreSQL database") as status:
                threads = str(args.threads)
                in_memory = {"AZURINE_DATABASE_URL": database_url, "AZURINE_THREADS": threads,
                             "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
                on_redis = {**in_memory, "AZURINE_REDIS_URL": REDIS_URL}
                # the first one migrates the new database and creates the account; the rest start together
                servers.append(start_server(data / "redis-a", env=on_redis))
                redis_deployment, redis_id = add_deployment(database_url, args.capacity)
                memory_deployment, memory_id = add_deployment(database_url, args.capacity)
                start_together(data, [("redis-b", on_redis), ("redis-c", on_redis), ("memory-a", in_memory),
                                      ("memory-b", in_memory), ("memory-c", in_memory)], servers)
                status.update("warming every replica's model")
                asyncio.run(warm(servers))
                ready = time.time()
                backends = [Backend("redis", servers[:3], redis_deployment, redis_id, tens[0]),
                            Backend("memory", servers[3:], memory_deployment, memory_id, tens[1])]
                start = time.time()
                for backend in backends:
                    # a minute's start if the load covers a minute, else a 10 s window's; at once if just past
                    align = TOKEN_WINDOW_S if backend.seconds >= TOKEN_WINDOW_S else REQUEST_WINDOW_S
                    start = math.floor(start / align) * align
                    if time.time() - start > 2:
                        start += align
                    status.update(f"{backend.name}: waiting {start - time.time():.0f} s for a window's start")
                    waited += max(0.0, start - time.time())
                    tally = asyncio.run(load(backend, start, args.clients, text, status))
                    minutes = backend.seconds // TOKEN_WINDOW_S
                    redis_tokens = ([redis_minute_tokens(backend.deployment_id, start + m * TOKEN_WINDOW_S)
                                     for m in range(minutes)] if backend.name == "redis" else [])
                    results.append(summarise(backend, tally, start, tokens, redis_tokens))
                    if args.show_windows:
                        console.print(f"{backend.name}: admitted per 10 s window: {results[-1].per_ten}; tokens "
                                      f"per minute: {results[-1].tokens_per_minute}"
                                      + (f"; Redis's own counters: {redis_tokens}" if redis_tokens else ""))
                    if tally.first_error:
                        console.print(f"{backend.name}: first error: {tally.first_error}")
                    start += backend.seconds
        finally:
            stopping = time.time()
            for server in servers:  # all at once: each takes a moment to shut down
                server.process.terminate()
            for server in servers:
                stop(server.process)

    tpm = args.capacity * 1000
    table = Table(title=f"limiter accuracy: 3 replicas a backend, {args.clients} clients, capacity {args.capacity} "
                        f"({args.capacity} req/10 s, {tpm:,} tokens/min), {tokens} tokens a request")
    for column in ("backend", "s", "tok/min", "÷ TPM", "Redis's ÷ TPM", "max req/10 s ÷ cap",
                   "mean ÷ cap", "200s", "429 tok", "429 req", "errors", "ambiguous"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(*result.cells(args.capacity))
    notes = []
    if len(results) == 2:
        on_redis, in_memory = results
        redis_tokens, memory_tokens = on_redis.mean_tokens(), in_memory.mean_tokens()
        if redis_tokens and memory_tokens is not None:
            notes.append(f"memory ÷ Redis: {memory_tokens / redis_tokens:.2f}× the tokens a minute")
        if on_redis.peak_requests(args.capacity):
            notes.append(f"{in_memory.peak_requests(args.capacity) / on_redis.peak_requests(args.capacity):.2f}× "
                         "the requests in the fullest 10 s")
    notes.append(f"the token limit allows {tpm // tokens} requests a minute, the request limit "
                 f"{args.capacity * TOKEN_WINDOW_S // REQUEST_WINDOW_S}")
    table.caption = "; ".join(notes)
    console.print(table)
    if ready:
        console.print(f"{time.time() - began:.0f} s in all: {ready - began:.0f} s starting and warming 6 replicas, "
                      f"{waited:.0f} s waiting for windows to start, {stopping - ready - waited:.0f} s of load, "
                      f"{time.time() - stopping:.0f} s stopping and dropping the database; load began "
                      + ", ".join(f"{r.tally.late_start_ms:.0f} ms after its window opened ({r.backend})"
                                  for r in results))


if __name__ == "__main__":
    main()
