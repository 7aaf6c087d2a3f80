"""`tool_choice: "auto"` on chat completions: the calls the model writes come back as structured calls."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

STOCK_TOOLS = [
    {"type": "function", "function": {
        "name": "get_stock_price", "description": "Get the latest price of a stock by its ticker symbol",
        "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}}},
    {"type": "function", "function": {
        "name": "web_search", "description": "Search the web and return the top results",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
]
# the model writes this call as a fenced JSON block (```json {"name": …, "arguments": …} ```)
STOCK_QUESTION = [{"role": "user", "content": "Check the current price of NVDA for me."}]
CITY_CODES = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["paris-fr", "berlin-de"]}},
                   "required": ["city"]}}}


def test_a_fenced_call_is_returned_as_a_tool_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(model="chat", messages=STOCK_QUESTION, tools=STOCK_TOOLS,
                                           tool_choice="auto", temperature=0, max_tokens=120)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_stock_price"
    assert json.loads(call.function.arguments) == {"ticker": "NVDA"}


def test_the_calls_arguments_follow_the_tools_schema(azure: openai.AzureOpenAI) -> None:
    # left to itself the model writes the city's name; once its call has begun, the grammar allows only the codes
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Check the weather in Paris for me."}],
        tools=[CITY_CODES], tool_choice="auto", temperature=0, max_tokens=120)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("get_weather", {"city": "paris-fr"})]


def test_a_streamed_call_sends_none_of_its_text(azure: openai.AzureOpenAI) -> None:
    text, calls, finish = [], [], None
    for chunk in azure.chat.completions.create(model="chat", messages=STOCK_QUESTION, tools=STOCK_TOOLS,
                                               tool_choice="auto", temperature=0, max_tokens=120, stream=True):
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert "".join(text) == ""  # the fence and the JSON were held back, then became the call
    assert finish == "tool_calls"
    [call] = calls
    assert call.index == 0 and call.id.startswith("call_") and call.function.name == "get_stock_price"
    assert json.loads(call.function.arguments) == {"ticker": "NVDA"}


def test_a_question_no_tool_fits_is_answered_in_text(azure: openai.AzureOpenAI) -> None:
    kwargs = dict(model="chat", messages=[{"role": "user", "content": "Write a haiku about autumn leaves."}],
                  tools=[CITY_CODES], tool_choice="auto", temperature=0, max_tokens=40)
    result = azure.chat.completions.create(**kwargs)
    choice = result.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
    assert choice.message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in azure.chat.completions.create(stream=True, **kwargs)
                       if c.choices)
    assert streamed == choice.message.content


def test_a_deprecated_function_call_is_returned_in_its_own_shape(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=STOCK_QUESTION, functions=[t["function"] for t in STOCK_TOOLS], function_call="auto",
        temperature=0, max_tokens=120)
    choice = result.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_stock_price"
    assert json.loads(choice.message.function_call.arguments) == {"ticker": "NVDA"}


@pytest.mark.parametrize("settings", [
    {"seed": 7},  # seeded: decoded alone, not in a slot
    {"temperature": 1, "top_p": 0.9, "seed": 11},
    {"temperature": 0.7},
    {"presence_penalty": 0.5, "frequency_penalty": 0.5, "logit_bias": {"15": -5}},
    {"logprobs": True, "top_logprobs": 3},
    {"n": 2},
])
def test_the_call_grammar_holds_under_every_sampling_setting(azure: openai.AzureOpenAI,
                                                              settings: dict[str, Any]) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Check the weather in Paris for me."}],
        tools=[CITY_CODES], tool_choice="auto", max_tokens=60, **{"temperature": 0, **settings})
    for choice in result.choices:
        for call in choice.message.tool_calls or []:  # a call, when the model makes one, follows the schema
            assert call.function.name == "get_weather"
            assert json.loads(call.function.arguments)["city"] in ("paris-fr", "berlin-de")
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
    if settings.get("temperature", 0) == 0:
        assert all(c.message.tool_calls for c in result.choices)


def test_a_streamed_call_at_random_temperature_ends_well(azure: openai.AzureOpenAI) -> None:
    finish = None
    for chunk in azure.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Check the weather in Paris for me."}],
            tools=[CITY_CODES], tool_choice="auto", max_tokens=60, temperature=1, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                assert json.loads(call.function.arguments)["city"] in ("paris-fr", "berlin-de")
    assert finish in ("stop", "length", "tool_calls")


# an agent loop's second turn: the call made, its result given, the same tools offered again
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city's name."}},
                   "required": ["city"]}}}
BERGEN_WEATHER = "Drizzle, 11 C, wind 30 km/h from the south-east"


def after_the_call(*more: dict[str, Any]) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'}}
    return [{"role": "system", "content": "You answer questions about the weather. Use the tools."},
            {"role": "user", "content": "What is the weather in Bergen right now?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": BERGEN_WEATHER}, *more]


def test_a_call_made_again_after_its_result_becomes_an_answer_from_it(azure: openai.AzureOpenAI) -> None:
    # left to itself the model writes get_weather("Bergen") again (see `engines/tool_repeats.py`)
    result = azure.chat.completions.create(model="chat", messages=after_the_call(), tools=[WEATHER_TOOL],
                                           tool_choice="auto", temperature=0, max_tokens=80)
    choice = result.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert "drizzle" in choice.message.content.lower()
    assert result.usage.completion_tokens <= 80
    alone = azure.chat.completions.create(model="chat", messages=after_the_call(), tools=[WEATHER_TOOL],
                                          tool_choice="auto", temperature=0, max_tokens=1)
    assert result.usage.prompt_tokens == alone.usage.prompt_tokens  # the prompt as sent, tools and all


def test_a_streamed_repeat_sends_only_the_answer(azure: openai.AzureOpenAI) -> None:
    text, calls, finish = [], [], None
    for chunk in azure.chat.completions.create(model="chat", messages=after_the_call(), tools=[WEATHER_TOOL],
                                               tool_choice="auto", temperature=0, max_tokens=80, stream=True):
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert not calls and finish == "stop"
    assert "drizzle" in "".join(text).lower()

