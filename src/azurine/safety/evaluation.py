"""How well the detectors agree with a labelled file: per-category precision, recall and F1 at a severity
threshold, the severity confusion matrix, and the false-positive rate on content labelled safe throughout.

Each line of the file is `{"text": ..., "labels": {"hate": "safe|low|medium|high", ..., "jailbreak": bool,
"indirect_attack": bool}}`; a category is evaluated on the lines that label it. A line may name its `"language"`
(ISO 639-1); the figures per language take it from there, or else from the text (`language.detect_language`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azurine.safety.policy import HARM, SEVERITIES

SHIELDS = ("jailbreak", "indirect_attack")


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if truth and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


@dataclass
class Report:
    threshold: str
    categories: dict[str, Counts] = field(default_factory=dict)
    # category → truth severity → predicted severity → count
    confusion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    benign: Counts = field(default_factory=Counts)  # lines labelled safe everywhere: fp = any category fired

    @property
    def false_positive_rate(self) -> float:
        total = self.benign.fp + self.benign.tn
        return self.benign.fp / total if total else 0.0


def read_labelled(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class Prediction:
    severities: dict[str, str]
    shields: dict[str, bool]


def evaluate(rows: Iterable[dict[str, Any]], predict: Callable[[list[dict[str, Any]]], list[Prediction]],
             threshold: str = "medium", batch: int = 32,
             progress: Callable[[int], None] | None = None) -> Report:
    """`predict` gets a batch of rows and answers each; `progress` hears how many rows were done."""
    level = SEVERITIES.index(threshold)
    report = Report(threshold)
    rows = list(rows)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        for row, prediction in zip(chunk, predict(chunk), strict=True):
            labels = row["labels"]
            fired = False
            all_safe = True
            for category in HARM:
                if category not in labels:
                    continue
                truth, guess = labels[category], prediction.severities[category]
                report.categories.setdefault(category, Counts()).add(
                    SEVERITIES.index(truth) >= level, SEVERITIES.index(guess) >= level)
                matrix = report.confusion.setdefault(category, {s: dict.fromkeys(SEVERITIES, 0) for s in SEVERITIES})
                matrix[truth][guess] += 1
                fired |= SEVERITIES.index(guess) >= level
                all_safe &= truth == "safe"
            for shield in SHIELDS:
                if shield not in labels:
                    continue
                report.categories.setdefault(shield, Counts()).add(bool(labels[shield]), prediction.shields[shield])
                fired |= prediction.shields[shield]
                all_safe &= not labels[shield]
            if all_safe and row.get("group"):  # the benign set: ordinary work, labelled safe throughout
                report.benign.add(False, fired)
        if progress is not None:
            progress(len(chunk))
    return report


def language_of(row: dict[str, Any]) -> str:
    """The line's `"language"`, else the language its text is detected in ("und" where none can be told)."""
    from azurine.safety.language import detect_language

    return str(row.get("language") or detect_language(row["text"]) or "und")


def evaluate_by_language(rows: Iterable[dict[str, Any]],
                         predict: Callable[[list[dict[str, Any]]], list[Prediction]],
                         threshold: str = "medium", batch: int = 32,
                         progress: Callable[[int], None] | None = None) -> dict[str, Report]:
    """One report per language, English first, then the others by code."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(language_of(row), []).append(row)
    order = sorted(groups, key=lambda code: (code != "en", code))
    return {code: evaluate(groups[code], predict, threshold, batch, progress) for code in order}
