"""Tool calls written as text: parsing, the streamed hold-back, and the lazy grammar's trigger and form."""

from __future__ import annotations

import json

import pytest

from azurine.engines.base import ToolCall
from azurine.engines.tool_calls import (
    call_end,
    call_start,
    calls_so_far,
    held_from,
    may_be_tool_call,
    parse_tool_calls,
    split_tool_calls,
)
from azurine.engines.tool_grammar import safe_rest, tool_grammar
from azurine.engines.tool_repeats import answered_calls, call_key, only_repeats

OFFERED = {"get_weather", "get_stock_price"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
STOCK = {"type": "function", "function": {"name": "get_stock_price", "parameters": {
    "type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}}}


def calls_of(text: str) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in parse_tool_calls(text, OFFERED)]


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '```\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '  {"name": "get_weather", "parameters": {"city": "Paris"}}\n',
    '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',  # cut off before its closing tag
])
def test_each_form_of_one_call_is_parsed(text: str) -> None:
    assert calls_of(text) == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_stock_price", "arguments": {"ticker": "MSFT"}}\n</tool_call>',
    '```json\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_stock_price", "arguments": {"ticker": "MSFT"}}]\n```',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```\n'
    '```json\n{"name": "get_stock_price", "arguments": {"ticker": "MSFT"}}\n```',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '{"name": "get_stock_price", "arguments": {"ticker": "MSFT"}}',
])
def test_several_calls_are_parsed_in_order(text: str) -> None:
    assert calls_of(text) == [("get_weather", {"city": "Paris"}), ("get_stock_price", {"ticker": "MSFT"})]


def test_text_around_calls_is_kept_as_content() -> None:
    text = 'Let me look.\n```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```\nOne moment.'
    calls, content = split_tool_calls(text, OFFERED)
    assert [c.name for c in calls] == ["get_weather"]
    assert content == "Let me look.\n\nOne moment."


@pytest.mark.parametrize("text", [
    "Paris is sunny today.",
    '{"name": "John", "age": 3}',  # JSON, but no offered tool
    '```json\n{"name": "delete_everything", "arguments": {}}\n```',  # a tool that was not offered
    '{"name": "get_weather", "city": "Paris"}',  # arguments beside the name: not a call's shape
    '{"name": "get_weather", "arguments": [1, 2]}',  # arguments that are no object
    '```python\nprint({"name": "get_weather"})\n```',
    '{"outer": {"name": "get_weather", "arguments": {"city": "Paris"}}}',  # inside other JSON
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',  # cut short
])
def test_text_that_is_no_offered_call_stays_text(text: str) -> None:
    calls, content = split_tool_calls(text, OFFERED)
    assert calls == [] and content == text


def test_a_list_with_a_call_to_a_tool_not_offered_is_text() -> None:
    text = '[{"name": "get_weather", "arguments": {}}, {"name": "rm", "arguments": {}}]'
    assert parse_tool_calls(text, OFFERED) == []


def test_calls_get_distinct_ids() -> None:
    first, second = parse_tool_calls('[{"name": "get_weather", "arguments": {"city": "A"}}, '
                                     '{"name": "get_weather", "arguments": {"city": "B"}}]', OFFERED)
    assert first.id.startswith("call_") and first.id != second.id


@pytest.mark.parametrize(("text", "cut", "started"), [
    ("Hello there", 11, False),
    ("Hello there ", 11, False),  # whitespace that may precede a call is held
    ("Sure. `", 5, False),
    ("Sure. ```", 5, False),
    ("Sure. ```json\n{", 5, False),
    ('Sure. ```json\n{"name"', 5, True),
    ("```python\nprint(1)", 18, False),  # a code block is no call
    ("<tool_", 0, False),
    ("<tool_call>", 0, True),
    ("<b>bold</b>", 11, False),
    ('{"na', 0, False),
    ('{"city": "Paris"}', 17, False),
    ('[{"name"', 0, True),
])
def test_text_is_held_back_from_where_a_call_may_begin(text: str, cut: int, started: bool) -> None:
    assert held_from(text) == (cut, started)


def test_may_be_tool_call_looks_from_the_first_character() -> None:
    assert may_be_tool_call("") and may_be_tool_call("  ```j") and may_be_tool_call('{"name"')
    assert not may_be_tool_call("The weather") and not may_be_tool_call("Hi {")
    assert call_start("Hi {") == (3, False)


def test_the_grammar_triggers_on_an_offered_name_in_any_form() -> None:
    grammar = tool_grammar([WEATHER, STOCK], parallel=True)
    assert grammar is not None
    for text, start in [('```json\n{"name": "get_weather"', 0), ('x <tool_call>\n{"name": "get_stock_price"', 2),
                        ('Sure: [ {"name" : "get_weather"', 6), ('{"name": "get_weather"', 0)]:
        match = grammar.trigger(text.encode())
        assert match is not None and match.start() == start and match.end() == len(text)
    for text in ['{"name": "get_weathe', '{"name": "other"', '{"city": "get_weather"', '```python\n{"name": "x"']:
        assert grammar.trigger(text.encode()) is None


def test_the_grammar_names_every_offered_tool_and_lists_several_calls_only_where_allowed() -> None:
    many = tool_grammar([WEATHER, STOCK], parallel=True)
    one = tool_grammar([WEATHER, STOCK], parallel=False)
    assert many is not None and one is not None
    assert '"\\"get_weather\\""' in many.gbnf and '"\\"get_stock_price\\""' in many.gbnf
    assert ")*" in many.gbnf.split("tool-list ::= ")[1].splitlines()[0]
    assert ")*" not in one.gbnf.split("tool-list ::= ")[1].splitlines()[0]


@pytest.mark.parametrize(("text", "whole"), [
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', True),
    ('{"name": "get_weather", "arguments": {"city": "Paris"}', False),
    ('```json\n{"name": "get_weather", "arguments": {}}\n```', True),
    ('```json\n{"name": "get_weather", "arguments": {}}\n', False),
    ('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>', True),
    ('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool', False),
    ('[{"name": "get_weather", "arguments": {}}]', True),
    ("Hello", False),
])
def test_a_calls_form_ends_with_its_closing(text: str, whole: bool) -> None:
    assert call_end(text) == (len(text) if whole else None)
    assert call_end(text + "\nMore text.") == (len(text) if whole else None)



def test_a_tool_with_an_odd_name_gets_no_grammar() -> None:
    odd = {"type": "function", "function": {"name": "weather(now)", "parameters": {"type": "object"}}}
    assert tool_grammar([odd], parallel=True) is None


@pytest.mark.parametrize(("rest", "safe"), [
    (b"", True), (b",", True), (b", ", True), (b'", "', False), (b', "arg', True), (b', "arguments": ', True),
    (b"}", False), (b', "city"', False), (b', "arguments": {', False),
])
def test_only_text_the_grammar_takes_may_follow_a_trigger(rest: bytes, safe: bool) -> None:
    assert safe_rest(rest) is safe


def made(call_id: str, city: str) -> dict:
    return {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"city": city})}}]}


def result(call_id: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": "Drizzle"}


def test_the_calls_answered_are_those_since_the_last_user_message_with_a_result() -> None:
    question = {"role": "user", "content": "Weather in Bergen and Oslo?"}
    conversation = [question, made("a", "Bergen"), result("a"), made("b", "Oslo")]  # Oslo has no result yet
    assert answered_calls(conversation) == {("get_weather", '{"city":"Bergen"}')}
    assert answered_calls([made("z", "Rome"), result("z"), *conversation]) == {("get_weather", '{"city":"Bergen"}')}
    assert answered_calls([*conversation, {"role": "user", "content": "And again?"}]) == frozenset()
    assert answered_calls([question, result("a")]) == frozenset()  # a result for no call made


def test_a_repeat_is_the_same_name_with_the_same_arguments_in_any_spelling() -> None:
    answered = frozenset({call_key("get_weather", '{"city": "Bergen", "days": 1}')})
    assert only_repeats([ToolCall("call_1", "get_weather", '{"days":1,"city":"Bergen"}')], answered)
    assert not only_repeats([ToolCall("call_1", "get_weather", '{"city": "Oslo", "days": 1}')], answered)
    assert not only_repeats([ToolCall("call_1", "get_weather", '{"city": "Bergen", "days": 1}'),
                             ToolCall("call_2", "get_stock_price", '{"ticker": "MSFT"}')], answered)
    assert not only_repeats([], answered)
    assert call_key("f", "not json") == ("f", "not json")


CALL = '{"name": "get_weather", "arguments": {"city": "Bergen"}}'


@pytest.mark.parametrize(("text", "calls", "settled"), [
    (CALL, 1, False),  # it may end here, or go on with another call
    (CALL + "\n  ", 1, False),
    (CALL + '\n{"name": "get_weather", "argu', 1, False),  # another call, perhaps
    (CALL + "\n<tool_call>", 1, False),
    (CALL + '\n{"name": "get_weather_args", "type": "object"}', 1, True),  # JSON that is no call
    (CALL + "\nThe weather", 1, True),
    ("[" + CALL + ", " + CALL + "] and so", 2, True),
    ("Let me look.", 0, False),
])
def test_an_answer_is_done_with_calls_once_what_follows_them_can_be_no_call(text: str, calls: int,
                                                                            settled: bool) -> None:
    found, done = calls_so_far(text, OFFERED)
    assert (len(found), done) == (calls, settled)
