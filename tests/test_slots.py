"""Online answers in slots: an answer that fills its slot goes on to its end in a context of its own, counted once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from azurine.engines.base import Delta, Finished, HandedOver
from azurine.scheduler.metering import CallMeter
from azurine.scheduler.work import WorkOrder
from conftest import Server, start_server, stop
from meters import CountingMeter

SLOT_TOKENS = 48
# SmolLM2's end-of-text, start and end of turn: banned, so that every answer runs to its max_tokens
NO_END = {"0": -100, "1": -100, "2": -100}


@pytest.fixture(scope="module")
def small_slots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("slots") / "data", env={"AZURINE_SLOT_TOKENS": str(SLOT_TOKENS)})
    try:
        yield running
    finally:
        stop(running.process)


def test_an_answer_that_fills_its_slot_goes_on_to_its_max_tokens(small_slots: Server) -> None:
    azure = small_slots.azure()
    kwargs = dict(model="chat-small", prompt="Once upon a time, in a small village by the sea,", max_tokens=60,
                  temperature=0, logit_bias=NO_END)
    whole = azure.completions.create(**kwargs)
    assert whole.usage.prompt_tokens + 60 > SLOT_TOKENS  # it could not have ended in its slot
    assert whole.usage.completion_tokens == 60 and whole.choices[0].finish_reason == "length"
    chunks = list(azure.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == 60
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert len(streamed) > len(whole.choices[0].text) // 2


def test_a_chat_answer_without_max_tokens_shares_the_steps(small_slots: Server) -> None:
    answer = small_slots.azure().chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "Say hi."}], temperature=0)
    assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")


def test_a_call_that_hands_its_answer_over_reports_nothing_and_the_next_reports_all() -> None:
    ledger = CountingMeter()
    order = WorkOrder(meter=ledger)
    first, second = CallMeter(order), CallMeter(order)
    first.start()
    first.observe(Delta(text="a"))
    first.observe(HandedOver(state=None))
    first.end()
    second.start()
    second.observe(Delta(text="b"))
    second.observe(Finished("length", 30, 2))
    second.end()
    assert ledger.added == [(0, 30, 2)] and ledger.holds == ledger.releases == 2

