"""Prometheus metrics of the engines, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter

GENERATIONS = Counter(
    "azurine_generations_total", "Generations by model and how they ended.", ["model", "outcome"]
)
GENERATED_TOKENS = Counter("azurine_generated_tokens_total", "Tokens generated, by model.", ["model"])
PROMPT_TOKENS = Counter("azurine_prompt_tokens_total", "Prompt tokens evaluated, by model.", ["model"])
RATE_LIMITED = Counter("azurine_rate_limited_total", "Requests refused with 429, by deployment and limit.",
                       ["deployment", "limit"])
