"""The results file Azure writes for a job (`purpose: fine-tune-results`): a CSV row per step, the held-out
metrics per step where a validation file was given, and the full validation set's at the last step."""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ("step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
           "full_valid_loss", "full_valid_mean_token_accuracy")


def results_csv(steps: list[dict[str, Any]], full_valid: dict[str, float]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for index, metrics in enumerate(steps):
        row = dict(metrics)
        if index == len(steps) - 1:
            row.update(full_valid)
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5f}"
    return str(value)
