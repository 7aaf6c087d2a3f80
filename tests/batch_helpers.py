"""What the batch tests share: a Batch deployment, input files, polling, reading the output files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai

from azurine.storage.database import make_engine
from azurine.storage.state import StateStore

BATCH_DEPLOYMENT = "smol-batch"
FINAL = ("completed", "failed", "expired", "cancelled")


def add_batch_deployment(database_url: str, name: str = BATCH_DEPLOYMENT, sku: str = "GlobalBatch",
                         capacity: int = 1000) -> None:
    """A Batch deployment of SmolLM2 on the server's default account, written where the server reads it."""
    engine = make_engine(database_url)
    store = StateStore(engine)
    account = store.first_account()
    assert account is not None
    store.put_deployment(account.id, name, model_format="HuggingFace", model_name="SmolLM2-135M-Instruct",
                         model_version="1", sku_name=sku, sku_capacity=capacity, rai_policy_name="Microsoft.DefaultV2",
                         version_upgrade_option="NoAutoUpgrade", properties={}, tags={}, principal="test")
    engine.dispose()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'azurine.db'}"


def chat_lines(count: int, model: str = BATCH_DEPLOYMENT, max_tokens: int = 8, prefix: str = "task") -> bytes:
    topics = ["the sea", "a forest", "the moon", "a city", "rain", "a garden", "winter", "a river"]
    lines = [{"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/chat/completions",
              "body": {"model": model, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": f"Write one sentence about {topics[i % 8]}."}]}}
             for i in range(count)]
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def submit(client: openai.OpenAI | openai.AzureOpenAI, content: bytes, endpoint: str = "/chat/completions") -> Any:
    uploaded = client.files.create(file=("batch.jsonl", content), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h")


def wait_for(client: openai.OpenAI | openai.AzureOpenAI, batch_id: str, statuses: tuple[str, ...] = FINAL,
             timeout: float = 300, at_least: int = 0) -> Any:
    """Poll until the batch is in one of `statuses` (or, with `at_least`, has that many lines done)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        done = batch.request_counts.completed + batch.request_counts.failed if batch.request_counts else 0
        if batch.status in statuses and (not at_least or done >= at_least):
            return batch
        if at_least and done >= at_least:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} is still {batch.status} ({done} lines done)"
        time.sleep(0.25)


def read_lines(client: openai.OpenAI | openai.AzureOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).read().splitlines() if line.strip()]


def outcomes(client: openai.OpenAI | openai.AzureOpenAI, batch: Any) -> tuple[list[dict[str, Any]],
                                                                              list[dict[str, Any]]]:
    return read_lines(client, batch.output_file_id), read_lines(client, batch.error_file_id)


def assert_each_once(outputs: list[dict[str, Any]], errors: list[dict[str, Any]], count: int,
                     prefix: str = "task") -> None:
    """Every custom_id of the input exactly once, in the output file or in the error file."""
    seen = [line["custom_id"] for line in outputs + errors]
    assert sorted(seen) == sorted(f"{prefix}-{i}" for i in range(count)), seen
