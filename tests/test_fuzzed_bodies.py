"""Whatever a client sends, the answer is Azure-shaped and never a 500."""

from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import API_VERSION, Server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# fields that set how much work a valid request asks for stay small, so every example is quick
SIZE_FIELDS = {"max_tokens", "max_completion_tokens", "n", "best_of"}
small_or_invalid = st.integers(-2, 2) | st.text(max_size=5) | st.lists(st.integers(0, 3), max_size=2)

BASES = {
    "chat": ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
             ["messages", "temperature", "top_p", "stop", "tools", "tool_choice", "response_format", "logprobs",
              "top_logprobs", "logit_bias", "seed", "stream", "stream_options", "presence_penalty", "user",
              "n", "max_tokens", "max_completion_tokens", "parallel_tool_calls"]),
    "completions": ("completions", {"prompt": "hi", "max_tokens": 1},
                    ["prompt", "suffix", "echo", "logprobs", "best_of", "stop", "temperature", "stream", "n",
                     "max_tokens", "logit_bias", "seed"]),
    "embeddings": ("embeddings", {"input": "hi"}, ["input", "encoding_format", "dimensions", "user"]),
}
EXAMPLES = int(os.environ.get("AZURINE_FUZZ_EXAMPLES", 60))  # more for a deeper search by hand
DEPLOYMENTS = {"chat": "chat-small", "completions": "chat-small", "embeddings": "embeddings"}


def overrides(fields: list[str]) -> st.SearchStrategy[dict[str, object]]:
    field = st.sampled_from(fields + ["unknown_field"])
    return st.dictionaries(field, json_values, max_size=3)


@pytest.mark.parametrize("operation", sorted(BASES))
def test_fuzzed_bodies_never_get_a_500(server: Server, operation: str) -> None:
    path, base, fields = BASES[operation]
    url = f"/openai/deployments/{DEPLOYMENTS[operation]}/{path}?api-version={API_VERSION}"
    http = httpx.Client(base_url=server.url, timeout=120, headers={"api-key": server.key})

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(changes=overrides(fields), sizes=st.dictionaries(st.sampled_from(sorted(SIZE_FIELDS)), small_or_invalid,
                                                            max_size=2))
    def check(changes: dict[str, object], sizes: dict[str, object]) -> None:
        body = {**base, **{k: v for k, v in changes.items() if k not in SIZE_FIELDS}, **sizes}
        if operation != "embeddings" and body.get("best_of") not in (None, 0, 1, 2):
            body.pop("best_of")
        response = http.post(url, json=body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)

    try:
        check()
    finally:
        http.close()
