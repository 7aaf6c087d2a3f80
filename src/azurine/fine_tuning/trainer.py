"""LoRA training of a catalog GGUF model on the CPU: transformers reads the GGUF (dequantized to float32), peft
adds low-rank adapters, and a plain AdamW loop trains them on the assistant turns only.

The trainer knows nothing of jobs or storage: it reports each step and each checkpoint to its `Hooks`, asks them
between steps whether to go on, and starts from the state they hand it (a checkpoint), so a job killed at any
moment resumes where its last checkpoint was. Batches are drawn in an order fixed by the seed and the epoch, so
a resumed job sees the same data at the same step as an uninterrupted one would.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from azurine.fine_tuning.gguf_loading import load_base
from azurine.fine_tuning.training_file import Example

# the modules LoRA adapts: attention's value and output, and the MLP. Not q and k: llama.cpp stores their weights
# with rows permuted, so an adapter on them would need the same permutation when written as GGUF
TARGET_MODULES = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK = 8
ALPHA = 16
IGNORE = -100


@dataclass(frozen=True)
class Work:
    """What one step trained: its tokens, and the seconds it took (what Azure bills as training time)."""

    tokens: int
    seconds: float


class Hooks(Protocol):
    def step(self, step: int, total: int, metrics: dict[str, Any], work: Work) -> None: ...
    def checkpoint(self, step: int, metrics: dict[str, Any], state: bytes) -> None: ...
    def should_stop(self, step: int) -> str | None:
        """None to go on; `pause` (a checkpoint is written first) or any other reason to stop at once."""


@dataclass(frozen=True)
class Trained:
    adapter: dict[str, Any]  # the LoRA tensors by peft's names
    trained_tokens: int
    full_valid: dict[str, float]
    steps: int
    seconds: float  # of training steps, this run only


@dataclass(frozen=True)
class Stopped:
    reason: str
    step: int


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[int]


def encode(tokenizer: Any, example: Example, limit: int) -> Encoded:
    """The conversation as the chat template writes it, learning only from assistant turns whose weight is not 0."""
    messages = [{"role": m["role"], "content": m["content"]} for m in example.messages]
    ids: list[int] = []
    labels: list[int] = []
    written = ""
    for k, message in enumerate(example.messages):
        learn = message["role"] == "assistant" and message.get("weight", "1") != "0"
        if learn:
            header = tokenizer.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
            _add(tokenizer, header, written, ids, labels, False)
            written = header
        text = tokenizer.apply_chat_template(messages[:k + 1], tokenize=False)
        _add(tokenizer, text, written, ids, labels, learn)
        written = text
    return Encoded(ids[:limit], labels[:limit])


def _add(tokenizer: Any, text: str, written: str, ids: list[int], labels: list[int], learn: bool) -> None:
    piece = text[len(written):] if text.startswith(written) else text
    tokens = tokenizer(piece, add_special_tokens=False)["input_ids"]
    ids.extend(tokens)
    labels.extend(tokens if learn else [IGNORE] * len(tokens))


def _batch(torch: Any, rows: Sequence[Encoded], pad: int) -> tuple[Any, Any, Any]:
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row.ids)] = torch.tensor(row.ids)
        labels[i, :len(row.labels)] = torch.tensor(row.labels)
        mask[i, :len(row.ids)] = 1
    return ids, labels, mask


def _measure(torch: Any, model: Any, ids: Any, labels: Any, mask: Any) -> tuple[Any, float, int]:
    """The loss, the share of learned tokens predicted exactly, and how many tokens were learned."""
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    with torch.no_grad():
        predicted = out.logits[:, :-1].argmax(-1)
        target = labels[:, 1:]
        learned = target != IGNORE
        count = int(learned.sum())
        accuracy = float((predicted[learned] == target[learned]).float().mean()) if count else 0.0
    return out.loss, accuracy, count


def _order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return order


def train(model_path: Path, examples: list[Example], validation: list[Example], hyperparameters: dict[str, Any],
          seed: int, hooks: Hooks, resume: tuple[int, bytes] | None, threads: int = 1,
          base_learning_rate: float = 1e-3) -> Trained | Stopped:
    import torch
    from peft import LoraConfig, get_peft_model

    if hooks.should_stop(0) is not None:  # cancelled or paused while queued: not worth loading the model for
        return Stopped("before loading", 0)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer, base = load_base(model_path)
    model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                            target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM"))
    rate = base_learning_rate * float(hyperparameters["learning_rate_multiplier"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=rate)
    limit = int(base.config.max_position_embeddings)
    rows = [encode(tokenizer, e, limit) for e in examples]
    held_out = [encode(tokenizer, e, limit) for e in validation]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    size = int(hyperparameters["batch_size"])
    per_epoch = math.ceil(len(rows) / size)
    total = per_epoch * int(hyperparameters["n_epochs"])
    step, tokens = 0, 0
    if resume is not None:
        saved = torch.load(io.BytesIO(resume[1]), weights_only=True)
        model.load_state_dict(saved["adapter"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        step, tokens = int(saved["step"]), int(saved["tokens"])
    model.train()
    started = time.monotonic()
    metrics: dict[str, Any] = {}
    while step < total:
        reason = hooks.should_stop(step)
        if reason is not None:
            if reason == "pause":
                hooks.checkpoint(step, metrics, _state(torch, model, optimizer, step, tokens))
            return Stopped(reason, step)
        epoch, offset = divmod(step, per_epoch)
        order = _order(len(rows), seed, epoch)
        batch = [rows[i] for i in order[offset * size:(offset + 1) * size]]
        began = time.monotonic()
        loss, accuracy, _ = _measure(torch, model, *_batch(torch, batch, pad))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        learned = sum(len(r.ids) for r in batch)
        tokens += learned
        step += 1
        metrics = {"step": step, "train_loss": loss.item(), "train_mean_token_accuracy": accuracy}
        if held_out:
            metrics.update(_validate(torch, model, [held_out[(step - 1) % len(held_out)]], pad, "valid"))
        hooks.step(step, total, metrics, Work(learned, time.monotonic() - began))
        if step % per_epoch == 0:
            hooks.checkpoint(step, metrics, _state(torch, model, optimizer, step, tokens))
    full = _validate(torch, model, held_out, pad, "full_valid") if held_out else {}
    return Trained({k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}, tokens, full,
                   total, time.monotonic() - started)


def _validate(torch: Any, model: Any, rows: list[Encoded], pad: int, prefix: str) -> dict[str, float]:
    losses, accuracies = [], []
    model.eval()
    with torch.no_grad():
        for row in rows:
            loss, accuracy, _ = _measure(torch, model, *_batch(torch, [row], pad))
            losses.append(loss.item())
            accuracies.append(accuracy)
    model.train()
    return {f"{prefix}_loss": sum(losses) / len(losses), f"{prefix}_mean_token_accuracy":
            sum(accuracies) / len(accuracies)}


def _state(torch: Any, model: Any, optimizer: Any, step: int, tokens: int) -> bytes:
    buffer = io.BytesIO()
    torch.save({"adapter": {k: v for k, v in model.state_dict().items() if "lora_" in k},
                "optimizer": optimizer.state_dict(), "step": step, "tokens": tokens}, buffer)
    return buffer.getvalue()
