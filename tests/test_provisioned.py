"""Provisioned deployments: utilization instead of rate counters, 429 above 100%, settlement by actual usage."""

from __future__ import annotations

import json
import re
import time

import httpx

from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server
from test_cancellation import metric
from test_rate_limits import add_deployment

SMALL = "SmolLM2-135M-Instruct"  # 1 PTU: 1,000 input tokens a minute, a generated token counts 3
NO_END = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>: answers run to max_tokens


def chat_url(server: Server, deployment: str) -> str:
    return f"{server.url}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def ask(server: Server, deployment: str, max_tokens: int, content: str = "Say hi.") -> httpx.Response:
    return httpx.post(chat_url(server, deployment), headers={"api-key": server.key}, timeout=120,
                      json={"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens})


def utilization(response: httpx.Response) -> float:
    value = response.headers["azure-openai-deployment-utilization"]
    assert re.fullmatch(r"\d+\.\d%", value), value
    return float(value[:-1])


def test_provisioned_answers_carry_utilization_and_no_rate_counters(server: Server) -> None:
    deployment = add_deployment(server.data_dir, SMALL, capacity=1, sku="ProvisionedManaged")
    client = server.azure()
    raw = client.chat.completions.with_raw_response.create(
        model=deployment, messages=[{"role": "user", "content": "Say hi."}], max_tokens=5)
    assert raw.parse().choices[0].message.content is not None
    assert 0 < float(raw.headers["azure-openai-deployment-utilization"].rstrip("%")) < 100
    assert "x-ratelimit-remaining-tokens" not in raw.headers
    with client.chat.completions.with_streaming_response.create(
            model=deployment, messages=[{"role": "user", "content": "Say hi."}], max_tokens=5,
            stream=True) as stream:
        assert stream.headers["azure-openai-deployment-utilization"].endswith("%")


def test_provisioned_traffic_is_not_held_to_standard_request_counts(server: Server) -> None:
    # one Standard unit allows one request per 10 seconds; one PTU has no request counter at all
    deployment = add_deployment(server.data_dir, SMALL, capacity=1, sku="GlobalProvisionedManaged")
    answers = [ask(server, deployment, max_tokens=2) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]


def test_above_full_utilization_a_request_is_refused_at_once(server: Server) -> None:
    deployment = add_deployment(server.data_dir, SMALL, capacity=1, sku="ProvisionedManaged")
    # the estimate of 400 tokens × 3 takes the bucket past 100%; the request itself is admitted (it found
    # the deployment below 100%), and is cut short by its client after the first token
    body = {"messages": [{"role": "user", "content": "Count from one to one hundred."}], "max_tokens": 400,
            "stream": True, "logit_bias": NO_END}
    with httpx.stream("POST", chat_url(server, deployment), headers={"api-key": server.key}, json=body,
                      timeout=120) as running:
        assert running.status_code == 200
        assert utilization(running) > 100
        lines = running.iter_lines()  # kept: a dropped line iterator would close the response
        next(lines)
        started = time.monotonic()
        refused = ask(server, deployment, max_tokens=5)
        assert time.monotonic() - started < 5  # refused on arrival, not after waiting for capacity
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "429" and "provisioned throughput" in error["message"]
    assert utilization(refused) > 100
    wait_ms = int(refused.headers["retry-after-ms"])
    assert 0 < wait_ms <= 60_000 and int(refused.headers["retry-after"]) == -(-wait_ms // 1000)
    # once the cut-short request is settled at its actual cost, the deployment is below 100% again
    deadline = time.monotonic() + 30
    again = ask(server, deployment, max_tokens=5)
    while again.status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.5)
        again = ask(server, deployment, max_tokens=5)
    assert again.status_code == 200
    assert utilization(again) < 100


def test_usage_is_settled_with_actual_tokens_also_for_aborted_streams(server: Server) -> None:
    deployment = add_deployment(server.data_dir, SMALL, capacity=50)
    whole = ask(server, deployment, max_tokens=8)
    usage = whole.json()["usage"]
    body = {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 300, "stream": True}
    with httpx.stream("POST", chat_url(server, deployment), headers={"api-key": server.key}, json=body,
                      timeout=120) as aborted:
        lines = aborted.iter_lines()
        chunks = [json.loads(line[6:]) for line in (next(lines) for _ in range(12)) if line.startswith("data: {")]
    assert chunks  # then the client left

    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    deadline, rows = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        rows = [r for r in store.usage(None, 0) if r.deployment == deployment]
        if sum(r.requests for r in rows) == 2:
            break
        time.sleep(0.5)
    assert sum(r.requests for r in rows) == 2
    completion = sum(r.completion_tokens for r in rows)
    # the whole answer's tokens plus those the aborted one generated before it stopped: some, not 300
    assert usage["completion_tokens"] < completion < usage["completion_tokens"] + 300
    assert sum(r.prompt_tokens for r in rows) > usage["prompt_tokens"]
    # each was charged its estimate on arrival, max_tokens included, whatever it then used
    assert sum(r.estimated_tokens for r in rows) > 8 + 300
    settled = metric(server, "azurine_settled_tokens_total", deployment=deployment, kind="completion")
    assert settled == completion
