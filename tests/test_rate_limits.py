"""Standard-family rate limits: Azure's windows, 429 bodies and headers, shared across replicas by Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from azurine.quota.limiter import Limits, MemoryLimiter, RedisLimiter
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, start_server, stop
from test_cancellation import metric

REDIS_URL = "redis://127.0.0.1:6379/0"
WORDS = "word " * 100  # 500 characters: charged as 125 tokens


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_windows_reset_and_refusals_cost_nothing() -> None:
    clock = Clock(1000.0)
    limiter = MemoryLimiter(clock)
    limits = Limits(requests=2, tokens=100)
    first = limiter.admit_now("d", limits, 60)
    assert first.admitted and first.remaining_requests == 1 and first.remaining_tokens == 40
    refused = limiter.admit_now("d", limits, 50)
    assert not refused.admitted and refused.limited_by == "tokens" and refused.remaining_tokens == 40
    assert refused.reset_tokens_s == pytest.approx(20.0)  # 1000 s is 40 s into its minute
    assert limiter.admit_now("d", limits, 40).admitted
    calls = limiter.admit_now("d", limits, 0)
    assert not calls.admitted and calls.limited_by == "requests"
    clock.now = 1010.0  # a new 10-second window: calls again, but the minute's tokens are spent
    assert limiter.admit_now("d", limits, 1).limited_by == "tokens"
    clock.now = 1020.0
    assert limiter.admit_now("d", limits, 100).admitted


def test_redis_admits_atomically_across_clients() -> None:
    key = f"test-{uuid.uuid4()}"
    limits = Limits(requests=1000, tokens=50)

    async def burst() -> int:
        limiters = [RedisLimiter(REDIS_URL) for _ in range(3)]
        results = await asyncio.gather(*(limiters[i % 3].admit(key, limits, 1) for i in range(120)))
        for limiter in limiters:
            await limiter.close()
        return sum(r.admitted for r in results)

    admitted = asyncio.run(burst())
    # every admission happened in one minute window unless the burst straddled a minute's end
    assert admitted == 50 or (50 < admitted <= 100 and time.time() % 60 < 5)


def add_deployment(data_dir_or_url: Path | str, model: str, capacity: int, sku: str = "Standard") -> str:
    url = data_dir_or_url if isinstance(data_dir_or_url, str) else f"sqlite:///{data_dir_or_url / 'azurine.db'}"
    store = StateStore(make_engine(url))
    account = store.first_account()
    assert account is not None
    name = f"limited-{uuid.uuid4().hex[:8]}"
    store.create_deployment(account.id, name, model_name=model, model_version="1", model_format="x",
                            sku_name=sku, sku_capacity=capacity)
    return name


def at_window_start(window: int = 10, clock: float | None = None) -> None:
    """Wait for a fresh window, so that a short burst is judged in one window only."""
    now = clock if clock is not None else time.time()
    time.sleep(window - now % window + 0.05)


def embed(server: Server, deployment: str, inputs: object, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/openai/deployments/{deployment}/embeddings?api-version={API_VERSION}",
                      headers={"api-key": key or server.key}, json={"input": inputs}, timeout=60)


def test_call_limit_answers_azures_429(server: Server) -> None:
    deployment = add_deployment(server.data_dir, "all-MiniLM-L6-v2", capacity=1)
    assert embed(server, "embeddings", "warm").status_code == 200  # the model loads outside the window
    at_window_start()
    first = embed(server, deployment, "hello")
    second = embed(server, deployment, "hello")
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 1000 - 2
    assert second.status_code == 429
    message = second.json()["error"]["message"]
    assert second.json()["error"]["code"] == "429"
    assert message.startswith(f"Requests to the Embeddings_Create Operation under Azure OpenAI API version "
                              f"{API_VERSION} have exceeded call rate limit of your current OpenAI S0 pricing tier. "
                              "Please retry after ")
    assert message.endswith("Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
                            "increase the default rate limit.")
    wait = int(second.headers["retry-after"])
    assert 1 <= wait <= 10 and f"retry after {wait} seconds" in message
    assert 0 < int(second.headers["retry-after-ms"]) <= 10_000
    assert second.headers["x-ratelimit-reset-requests"] == str(wait)
    assert second.headers["apim-request-id"]


def test_token_limit_is_charged_with_the_estimate(server: Server) -> None:
    deployment = add_deployment(server.data_dir, "all-MiniLM-L6-v2", capacity=1)
    too_big = embed(server, deployment, [WORDS] * 9)  # 1,125 estimated tokens > 1,000 a minute
    assert too_big.status_code == 429
    assert "exceeded token rate limit" in too_big.json()["error"]["message"]
    assert "x-ratelimit-reset-tokens" in too_big.headers
    fits = embed(server, deployment, [WORDS] * 8)  # 1,000: exactly the minute's tokens
    assert fits.status_code == 200 and fits.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_sdk_paces_itself_by_the_headers(server: Server) -> None:
    deployment = add_deployment(server.data_dir, "all-MiniLM-L6-v2", capacity=1)
    client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=server.key, api_version=API_VERSION,
                                max_retries=2)
    before = metric(server, "azurine_rate_limited_total", deployment=deployment, limit="requests")
    assert client.embeddings.create(model=deployment, input="one").data
    assert client.embeddings.create(model=deployment, input="two").data  # waited for the next window
    assert metric(server, "azurine_rate_limited_total", deployment=deployment, limit="requests") >= before + 1


def test_every_answer_carries_what_remains(azure: openai.AzureOpenAI) -> None:
    raw = azure.chat.completions.with_raw_response.create(
        model="chat-small", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < 250
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 250_000
    assert raw.headers["x-ratelimit-limit-tokens"] == "250000"
    with azure.chat.completions.with_streaming_response.create(
            model="chat-small", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True) as stream:
        assert "x-ratelimit-remaining-tokens" in stream.headers


@pytest.fixture()
def replicas_on_redis(database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    env = {"AZURINE_DATABASE_URL": database_url, "AZURINE_REDIS_URL": REDIS_URL}
    servers: list[Server] = []
    try:
        for name in ("a", "b", "c"):
            servers.append(start_server(tmp_path / name, env=env))
        yield servers
    finally:
        for running in servers:
            stop(running.process)


def test_three_replicas_share_one_limit(replicas_on_redis: list[Server], database_url: str) -> None:
    deployment = add_deployment(database_url, "all-MiniLM-L6-v2", capacity=3)
    for server in replicas_on_redis:  # warm each replica's model, outside the measured window
        assert embed(server, "embeddings", "warm").status_code == 200
    seconds, micros = redis.Redis.from_url(REDIS_URL).time()
    at_window_start(clock=seconds + micros / 1e6)
    answers = [embed(server, deployment, "x").status_code for _ in range(3) for server in replicas_on_redis]
    # 3 requests per 10 seconds for the deployment in total, not 3 per replica
    assert sorted(answers) == [200, 200, 200, 429, 429, 429, 429, 429, 429]


def test_an_unreachable_redis_fails_closed(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"AZURINE_REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        answer = embed(server, "embeddings", "hi")
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "ServiceUnavailable"
        assert answer.headers["retry-after"] == "1"
    finally:
        stop(server.process)
