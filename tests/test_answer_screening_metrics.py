"""Azure Monitor's content-safety volumes count answers as well as prompts, in-process: each answer (choice) the
filter screens counts once in `RAITotalRequests`, however many windows of it were checked as it streamed, and one
cut with `finish_reason: content_filter` counts in `RAIRejectedRequests` with `TextType` `Completion`. The answers
come from a `FakeEngine`, which repeats its prompt, so a word on a completion blocklist (and on no prompt list)
passes the prompt's screening and blocks the answer."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from asgi_app import client, in_process_app
from azurine.api.context import Services
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, issue_token
from azurine.scheduler.scheduled import ScheduledUpstream
from azurine.scheduler.upstream import UpstreamGate
from conftest import API_VERSION
from fake_engine import FakeEngine

ARM = "?api-version=2025-06-01"
BLOCKED = "teacupful"  # on the completion blocklist only
LONG = " ".join(["tell me about hash tables and the ways they grow"] * 4)  # several windows of answer


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Services]:
    app, services = in_process_app(tmp_path_factory.mktemp("answer-screening") / "data")
    for spec in services.catalog:
        services.engines.provide(spec, ScheduledUpstream(FakeEngine(spec), UpstreamGate(spec.name, 8)))
    account = services.store.first_account()
    assert account is not None
    chat = services.catalog.get("Qwen2.5-Coder-0.5B-Instruct")
    assert chat is not None
    resource = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
                f"Microsoft.CognitiveServices/accounts/{account.name}")
    token = issue_token(services.store, MANAGEMENT_AUDIENCES[0])[0]

    def arm(path: str, body: dict[str, Any]) -> None:
        async def put() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://azurine.test",
                                         headers={"Authorization": f"Bearer {token}"}) as http:
                return await http.put(f"{resource}/{path}{ARM}", json=body)

        answer = asyncio.run(put())
        assert answer.status_code in (200, 201), answer.text

    arm("raiBlocklists/answers", {"properties": {"description": "words no answer may hold"}})
    arm("raiBlocklists/answers/raiBlocklistItems/word", {"properties": {"pattern": BLOCKED, "isRegex": False}})
    for name, mode in (("answers", "Default"), ("answers-async", "Asynchronous_filter")):
        arm(f"raiPolicies/{name}", {"properties": {
            "mode": mode, "basePolicyName": "Microsoft.DefaultV2",
            "customBlocklists": [{"blocklistName": "answers", "blocking": True, "source": "Completion"}]}})
        arm(f"deployments/{name}", {"sku": {"name": "Standard", "capacity": 50}, "properties": {
            "model": {"format": chat.publisher, "name": chat.name, "version": chat.version},
            "raiPolicyName": name}})
    return app, services


def post(app: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client(app) as http:
            return await http.post(path, json=body)

    return asyncio.run(go())


def volumes(services: Services, deployment: str) -> Counter[tuple[str, ...]]:
    """The content filter's counts for `deployment` so far, by metric and, where it has them, TextType and
    Category."""
    out: Counter[tuple[str, ...]] = Counter()
    for point in services.metrics.pending():
        if point.metric.startswith("RAI") and point.dimensions.get("ModelDeploymentName") == deployment:
            shown = tuple(point.dimensions[d] for d in ("TextType", "Category") if d in point.dimensions)
            out[(point.metric, *shown)] += int(point.total)
    return out


def counted(services: Services, deployment: str, call: Any) -> tuple[Any, Counter[tuple[str, ...]]]:
    """What `call` answered, and what it added to the deployment's screened and rejected volumes (what the
    classifiers find harmful in these texts, at low severity, is not these tests' business)."""
    before = volumes(services, deployment)
    answer = call()
    added = volumes(services, deployment) - before
    return answer, Counter({key: n for key, n in added.items() if key[0] != "RAIHarmfulRequests"})


def chat(deployment: str) -> str:
    return f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_a_whole_answer_is_one_screened_completion(app: tuple[Any, Services]) -> None:
    asgi, services = app
    answer, added = counted(services, "answers", lambda: post(asgi, chat("answers"), {
        "messages": [{"role": "user", "content": "tell me about hash tables"}], "max_tokens": 5}))
    assert answer.status_code == 200 and answer.json()["choices"][0]["finish_reason"] == "stop", answer.text
    assert added == Counter({("RAITotalRequests",): 2})  # the prompt and the answer


def test_an_answer_cut_by_the_filter_is_a_rejected_completion(app: tuple[Any, Services]) -> None:
    asgi, services = app
    answer, added = counted(services, "answers", lambda: post(asgi, chat("answers"), {
        "messages": [{"role": "user", "content": f"say {BLOCKED} twice"}], "max_tokens": 5}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["finish_reason"] == "content_filter"
    assert added == Counter({("RAITotalRequests",): 2,
                             ("RAIRejectedRequests", "Completion", "blocklist:answers"): 1})


@pytest.mark.parametrize("deployment", ["answers", "answers-async"])
def test_each_streamed_choice_counts_once_however_many_windows_were_checked(app: tuple[Any, Services],
                                                                            deployment: str) -> None:
    asgi, services = app
    answer, added = counted(services, deployment, lambda: post(asgi, chat(deployment), {
        "messages": [{"role": "user", "content": LONG}], "stream": True, "n": 2, "max_tokens": 60}))
    finished = [c["finish_reason"] for e in events(answer) for c in e.get("choices", []) if c.get("finish_reason")]
    assert finished == ["stop", "stop"], answer.text
    assert added == Counter({("RAITotalRequests",): 3})  # one prompt, two answers


@pytest.mark.parametrize("deployment", ["answers", "answers-async"])
def test_a_streamed_answer_cut_by_the_filter_is_rejected_once(app: tuple[Any, Services], deployment: str) -> None:
    asgi, services = app
    answer, added = counted(services, deployment, lambda: post(asgi, chat(deployment), {
        "messages": [{"role": "user", "content": f"{LONG} {BLOCKED} {LONG}"}], "stream": True,
        "max_tokens": 100}))
    finished = [c["finish_reason"] for e in events(answer) for c in e.get("choices", []) if c.get("finish_reason")]
    assert finished == ["content_filter"], answer.text
    assert added == Counter({("RAITotalRequests",): 2,
                             ("RAIRejectedRequests", "Completion", "blocklist:answers"): 1})


def test_completions_count_each_choice_of_each_prompt(app: tuple[Any, Services]) -> None:
    asgi, services = app
    answer, added = counted(services, "answers", lambda: post(
        asgi, f"/openai/deployments/answers/completions?api-version={API_VERSION}",
        {"prompt": ["one two three", f"four {BLOCKED}"], "max_tokens": 5}))
    assert [c["finish_reason"] for c in answer.json()["choices"]] == ["stop", "content_filter"], answer.text
    assert added == Counter({("RAITotalRequests",): 3,
                             ("RAIRejectedRequests", "Completion", "blocklist:answers"): 1})


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_of_the_responses_api_is_a_screened_completion(app: tuple[Any, Services], stream: bool) -> None:
    asgi, services = app
    answer, added = counted(services, "answers", lambda: post(asgi, "/openai/v1/responses", {
        "model": "answers", "input": f"say {BLOCKED} now", "stream": stream, "max_output_tokens": 20}))
    assert answer.status_code == 200, answer.text
    assert added == Counter({("RAITotalRequests",): 2,
                             ("RAIRejectedRequests", "Completion", "blocklist:answers"): 1})
