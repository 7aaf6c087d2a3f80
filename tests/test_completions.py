"""Legacy completions through the official client."""

from __future__ import annotations

import openai
import pytest

SMALL = "chat-small"


def test_completion_answers_with_azure_shape(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    assert result.choices[0].text
    assert result.choices[0].finish_reason in ("stop", "length")
    assert result.usage.completion_tokens <= 5
    assert (result.model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0


def test_default_max_tokens_is_sixteen(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt="Once upon a time", temperature=0)
    assert result.usage.completion_tokens <= 16


def test_echo_repeats_the_prompt(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt="One, two, three,", max_tokens=4, echo=True, temperature=0)
    assert result.choices[0].text.startswith("One, two, three,")


def test_logprobs_in_the_legacy_shape(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt="Hello", max_tokens=3, logprobs=2, temperature=0)
    logprobs = result.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 3
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0
    assert "".join(logprobs.tokens) == result.choices[0].text


def test_echo_with_logprobs_is_refused(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.completions.create(model=SMALL, prompt="Hi", max_tokens=2, echo=True, logprobs=1)
    assert caught.value.body["param"] == "echo"


def test_several_prompts_and_n(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt=["Red", "Blue"], max_tokens=2, n=2, seed=5)
    assert sorted(c.index for c in result.choices) == [0, 1, 2, 3]
    assert len((result.model_extra or {})["prompt_filter_results"]) == 2


def test_token_array_prompt(azure: openai.AzureOpenAI) -> None:
    by_text = azure.completions.create(model=SMALL, prompt="Hello there", max_tokens=4, temperature=0)
    tokens = [19556, 665]  # "Hello there" in SmolLM2's vocabulary
    by_tokens = azure.completions.create(model=SMALL, prompt=tokens, max_tokens=4, temperature=0)
    assert by_tokens.usage.prompt_tokens == 2
    assert by_text.choices[0].text == by_tokens.choices[0].text


def test_best_of_picks_among_more_samples(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(model=SMALL, prompt="Hello", max_tokens=3, best_of=3, n=1, seed=11)
    assert len(result.choices) == 1


def test_suffix_fills_in_the_middle_on_a_coder_model(azure: openai.AzureOpenAI) -> None:
    result = azure.completions.create(
        model="chat", prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n", max_tokens=8,
        temperature=0,
    )
    assert "a + b" in result.choices[0].text or "a+b" in result.choices[0].text


def test_suffix_is_refused_where_the_model_cannot(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.completions.create(model=SMALL, prompt="x = ", suffix="\n", max_tokens=2)
    assert caught.value.body["param"] == "suffix"


def test_streamed_completion_matches_the_whole(azure: openai.AzureOpenAI) -> None:
    kwargs = dict(model=SMALL, prompt="The sky is", max_tokens=6, temperature=0)
    whole = azure.completions.create(**kwargs).choices[0].text
    streamed = "".join(c.choices[0].text for c in azure.completions.create(stream=True, **kwargs) if c.choices)
    assert streamed == whole
