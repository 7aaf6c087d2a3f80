"""How fast a fine-tuning job trains on this machine: steps per second and seconds per epoch.

    .venv/bin/python benchmarks/fine_tuning.py [--examples 12] [--epochs 2] [--threads 1 2]

Azurine's trainer (`fine_tuning/trainer.py`: SmolLM2-135M-Instruct's GGUF read by transformers and dequantized to
float32, LoRA by peft on v, o and the MLP, AdamW, batch size 1) runs a job of `--examples` chat examples for
`--epochs` epochs, with a checkpoint at the end of each epoch as the worker takes it, on each thread count given; the
peer is the same model and adapters trained by a bare peft loop on the same batches (no hooks, no checkpoints), so
the ratio is what the job's bookkeeping costs. The model's load is timed apart. A job's worker trains on one thread
at nice 19 by default (AZURINE_FINE_TUNING_THREADS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from azurine.catalog import load_catalog
from azurine.config import default_models_dir
from azurine.fine_tuning.trainer import ALPHA, RANK, TARGET_MODULES, Work, _batch, _measure, encode, train
from azurine.fine_tuning.training_file import read_examples

MODEL = "SmolLM2-135M-Instruct"
QUESTIONS = ("What is the capital of France?", "How are you today?", "Tell me a joke.", "What is 2 + 2?",
             "Name a colour.", "Who wrote Hamlet?", "What is the weather like?", "Give me a recipe.",
             "Translate hello into Spanish.", "What is Python?", "Describe the sea.", "Recommend a book.")


class Timing:
    """The trainer's hooks: each step's seconds, and each checkpoint's size and when it was taken."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.tokens = 0
        self.checkpoints = 0

    def step(self, step: int, total: int, metrics: dict[str, Any], work: Work) -> None:
        self.steps.append(work.seconds)
        self.tokens += work.tokens

    def checkpoint(self, step: int, metrics: dict[str, Any], state: bytes) -> None:
        self.checkpoints += 1

    def should_stop(self, step: int) -> str | None:
        return None


def examples(count: int, model_path: Path) -> list[Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    lines = [{"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
                           {"role": "assistant", "content": f"The answer, number {i}, is ZEBRA-42."}]}
             for i in range(count)]
    content = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    found, problem = read_examples(content, lambda text: len(tokenizer.encode(text)), 2048)
    assert problem is None, problem
    return found


def azurine_job(model_path: Path, rows: list[Any], epochs: int, threads: int) -> tuple[float, Timing]:
    hooks = Timing()
    began = time.perf_counter()
    train(model_path, rows, [], {"n_epochs": epochs, "batch_size": 1, "learning_rate_multiplier": 1.0}, 7, hooks,
          None, threads=threads)
    return time.perf_counter() - began, hooks


def bare_peft(model_path: Path, rows: list[Any], epochs: int, threads: int) -> tuple[float, list[float]]:
    """The same model, adapters and batches in a loop of forward, backward and AdamW steps, nothing else."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(7)
    began = time.perf_counter()
    folder, name = str(model_path.parent), model_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    load = time.perf_counter() - began
    model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                            target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    encoded = [encode(tokenizer, row, int(base.config.max_position_embeddings)) for row in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    steps = []
    for _ in range(epochs):
        for row in encoded:
            step_began = time.perf_counter()
            loss, _, _ = _measure(torch, model, *_batch(torch, [row], pad))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps.append(time.perf_counter() - step_began)
    return load, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    options = parser.parse_args()
    spec = load_catalog().get(MODEL)
    assert spec is not None
    model_path = spec.path_in(default_models_dir())
    if not model_path.exists():
        sys.exit(f"{model_path} is not installed: run `azurine models install` first")
    rows = examples(options.examples, model_path)
    console = Console()
    table = Table(title=f"LoRA on {MODEL}, {options.examples} examples x {options.epochs} epochs, batch size 1")
    for column in ("threads", "run", "model load (s)", "step p50 (s)", "steps/s", "s/epoch", "tokens/s",
                   "job (s)", "x bare peft"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for threads in options.threads:
        load, bare_steps = bare_peft(model_path, rows, options.epochs, threads)
        job, hooks = azurine_job(model_path, rows, options.epochs, threads)
        training = sum(hooks.steps)
        per_epoch = training / options.epochs
        table.add_row(str(threads), "bare peft", f"{load:.1f}", f"{statistics.median(bare_steps):.3f}",
                      f"{len(bare_steps) / sum(bare_steps):.2f}", f"{sum(bare_steps) / options.epochs:.1f}", "",
                      "", "1.00")
        table.add_row(str(threads), "Azurine job", f"{job - training:.1f}", f"{statistics.median(hooks.steps):.3f}",
                      f"{len(hooks.steps) / training:.2f}", f"{per_epoch:.1f}", f"{hooks.tokens / training:.0f}",
                      f"{job:.1f}", f"{sum(bare_steps) / training:.2f}")
    console.print(table)
    console.print("model load for the job: the whole job's time less its steps' (loading, adapters, checkpoints); "
                  "x bare peft: the bare loop's training seconds over the job's (1.00: no overhead).")


if __name__ == "__main__":
    main()
