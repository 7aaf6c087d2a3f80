"""A job's hyperparameters with `auto` resolved, as the job shows them from its creation on."""

from __future__ import annotations

from typing import Any

# LoRA learns at a higher rate than full fine-tuning: the multiplier scales this
BASE_LEARNING_RATE = 1e-3


def auto_epochs(examples: int) -> int:
    """More passes over a small file, as OpenAI's `auto` does; 3 at most, so a CPU job stays short."""
    return 3 if examples < 50 else 2 if examples < 200 else 1


def resolve(n_epochs: int | str | None, batch_size: int | str | None, multiplier: float | str | None,
            examples: int) -> dict[str, Any]:
    return {
        "n_epochs": n_epochs if isinstance(n_epochs, int) else auto_epochs(examples),
        "batch_size": batch_size if isinstance(batch_size, int) else 1,
        "learning_rate_multiplier": float(multiplier) if isinstance(multiplier, int | float) else 1.0,
    }
