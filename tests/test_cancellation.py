"""A client that goes away stops its generation: the model is free for the next request."""

from __future__ import annotations

import re
import time

import httpx

from conftest import API_VERSION, Server

CHAT = f"/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}"
# <|im_end|> is SmolLM2's end-of-turn token: banning it makes the model write until max_tokens
NEVER_ENDING = {"messages": [{"role": "user", "content": "Count upwards from one."}], "max_tokens": 4000,
                "temperature": 0, "logit_bias": {"2": -100}}
MODEL = "SmolLM2-135M-Instruct"


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(server.metrics_url).text
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for_cancelled(server: Server, before: float, deadline_s: float = 60) -> float:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        now = metric(server, "azurine_generations_total", model=MODEL, outcome="cancelled")
        if now > before:
            return now
        time.sleep(0.1)
    raise AssertionError("the generation was not cancelled")


def test_closing_a_stream_cancels_the_generation(server: Server) -> None:
    before = metric(server, "azurine_generations_total", model=MODEL, outcome="cancelled")
    tokens_before = metric(server, "azurine_generated_tokens_total", model=MODEL)
    with httpx.Client(base_url=server.url, timeout=60) as http, http.stream(
        "POST", CHAT, headers={"api-key": server.key}, json={**NEVER_ENDING, "stream": True}
    ) as response:
        for count, _ in enumerate(response.iter_lines()):
            if count > 10:
                break
    wait_for_cancelled(server, before)
    produced = metric(server, "azurine_generated_tokens_total", model=MODEL) - tokens_before
    assert 0 < produced < 4000


def test_a_non_streaming_client_that_leaves_cancels_too(server: Server) -> None:
    before = metric(server, "azurine_generations_total", model=MODEL, outcome="cancelled")
    try:
        httpx.post(f"{server.url}{CHAT}", headers={"api-key": server.key}, json=NEVER_ENDING, timeout=1.5)
    except httpx.ReadTimeout:
        pass
    wait_for_cancelled(server, before)
    # and the model serves the next request
    answer = httpx.post(f"{server.url}{CHAT}", headers={"api-key": server.key}, timeout=120,
                        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert answer.status_code == 200
