"""Chat completions through the official `AzureOpenAI` client against a running server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from conftest import API_VERSION, Server

SMALL = "chat-small"


def test_chat_answers_with_azure_shape(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0,
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "smollm2-135m-instruct"
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 0 and 0 < result.usage.completion_tokens <= 12
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    extra = result.model_extra or {}
    assert extra["prompt_filter_results"][0]["prompt_index"] == 0


def test_default_chat_model_answers_a_factual_question(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "What is the capital city of France? Answer in one word."}],
        max_tokens=10, temperature=0,
    )
    assert "paris" in (result.choices[0].message.content or "").lower()


def test_max_tokens_cuts_with_length(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5, temperature=0,
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 5


def test_max_completion_tokens_is_honoured(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        max_completion_tokens=3, temperature=0,
    )
    assert result.usage.completion_tokens == 3
    assert result.choices[0].finish_reason == "length"


def test_same_seed_same_answer(azure: openai.AzureOpenAI) -> None:
    def ask() -> str:
        result = azure.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=20,
            temperature=1.0, seed=1234,
        )
        return result.choices[0].message.content or ""

    first = ask()
    # whatever ran in between, and however much of the prompt the engine still holds
    azure.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "Name a colour, then a"
                                                          " fruit."}], max_tokens=5)
    assert ask() == first
    assert ask() == first


def test_stop_sequence_ends_the_answer(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=40, temperature=0, stop=["5"],
    )
    content = result.choices[0].message.content or ""
    assert result.choices[0].finish_reason == "stop"
    assert "4" in content and "5" not in content and "6" not in content


def test_n_returns_several_choices(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Say a word."}], max_tokens=4, n=3, seed=7,
    )
    assert [c.index for c in result.choices] == [0, 1, 2]
    # completion tokens add up over the choices; the prompt counts once
    assert 3 <= result.usage.completion_tokens <= 12
    single = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Say a word."}], max_tokens=4, seed=7)
    assert result.usage.prompt_tokens == single.usage.prompt_tokens
    assert result.choices[0].message.content == single.choices[0].message.content


def test_logprobs_and_top_logprobs(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Say yes."}], max_tokens=4, temperature=0,
        logprobs=True, top_logprobs=3,
    )
    content = result.choices[0].logprobs.content
    assert content and len(content) == result.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        # greedy decoding picks the most likely token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)
        assert bytes(item.bytes).decode("utf-8", errors="replace") == item.token


def test_content_parts_are_read_as_text(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "You answer with one word."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of Italy?"}]},
        ],
        max_tokens=8, temperature=0,
    )
    assert "rome" in (result.choices[0].message.content or "").lower()


def test_json_object_response_is_valid_json(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        response_format={"type": "json_object"}, max_tokens=60, temperature=0,
    )
    if result.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


def test_json_schema_response_follows_the_schema(azure: openai.AzureOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"], "additionalProperties": False,
    }
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Give the largest city of Japan and its population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        max_tokens=60, temperature=0,
    )
    assert result.choices[0].finish_reason == "stop"
    data = json.loads(result.choices[0].message.content or "")
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_named_tool_choice_returns_a_tool_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40, temperature=0,
    )
    call = result.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id.startswith("call_")
    assert "city" in json.loads(call.function.arguments)


def test_required_tool_choice_returns_a_tool_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Weather in Berlin?"}],
        tools=[WEATHER_TOOL], tool_choice="required", max_tokens=40, temperature=0,
    )
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_auto_tool_choice_parses_the_models_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "What is the weather like in Madrid right now? Use the tool."}],
        tools=[WEATHER_TOOL], tool_choice="auto", max_tokens=60, temperature=0,
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"].lower() == "madrid"


def test_tool_choice_none_answers_in_text(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hi."}],
        tools=[WEATHER_TOOL], tool_choice="none", max_tokens=10, temperature=0,
    )
    assert result.choices[0].message.tool_calls is None
    assert result.choices[0].message.content


def test_tool_results_are_used_in_the_next_turn(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_celsius": -7, "sky": "snow"}'},
        ],
        tools=[WEATHER_TOOL], max_tokens=40, temperature=0,
    )
    content = (result.choices[0].message.content or "").lower()
    assert "-7" in content or "snow" in content


def test_streaming_follows_azures_framing(server: Server) -> None:
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    with server.http() as http, http.stream(
        "POST", f"/openai/deployments/{SMALL}/chat/completions?api-version={API_VERSION}",
        headers={"api-key": server.key}, json=body,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in raw)
    assert raw[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in raw[:-1]]
    opening = chunks[0]
    assert opening["choices"] == [] and opening["id"] == "" and opening["object"] == ""
    assert opening["created"] == 0 and opening["model"] == ""
    assert opening["prompt_filter_results"][0]["prompt_index"] == 0
    role = chunks[1]["choices"][0]
    assert role["delta"] == {"content": "", "refusal": None, "role": "assistant"}
    assert role["content_filter_results"] == {}
    content = chunks[2:-2]
    assert content and all("content_filter_results" in c["choices"][0] for c in content)
    assert all(c["usage"] is None for c in chunks[1:-1])
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] in ("stop", "length")
    usage = chunks[-1]
    # the content filter releases text in checked windows of one or more tokens, as Azure's default mode does
    assert usage["choices"] == [] and 1 <= len(content) <= usage["usage"]["completion_tokens"]


def test_streaming_with_the_sdk_rebuilds_the_answer(azure: openai.AzureOpenAI) -> None:
    kwargs = dict(model=SMALL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=10,
                  temperature=0, seed=3)
    whole = azure.chat.completions.create(**kwargs).choices[0].message.content
    parts = [c.choices[0].delta.content or "" for c in azure.chat.completions.create(stream=True, **kwargs)
             if c.choices]
    assert "".join(parts) == whole


def test_streamed_tool_call(azure: openai.AzureOpenAI) -> None:
    stream = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER_TOOL],
        tool_choice="required", max_tokens=40, temperature=0, stream=True,
    )
    calls, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments)


def test_penalties_and_logit_bias_are_accepted(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Repeat the word cat many times."}], max_tokens=10,
        temperature=0, presence_penalty=1.5, frequency_penalty=1.5, logit_bias={"2": -100},
    )
    assert result.choices[0].finish_reason == "length"  # end-of-turn was banned


def test_images_are_refused_by_a_text_model(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert caught.value.body["param"] == "messages[0].content[1].type"


def test_concurrent_requests_queue_and_all_answer(azure: openai.AzureOpenAI) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def chat(i: int) -> str | None:
        return azure.chat.completions.create(
            model=SMALL if i % 2 else "chat", messages=[{"role": "user", "content": f"Say the number {i}."}],
            max_tokens=6, temperature=0).choices[0].message.content

    def embed(i: int) -> int:
        return len(azure.embeddings.create(model="embeddings", input=f"text {i}").data[0].embedding)

    with ThreadPoolExecutor(max_workers=8) as pool:
        chats = list(pool.map(chat, range(6)))
        vectors = list(pool.map(embed, range(4)))
    assert all(chats) and vectors == [384] * 4


def steps_of_one_answer(metrics_url: str) -> tuple[float, float]:
    """(steps that carried one answer, all steps) of SmolLM2 so far, from the server's metrics."""
    text = httpx.get(metrics_url).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("azurine_batch_decode_sequences_bucket") and 'model="SmolLM2-135M-Instruct"' in line:
            counts[line.split('le="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return counts.get("1.0", 0.0), counts.get("+Inf", 0.0)


def test_the_choices_of_one_request_are_decoded_side_by_side(server: Server, azure: openai.AzureOpenAI) -> None:
    single_before, all_before = steps_of_one_answer(server.metrics_url)
    result = azure.chat.completions.create(
        model=SMALL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, n=3, temperature=1)
    single, total = steps_of_one_answer(server.metrics_url)
    assert len(result.choices) == 3
    assert total - all_before > single - single_before, "no step carried more than one of the choices"
