"""`azurine safety eval FILE.jsonl`: the content filters against labelled data, so an operator can choose
thresholds from figures rather than from trust."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from azurine.safety.evaluation import Report

app = typer.Typer(help="Content filtering: evaluate the detectors on labelled data.", no_args_is_help=True)
console = Console()


@app.command("eval")
def safety_eval(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False,
                                       help='JSON Lines: {"text": ..., "labels": {"hate": "medium", ...}}'),
    threshold: str = typer.Option("medium", help="the severity from which a harm category counts as positive"),
) -> None:
    """Per-category precision, recall and F1 at the threshold, the severity confusion matrices, and the
    false-positive rate on the lines labelled safe throughout."""
    from azurine.safety.evaluation import Prediction, evaluate, evaluate_by_language, read_labelled
    from azurine.safety.language_routing import LanguageRoutedClassifiers
    from azurine.safety.policy import HARM, SEVERITIES

    if threshold not in SEVERITIES[1:]:
        console.print(f"[red]--threshold is one of {', '.join(SEVERITIES[1:])}[/]")
        raise typer.Exit(2)
    rows = [row for path in files for row in read_labelled(path)]
    classifiers = LanguageRoutedClassifiers.load()

    def predict(batch: list[dict[str, Any]]) -> list[Prediction]:
        texts = [row["text"] for row in batch]
        harm = classifiers.harm(texts)
        jailbreak = classifiers.jailbreak(texts)
        indirect = classifiers.indirect_attack(texts)
        return [Prediction(h, {"jailbreak": j, "indirect_attack": i})
                for h, j, i in zip(harm, jailbreak, indirect, strict=True)]

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"checking {len(rows)} lines", total=len(rows))
        reports = evaluate_by_language(rows, predict, threshold, progress=lambda done: progress.advance(task, done))
    report = evaluate(rows, predict, threshold) if len(reports) > 1 else next(iter(reports.values()))

    table = Table("category", "support", "precision", "recall", "F1",
                  title=f"{len(rows)} lines; harm positive from {threshold}")
    for category, counts in report.categories.items():
        table.add_row(category, str(counts.support), f"{counts.precision:.3f}", f"{counts.recall:.3f}",
                      f"{counts.f1:.3f}")
    console.print(table)
    for category in HARM:
        if category not in report.confusion:
            continue
        matrix = Table("labelled \\ predicted", *SEVERITIES, title=f"{category}: severity confusion")
        for truth in SEVERITIES:
            matrix.add_row(truth, *(str(report.confusion[category][truth][guess]) for guess in SEVERITIES))
        console.print(matrix)
    if len(reports) > 1:
        console.print(_language_table(reports, threshold))
    benign = report.benign.fp + report.benign.tn
    if benign:
        console.print(f"benign lines: {benign}, false positives: {report.benign.fp} "
                      f"({report.false_positive_rate:.1%})")


def _language_table(reports: dict[str, Report], threshold: str) -> Table:
    """F1 per category and the benign false-positive rate, a row per language."""
    columns = list(dict.fromkeys(c for report in reports.values() for c in report.categories))
    table = Table("language", "lines", *columns, "benign flagged",
                  title=f"F1 per language; harm positive from {threshold}")
    for code, report in reports.items():
        lines = sum(c.support for c in report.categories.values())
        cells = [f"{report.categories[c].f1:.3f}" if c in report.categories and report.categories[c].support else "-"
                 for c in columns]
        benign = report.benign.fp + report.benign.tn
        table.add_row(code, str(lines), *cells, f"{report.false_positive_rate:.1%} of {benign}" if benign else "-")
    return table


@app.command("events")
def safety_events(
    account: str | None = typer.Option(None, help="one account's events (default: every account's)"),
    limit: int = typer.Option(50, min=1),
    data_dir: Path | None = typer.Option(None, help="The server's data directory (default: ./azurine-data)."),
) -> None:
    """The newest prompts refused and answers cut by a blocking filter (content only where kept)."""
    from datetime import UTC, datetime

    from azurine.cli.quota import _account_id, _store
    from azurine.config import Settings
    from azurine.storage.content import unseal_text
    from azurine.storage.envelope import EnvelopeSealer
    from azurine.storage.key_providers import KeyUnavailable

    store = _store(data_dir)
    account_id = _account_id(store, account, console)
    sealer = EnvelopeSealer.open(store.engine, Settings.load(data_dir).data_dir)

    def shown(account_id: str, stored: str | None) -> str:
        if stored is None:
            return ""
        try:
            return unseal_text(sealer, account_id, stored)
        except KeyUnavailable:
            return "(sealed: the account's key is not accessible)"

    table = Table("time (UTC)", "deployment", "side", "category", "severity", "content")
    for event in store.filter_events(account_id, limit):
        table.add_row(datetime.fromtimestamp(event.at, UTC).strftime("%Y-%m-%d %H:%M:%S"), event.deployment,
                      event.source, event.category, event.severity, shown(event.account_id, event.content)[:60])
    console.print(table)
