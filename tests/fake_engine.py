"""An engine with no model behind it, for in-process tests of the pipeline around the engine: it answers every
prompt with the words it was given, counted as one token a word, so a test can tell what reached it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from azurine.catalog import ModelSpec
from azurine.engines.base import ChatPrompt, Delta, Embeddings, Event, Finished, Order, Sampling, TextPrompt


@dataclass
class FakeEngine:
    spec: ModelSpec
    prompts: list[ChatPrompt | TextPrompt] = field(default_factory=list)  # what reached the engine, in order

    async def _answer(self, words: list[str], sampling: Sampling) -> AsyncIterator[Event]:
        shown = words[:sampling.max_tokens] if sampling.max_tokens is not None else words
        for word in shown:
            yield Delta(text=f"{word} ")
        yield Finished(reason="length" if len(shown) < len(words) else "stop", prompt_tokens=len(words),
                       completion_tokens=len(shown))

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: Order,
             stream: bool = True) -> AsyncIterator[Event]:
        self.prompts.append(prompt)
        text = " ".join(str(m.get("content") or "") for m in prompt.messages)
        return self._answer(text.split(), sampling)

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: Order,
                 stream: bool = True) -> AsyncIterator[Event]:
        self.prompts.append(prompt)
        return self._answer(prompt.text.split(), sampling)

    async def embed(self, inputs: list[str] | list[list[int]], order: Order | None = None) -> Embeddings:
        return Embeddings(vectors=[[float(len(i)), 1.0] for i in inputs], prompt_tokens=sum(len(i) for i in inputs))

    async def close(self) -> None:
        return None
