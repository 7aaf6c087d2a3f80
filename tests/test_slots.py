"""Online answers in slots: a prompt gets the numbers it gets alone whatever runs beside it, prompts that come in
together evaluate what they share once, and an answer that fills its slot goes on to its end in a context of its own,
counted once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from azurine.catalog import load_catalog
from azurine.config import default_models_dir
from azurine.engines.base import ChatPrompt, Delta, Finished, HandedOver, Sampling, TokenLogprob
from azurine.scheduler.metering import CallMeter
from azurine.scheduler.priority import Priority
from azurine.scheduler.registry import EngineRegistry
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


# q4_K kernels, whose numbers depend on how a batch is cut (SmolLM2's q4_1 gave the same in every layout tried)
QWEN = "Qwen2.5-Coder-0.5B-Instruct"


@pytest.fixture(scope="module")
def qwen() -> Any:
    spec = load_catalog().get(QWEN)
    assert spec is not None
    return EngineRegistry(default_models_dir()).engine_for(spec)


async def answer(engine: Any, messages: list[dict[str, str]], sampling: Sampling,
                 streaming: asyncio.Event | None = None) -> list[TokenLogprob]:
    """The answer's logprobs; `streaming` is set once its first token is out."""
    logprobs: list[TokenLogprob] = []
    async for event in engine.chat(ChatPrompt(messages=messages), sampling, WorkOrder(Priority.STANDARD, "q")):
        if isinstance(event, Delta):
            logprobs += event.logprobs
            if streaming is not None:
                streaming.set()
    return logprobs


def reused_tokens() -> float:
    return REGISTRY.get_sample_value("azurine_prompt_tokens_reused_total", {"model": QWEN}) or 0


def test_a_prompt_that_comes_in_beside_answers_gets_the_numbers_it_gets_alone(qwen: Any) -> None:
    probe = [{"role": "user", "content": f"{uuid.uuid4()}: name three prime numbers."}]
    greedy = Sampling(max_tokens=4, temperature=0, logprobs=True, top_logprobs=5)
    alone = asyncio.run(answer(qwen, probe, greedy))

    async def beside_two_answers() -> list[TokenLogprob]:
        streaming = [asyncio.Event(), asyncio.Event()]
        long = Sampling(max_tokens=40, temperature=0, logit_bias={151645: -100})  # Qwen's end of turn
        others = [asyncio.create_task(answer(qwen, [{"role": "user", "content": f"{uuid.uuid4()}: tell a story."}],
                                             long, event)) for event in streaming]
        await asyncio.gather(*(event.wait() for event in streaming))
        probed = await answer(qwen, probe, greedy)
        await asyncio.gather(*others)
        return probed

    beside = asyncio.run(beside_two_answers())
    # bit for bit: two answers and a prompt still take the kernels one answer takes (4 rows would not)
    assert [(lp.token, lp.logprob, [(t.token, t.logprob) for t in lp.top_logprobs]) for lp in beside] == \
        [(lp.token, lp.logprob, [(t.token, t.logprob) for t in lp.top_logprobs]) for lp in alone]


def test_prompts_that_come_in_together_evaluate_their_shared_start_once(qwen: Any) -> None:
    system = {"role": "system", "content": f"Session {uuid.uuid4()}. You answer questions about the solar system "
                                           "for a museum's visitors: in one short sentence, plainly, without lists."}
    questions = ["Which planet is largest?", "How hot is Venus?", "What is a comet?", "Why does Mars look red?"]
    before = reused_tokens()

    async def together() -> list[list[TokenLogprob]]:
        return await asyncio.gather(*(answer(qwen, [system, {"role": "user", "content": q}],
                                             Sampling(max_tokens=2, temperature=0)) for q in questions))

    asyncio.run(together())
    # the template's opening and the system message are over 40 tokens: each prompt after the first takes at least
    # 32 of them (a multiple of 8) from the first's cells
    assert reused_tokens() - before >= 3 * 32


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

