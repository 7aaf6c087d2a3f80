"""Prometheus metrics of the engines, served at `/metrics` on the operator's listener (`--metrics-listen`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GENERATIONS = Counter(
    "azurine_generations_total", "Generations by model and how they ended.", ["model", "outcome"]
)
GENERATED_TOKENS = Counter("azurine_generated_tokens_total", "Tokens generated, by model.", ["model"])
PROMPT_TOKENS = Counter("azurine_prompt_tokens_total", "Prompt tokens read, by model.", ["model"])
PROMPT_TOKENS_REUSED = Counter("azurine_prompt_tokens_reused_total",
                               "Prompt tokens taken from an earlier prompt's cells, not evaluated again, by model.",
                               ["model"])
RATE_LIMITED = Counter("azurine_rate_limited_total", "Requests refused with 429, by deployment and limit.",
                       ["deployment", "limit"])
QUEUE_DEPTH = Gauge("azurine_queue_depth", "Requests waiting for a compute thread, by scheduler and class.",
                    ["scheduler", "priority"])
QUEUE_WAIT = Histogram("azurine_queue_wait_seconds", "Time from arrival to first step, by scheduler and class.",
                       ["scheduler", "priority"],
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
CONTENT_FILTERED = Counter("azurine_content_filtered_total",
                           "Prompts refused and answers cut by a blocking filter, by deployment, side, category and"
                           " language (ISO 639-1, und where it could not be told).",
                           ["deployment", "source", "category", "language"])
SCREENED = Counter("azurine_content_screened_total",
                   "Texts screened by the content filters, by side and language (ISO 639-1, und where unknown).",
                   ["source", "language"])
DIAGNOSTIC_LOGS_DROPPED = Counter("azurine_diagnostic_logs_dropped_total",
                                  "Resource-log records not delivered: their hour's file had reached its limit, or "
                                  "their setting names a workspace and no OTLP collector is configured.")
SETTLED_TOKENS = Counter("azurine_settled_tokens_total", "Actual tokens of finished requests, by deployment.",
                         ["deployment", "kind"])
IMAGES_GENERATED = Counter("azurine_images_generated_total", "Images generated, by deployment, size and quality.",
                           ["deployment", "size", "quality"])
AUDIO_SECONDS = Counter("azurine_audio_seconds_total",
                        "Seconds of audio transcribed or translated (heard) and synthesized (spoken), by deployment.",
                        ["deployment", "direction"])

BATCH_LINES = Counter(
    "azurine_batch_lines_total",
    "Batch lines whose result was stored, by outcome (succeeded: the request answered 200).",
    ["outcome"],
)
GANG_WIDTH = Histogram("azurine_batch_decode_sequences", "Answers evaluated together per decoding step, by model.",
                       ["model"], buckets=(1, 2, 4, 8, 16, 32))
MODEL_MEMORY = Gauge("azurine_model_memory_bytes",
                     "Estimated memory of each in-process model while it is loaded (0 when not), by model.", ["model"])
MODEL_MEMORY_BUDGET = Gauge("azurine_model_memory_budget_bytes",
                            "The memory the loaded in-process models may hold together (AZURINE_MODEL_MEMORY).")
MODEL_UNLOADS = Counter("azurine_model_unloads_total",
                        "In-process models unloaded to keep the loaded ones within the memory budget, by model.",
                        ["model"])
