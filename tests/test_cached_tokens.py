"""Prompt tokens the engine took from cells it had evaluated before are reported as cached, as Azure reports prompt
caching: `usage.prompt_tokens_details.cached_tokens` on chat completions, `usage.input_tokens_details.cached_tokens`
on the Responses API. A conversation that goes on reads its start from the slot that last held it."""

from __future__ import annotations

import uuid

from conftest import Server

ALIGN = 8  # prompts resume from cells at multiples of this many tokens (engines/llama_context.py)


def test_chat_reports_the_prompt_tokens_it_reused(server: Server) -> None:
    client = server.v1()
    # a start no other test has sent, so that the first request finds none of it in the cache
    system = f"You are a terse assistant for case {uuid.uuid4().hex}. Answer in a few words."
    history = [{"role": "system", "content": system}, {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model="chat", messages=history, max_tokens=6, temperature=0)
    assert first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens
    history += [{"role": "assistant", "content": first.choices[0].message.content or ""},
                {"role": "user", "content": "Name another one."}]
    second = client.chat.completions.create(model="chat", messages=history, max_tokens=6, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens <= cached + ALIGN and cached < second.usage.prompt_tokens
    assert cached % ALIGN == 0
    chunks = list(client.chat.completions.create(model="chat", messages=history, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = chunks[-1].usage
    assert streamed is not None and streamed.prompt_tokens == second.usage.prompt_tokens
    assert streamed.prompt_tokens_details.cached_tokens >= cached  # the same prompt again: at least as much


def test_a_continued_response_reports_its_start_as_cached(server: Server) -> None:
    client = server.v1()
    instructions = f"You are a terse assistant for case {uuid.uuid4().hex}. Answer in a few words."
    first = client.responses.create(model="chat", input="My favourite colour is teal. Reply with OK.",
                                    instructions=instructions, max_output_tokens=4, temperature=0)
    second = client.responses.create(model="chat", input="What is my favourite colour?", instructions=instructions,
                                     previous_response_id=first.id, max_output_tokens=8, temperature=0)
    cached = second.usage.input_tokens_details.cached_tokens
    assert first.usage.input_tokens <= cached + ALIGN and cached < second.usage.input_tokens


def test_a_conversation_keeps_its_cells_while_prompts_that_share_only_its_opening_come_between(server: Server) -> None:
    """Requests without a system message all open with the template's default one. One such request between two
    turns of a long conversation takes another slot, and the conversation's cells stay for its next turn."""
    client = server.v1()
    passage = " ".join(f"Item {i} of case {uuid.uuid4().hex[:6]} is filed under shelf {i % 7}." for i in range(12))
    conversation = [{"role": "user", "content": f"{passage}\nWhich shelf holds item 3? Answer with a number."}]
    first = client.chat.completions.create(model="chat-small", messages=conversation, max_tokens=4, temperature=0)
    for question in ("Name a colour.", "Say hello."):  # each shares only the default system message with it
        client.chat.completions.create(model="chat-small", messages=[{"role": "user", "content": question}],
                                       max_tokens=4, temperature=0)
    again = client.chat.completions.create(model="chat-small", messages=conversation, max_tokens=4, temperature=0)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 200
    assert cached >= first.usage.prompt_tokens - 2 * ALIGN
