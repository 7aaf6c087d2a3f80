"""The tokens a request is charged on arrival, as Azure estimates them: the prompt from its characters (and its
images by their size and detail), plus the completion it may produce (`max_tokens`, or the model's maximum), times
the choices asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azurine.vision.tokens import without_images

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Estimate:
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def text_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def _content_chars(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(without_images(content))


def chat_estimate(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int | None,
                  n: int, model_maximum: int, image_tokens: int = 0) -> Estimate:
    """`image_tokens`: what the messages' images count for (`vision.tokens`), in place of their URLs' characters."""
    prompt = sum(text_tokens(_content_chars(m.get("content")) + json.dumps(m.get("tool_calls") or "")) + 4
                 for m in messages) + image_tokens
    if tools:
        prompt += text_tokens(json.dumps(tools))
    return Estimate(prompt, (max_tokens if max_tokens is not None else model_maximum) * n)


def completion_estimate(prompts: list[str | list[int]], max_tokens: int | None, choices: int) -> Estimate:
    prompt = sum(len(p) if isinstance(p, list) else text_tokens(p) for p in prompts)
    return Estimate(prompt, (16 if max_tokens is None else max_tokens) * choices * len(prompts))


def embeddings_estimate(inputs: list[str] | list[list[int]]) -> Estimate:
    return Estimate(sum(len(i) if isinstance(i, list) else text_tokens(i) for i in inputs), 0)
