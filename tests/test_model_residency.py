"""Models by memory: several models stay loaded within AZURINE_MODEL_MEMORY, the least recently used idle one is
unloaded when another needs the room and loads again when it is called, and an answer in flight keeps its model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from azurine.catalog import load_catalog
from azurine.config import default_models_dir, model_memory_budget, total_memory
from azurine.engines.base import ChatPrompt, Delta, Event, Finished, Sampling
from azurine.engines.llama_runtime import LlamaCppEngine
from azurine.scheduler.priority import Priority
from azurine.scheduler.registry import EngineRegistry
from azurine.scheduler.work import WorkOrder
from conftest import ROOT, free_port

SMALL, CODER = "SmolLM2-135M-Instruct", "Qwen2.5-Coder-0.5B-Instruct"
# SmolLM2's end-of-text, start and end of turn: banned, so that its answer runs to its max_tokens
NO_END = {0: -100.0, 1: -100.0, 2: -100.0}


def footprint(name: str) -> int:
    spec = load_catalog().get(name)
    assert spec is not None
    return LlamaCppEngine(spec, spec.path_in(default_models_dir())).footprint({Priority.STANDARD})


def unloads(name: str) -> float:
    return REGISTRY.get_sample_value("azurine_model_unloads_total", {"model": name}) or 0


def memory(name: str) -> float | None:
    return REGISTRY.get_sample_value("azurine_model_memory_bytes", {"model": name})


@pytest.fixture()
def one_at_a_time() -> Iterator[tuple[EngineRegistry, Any, Any]]:
    """A registry whose budget holds either model but not both."""
    sizes = sorted([footprint(SMALL), footprint(CODER)])
    registry = EngineRegistry(default_models_dir(), model_memory=sizes[1] + sizes[0] // 2)
    catalog = load_catalog()
    small, coder = (registry.engine_for(catalog.get(name)) for name in (SMALL, CODER))  # type: ignore[arg-type]
    try:
        yield registry, small, coder
    finally:
        asyncio.run(registry.close())


def chat(engine: Any, content: str, max_tokens: int, priority: Priority = Priority.STANDARD,
         logit_bias: dict[int, float] | None = None) -> AsyncIterator[Event]:
    sampling = Sampling(max_tokens=max_tokens, temperature=0, logit_bias=logit_bias)
    return engine.chat(ChatPrompt(messages=[{"role": "user", "content": content}]), sampling, WorkOrder(priority, "q"))


async def collect(events: AsyncIterator[Event], text: str = "") -> tuple[str, Finished]:
    finished = None
    async for event in events:
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished


def test_a_second_model_unloads_the_idle_first_which_loads_again_and_answers_alike(one_at_a_time: Any) -> None:
    registry, small, coder = one_at_a_time
    residency = registry.residency
    before = unloads(SMALL)
    first = asyncio.run(collect(chat(small, "What is the capital of France?", 8)))
    assert residency.loaded() == [SMALL]

    code, code_end = asyncio.run(collect(chat(coder, "Write a Python function that adds two numbers.", 8)))
    assert code and code_end.completion_tokens == 8
    assert residency.loaded() == [CODER]
    assert unloads(SMALL) == before + 1 and memory(SMALL) == 0

    again = asyncio.run(collect(chat(small, "What is the capital of France?", 8)))
    assert again == first and first[1].completion_tokens > 0
    assert residency.loaded() == [SMALL]


def test_an_answer_in_flight_keeps_its_model_while_another_model_needs_the_room(one_at_a_time: Any) -> None:
    registry, small, coder = one_at_a_time
    story = "Tell me a story about a lighthouse."
    reference = asyncio.run(collect(chat(small, story, 32, logit_bias=NO_END)))
    assert reference[1].completion_tokens == 32

    async def meanwhile() -> tuple[tuple[str, Finished], list[str], tuple[str, Finished]]:
        events = chat(small, story, 32, logit_bias=NO_END)
        first = await anext(events)  # the answer is under way
        assert isinstance(first, Delta)
        # a provisioned call runs between the standard answer's steps
        code = await collect(chat(coder, "Write a Python function that adds two numbers.", 8, Priority.PROVISIONED))
        both = registry.residency.loaded()
        return await collect(events, first.text), both, code

    before = unloads(SMALL)
    answer, both, code = asyncio.run(meanwhile())
    assert sorted(both) == sorted([SMALL, CODER])  # over the budget while the answer ran, rather than refused
    assert code[0] and code[1].completion_tokens == 8
    # the same text and counts; the second reads the story's prompt from the cells the first left (cached_tokens)
    assert answer[0] == reference[0] and replace(answer[1], cached_tokens=0) == reference[1]
    assert answer[1].cached_tokens > 0
    assert unloads(SMALL) == before
    assert registry.residency.loaded() == [SMALL]  # once it ended, the idle model made way


def test_a_model_larger_than_the_budget_is_served_alone(one_at_a_time: Any) -> None:
    registry, small, coder = one_at_a_time
    registry.residency.budget = 1
    first = asyncio.run(collect(chat(small, "Say hi.", 4)))
    assert registry.residency.loaded() == [SMALL]  # kept, not loaded again for every call
    assert asyncio.run(collect(chat(coder, "Say hi.", 4)))[1].completion_tokens > 0
    assert registry.residency.loaded() == [CODER]
    assert asyncio.run(collect(chat(small, "Say hi.", 4))) == first


@pytest.mark.parametrize(("text", "expected"), [
    ("6GiB", 6 * 2**30), ("800MiB", 800 * 2**20), ("8GB", 8 * 10**9), ("1.5 GiB", 3 * 2**29), ("6g", 6 * 2**30),
    ("123456789", 123456789), ("25%", total_memory() // 4), ("100%", total_memory()),
])
def test_model_memory_is_a_size_with_its_unit_or_a_share_of_the_memory(monkeypatch: pytest.MonkeyPatch, text: str,
                                                                        expected: int) -> None:
    monkeypatch.setenv("AZURINE_MODEL_MEMORY", text)
    assert model_memory_budget() == expected


def test_model_memory_is_half_the_memory_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_MODEL_MEMORY", raising=False)
    assert model_memory_budget() == total_memory() // 2


@pytest.mark.parametrize("text", ["lots", "0", "-1GiB", "0%", "150%", "6 parsecs", "GiB", "5%%"])
def test_a_model_memory_that_is_no_size_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("AZURINE_MODEL_MEMORY", text)
    with pytest.raises(ValueError, match="AZURINE_MODEL_MEMORY"):
        model_memory_budget()


def test_the_server_does_not_start_with_a_model_memory_that_is_no_size(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "azurine", "serve", "--data-dir", str(tmp_path), "--port", str(free_port())],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "AZURINE_MODEL_MEMORY": "lots"})
    assert result.returncode == 2
    assert "AZURINE_MODEL_MEMORY" in result.stdout and "Traceback" not in result.stderr
