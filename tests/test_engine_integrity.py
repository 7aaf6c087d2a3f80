"""One request never changes another's answer: whatever a caller sends, the shared model context stays sound.

A fixed greedy probe is answered once; then requests of every shape run against the same model (empty and odd
prompts, token arrays, `max_tokens: 0`, echo, suffix, logprobs, `n`, stops, cancelled streams, JSON schemas, tools,
and requests that fail validation), and after each one the probe must give the identical answer, logprobs included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import API_VERSION, Server

MODELS = {"chat-small": "SmolLM2", "chat": "Qwen2.5-Coder-0.5B"}
# sequences per deployment: SmolLM2 answers about four times as fast as Qwen, so it carries most of them
SEQUENCES = {"chat-small": int(os.environ.get("AZURINE_CANARY_SEQUENCES", 150)),
             "chat": int(os.environ.get("AZURINE_CANARY_SEQUENCES_LARGE", 50))}
# An answer decoded alone gets the same numbers every time. One decoded beside another (here, a cancelled stream that
# the server has not yet seen go) shares its matrix products with it, and Qwen2.5's q4_K kernels group rows by four:
# its logprobs can move in the last bits and, through the layers, by up to about 0.07. A context that a request
# corrupted gives other tokens altogether. Each model's probe is a question whose greedy answer wins every token by a
# wide margin (at least 1.2 nats on SmolLM2, 3.9 on Qwen2.5).
LOGPROB_TOLERANCE = 0.2
QUESTIONS = {"chat-small": "Count from 1 to 10.", "chat": "What is the capital of France?"}

def strict_json(text: str) -> Any:
    """JSON as the spec defines it: `NaN` and `Infinity` are not numbers there."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


@dataclass(frozen=True)
class Answer:
    """The probe's answer: its text, and each token with its logprob."""

    text: str
    tokens: list[tuple[str, float]]

    def same_as(self, other: Answer) -> bool:
        """The same text from the same tokens, each logprob within `LOGPROB_TOLERANCE`. (Unlikely alternatives are
        not compared: their logprobs, at -9 and below, move further with the same change in the sums.)"""
        return self.text == other.text and len(self.tokens) == len(other.tokens) and all(
            token == token_2 and abs(logprob - logprob_2) <= LOGPROB_TOLERANCE
            for (token, logprob), (token_2, logprob_2) in zip(self.tokens, other.tokens, strict=True))


def probe(http: httpx.Client, deployment: str) -> Answer:
    body = {"messages": [{"role": "user", "content": QUESTIONS[deployment]}], "max_tokens": 8, "temperature": 0,
            "logprobs": True, "top_logprobs": 2}
    response = http.post(f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}", json=body)
    assert response.status_code == 200, response.text
    choice = strict_json(response.text)["choices"][0]
    return Answer(choice["message"]["content"], [(t["token"], t["logprob"]) for t in choice["logprobs"]["content"]])


# requests of every shape ---------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\n\n", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "\x00", "😀", "é",
                            "The capital of France is", "def f(x):", "{\"a\": 1}"])
TEXT = ODD_TEXT | st.text(max_size=24)
STOPS = st.none() | st.sampled_from([".", "\n", " the", ["a", "b"], ["\n", ".", ",", "!"]])
TOKEN_PROMPT = st.lists(st.integers(0, 2000), min_size=1, max_size=8)


@st.composite
def completion(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    prompt = draw(TEXT | TOKEN_PROMPT | st.lists(TEXT, min_size=1, max_size=2)
                  | st.lists(TOKEN_PROMPT, min_size=1, max_size=2))
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": draw(st.integers(0, 5))}
    for field, values in (("echo", st.booleans()), ("logprobs", st.integers(0, 3)), ("n", st.integers(1, 2)),
                          ("stop", STOPS), ("temperature", st.sampled_from([0, 0.7, 2])),
                          ("seed", st.integers(0, 2**31)), ("suffix", st.sampled_from(["", " end", "\n"])),
                          ("best_of", st.integers(1, 2))):
        if draw(st.booleans()):
            body[field] = draw(values)
    return "completions", body


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@st.composite
def chat(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    roles = st.sampled_from(["system", "user", "assistant", "developer"])
    messages = draw(st.lists(st.builds(lambda role, text: {"role": role, "content": text}, roles, TEXT),
                             min_size=1, max_size=3))
    body: dict[str, Any] = {"messages": messages, "max_tokens": draw(st.integers(1, 5))}
    options = (("logprobs", st.booleans()), ("top_logprobs", st.integers(0, 3)), ("n", st.integers(1, 2)),
               ("stop", STOPS), ("temperature", st.sampled_from([0, 1])), ("seed", st.integers(0, 2**31)),
               ("response_format", st.sampled_from([{"type": "json_object"}, SCHEMA, {"type": "text"}])),
               ("tools", st.just([TOOL])),
               ("tool_choice", st.sampled_from(["auto", "none", "required",
                                                {"type": "function", "function": {"name": "get_weather"}}])))
    for field, values in options:
        if draw(st.booleans()):
            body[field] = draw(values)
    return "chat/completions", body


@st.composite
def cancelled_stream(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    path, body = draw(chat() | completion())
    body.update(stream=True, max_tokens=draw(st.integers(4, 24)))
    body.pop("best_of", None)
    return "cancel:" + path, body


INVALID = st.sampled_from([
    ("completions", {"prompt": "hi", "max_tokens": -1}),
    ("completions", {"prompt": [], "max_tokens": 1}),
    ("completions", {"prompt": "hi", "temperature": 9}),
    ("completions", {"prompt": "hi", "max_tokens": 100000}),
    ("completions", {"prompt": [10**9], "max_tokens": 1}),
    ("completions", {"prompt": "hi", "logit_bias": {"x": 1}}),
    ("chat/completions", {"messages": [], "max_tokens": 1}),
    ("chat/completions", {"messages": [{"role": "tool", "content": "x"}], "max_tokens": 1}),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "xml"}}),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                          "response_format": {"type": "json_schema", "json_schema": {
                              "name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}}}}),
])

REQUEST = st.one_of(completion(), chat(), cancelled_stream(), INVALID)


def send(http: httpx.Client, deployment: str, path: str, body: dict[str, Any]) -> None:
    cancel = path.startswith("cancel:")
    url = f"/openai/deployments/{deployment}/{path.removeprefix('cancel:')}?api-version={API_VERSION}"
    if cancel:  # the client goes away after the first chunk that carries text
        with http.stream("POST", url, json=body) as response:
            assert response.status_code < 500
            for line in response.iter_lines():
                if '"content":"' in line or '"text":"' in line:
                    break
        return
    response = http.post(url, json=body)
    assert response.status_code < 500, (body, response.text)
    strict_json(response.text)


# the tests ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300, headers={"api-key": server.key}) as client:
        yield client


@pytest.mark.parametrize("deployment", sorted(MODELS))
def test_an_empty_prompt_leaves_the_next_answer_unchanged(azure: openai.AzureOpenAI, deployment: str) -> None:
    question = [{"role": "user", "content": "What is the capital of France?"}]
    before = azure.chat.completions.create(model=deployment, messages=question, max_tokens=12, temperature=0)
    assert before.choices[0].message.content
    for max_tokens in (4, 0):
        empty = azure.completions.create(model=deployment, prompt="", max_tokens=max_tokens)
        assert empty.usage.prompt_tokens == 1  # answered from the start-of-text token
        assert empty.usage.completion_tokens <= max_tokens
        after = azure.chat.completions.create(model=deployment, messages=question, max_tokens=12, temperature=0)
        assert after.choices[0].message.content == before.choices[0].message.content


def test_an_empty_prompt_with_logprobs_gives_finite_numbers(http: httpx.Client) -> None:
    response = http.post(f"/openai/deployments/chat-small/completions?api-version={API_VERSION}",
                         json={"prompt": "", "max_tokens": 3, "logprobs": 2, "temperature": 0})
    assert response.status_code == 200
    logprobs = strict_json(response.text)["choices"][0]["logprobs"]
    assert all(isinstance(v, float) and v <= 0 for v in logprobs["token_logprobs"])


def test_a_named_tool_call_cut_short_keeps_its_partial_arguments(azure: openai.AzureOpenAI) -> None:
    answer = azure.chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "Weather in Paris?"}], max_tokens=2,
        tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = answer.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert choice.message.tool_calls[0].function.arguments.startswith("{")


@pytest.mark.parametrize("deployment", sorted(MODELS))
def test_a_greedy_answer_does_not_depend_on_what_ran_before(http: httpx.Client, deployment: str) -> None:
    """Prompts that share the probe's opening, wholly or in part, leave its context in different states; the
    probe resumes only from whole chunks of prompt, split as a fresh evaluation splits them."""
    first = probe(http, deployment)
    chat_url = f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"
    for content in ("What is the capital of France?", "What is the capital of Spain?", "What", ""):
        http.post(chat_url, json={"messages": [{"role": "user", "content": content}], "max_tokens": 3})
        assert probe(http, deployment).same_as(first)
        assert probe(http, deployment).same_as(first)  # the probe after itself: the most it can resume from


@pytest.mark.parametrize("deployment", sorted(MODELS))
def test_no_request_changes_the_probe_answer(http: httpx.Client, deployment: str) -> None:
    expected = probe(http, deployment)

    @settings(max_examples=SEQUENCES[deployment], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests=st.lists(REQUEST, min_size=1, max_size=3))
    def sequence(requests: list[tuple[str, dict[str, Any]]]) -> None:
        for path, body in requests:
            send(http, deployment, path, body)
            answer = probe(http, deployment)
            assert answer.same_as(expected), (path, body, answer, expected)

    sequence()

