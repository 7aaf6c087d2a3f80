"""Batch-class answers decoded together in one llama.cpp pass: each is whole and correct on its own, whatever it
asks for (stop sequences, logprobs, JSON), and several really share the steps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from azurine.catalog import load_catalog
from azurine.config import default_models_dir
from azurine.engines.base import ChatPrompt, Delta, EngineError, Finished, Sampling
from azurine.scheduler.priority import Priority
from azurine.scheduler.registry import EngineRegistry
from azurine.scheduler.work import WorkOrder

MODEL = "SmolLM2-135M-Instruct"


def gang_steps(width: float) -> float:
    labels = {"model": MODEL, "le": str(float(width))}
    return REGISTRY.get_sample_value("azurine_batch_decode_sequences_bucket", labels) or 0


async def answer(engine: Any, content: str, sampling: Sampling, priority: Priority) -> tuple[str, Finished, list]:
    text, finished, logprobs = "", None, []
    prompt = ChatPrompt(messages=[{"role": "user", "content": content}])
    async for event in engine.chat(prompt, sampling, WorkOrder(priority, "q")):
        if isinstance(event, Delta):
            text += event.text
            logprobs += event.logprobs
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished, logprobs


@pytest.fixture(scope="module")
def engine() -> Any:
    spec = load_catalog().get(MODEL)
    assert spec is not None
    return EngineRegistry(default_models_dir()).engine_for(spec)


def test_batch_answers_share_steps_and_each_keeps_its_own_settings(engine: Any) -> None:
    plain = Sampling(max_tokens=12, temperature=0)
    # answers far longer than 12 tokens whichever way they go. Numbers summed in a batch of several differ in their
    # last bits (see `LlamaCppEngine._gang_for`), so an answer may take another greedy path where two tokens nearly
    # tie: "Name a colour and a fruit, number 0." took three paths in 12 runs here, and in one CI run it ended
    # before its 12th token
    requests = [(f"Count from {i + 1} to {i + 30}.", plain) for i in range(6)]
    requests += [
        ("Write a sentence about the sea.", Sampling(max_tokens=40, temperature=0, stop=("e",))),
        ("Say hello.", Sampling(max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)),
        ("Give a JSON object with a key named a.", Sampling(max_tokens=30, temperature=0,
                                                            response_format={"type": "json_object"})),
    ]
    before_single, before_all = gang_steps(1), gang_steps(32)

    async def run_all() -> list[tuple[str, Finished, list]]:
        return await asyncio.gather(*(answer(engine, c, s, Priority.BATCH) for c, s in requests))

    results = asyncio.run(run_all())
    single, total = gang_steps(1) - before_single, gang_steps(32) - before_all
    assert total > single, "no step carried more than one answer"
    for (_, sampling), (text, finished, _) in zip(requests, results, strict=True):
        assert finished.completion_tokens <= (sampling.max_tokens or 0)
        assert finished.prompt_tokens > 0 and text
    plain_text, plain_end, _ = results[0]
    assert plain_end.reason == "length" and plain_end.completion_tokens == 12
    counted, counted_end, _ = results[6]
    assert "e" not in counted and counted_end.reason == "stop"
    said, _, logprobs = results[7]
    assert len(logprobs) == results[7][1].completion_tokens
    assert "".join(lp.token for lp in logprobs) == said and all(len(lp.top_logprobs) == 2 for lp in logprobs)
    json_text, json_end, _ = results[8]
    if json_end.reason == "stop":
        assert isinstance(json.loads(json_text), dict)


def test_a_request_too_long_for_the_model_fails_alone(engine: Any) -> None:
    async def run_both() -> list[Any]:
        return await asyncio.gather(
            answer(engine, "word " * 9000, Sampling(max_tokens=4, temperature=0), Priority.BATCH),
            answer(engine, "Say hi.", Sampling(max_tokens=4, temperature=0), Priority.BATCH),
            return_exceptions=True)

    too_long, fine = asyncio.run(run_both())
    assert isinstance(too_long, EngineError) and too_long.param == "messages"
    assert not isinstance(fine, BaseException) and fine[1].completion_tokens == 4
