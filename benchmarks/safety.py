"""What content filtering costs and how well it judges.

    .venv/bin/python benchmarks/safety.py [--runs 200] [--pairs 25]

1. Detector latency: the default policy (Microsoft.DefaultV2: four harm categories and jailbreak on the
   prompt) on a 200-token prompt (in English, German and Japanese), and its completion side (harm and
   protected material) on a 200-token answer, --runs times each in this process after a warm-up; p50 and p99.
2. Added time to first token: one `azurine serve` with two deployments of SmolLM2 — one under the default
   policy (prompt check, then the first token checked before it is released), one under a policy with every
   filter turned off — and --pairs interleaved pairs of the same streamed request; the paired difference.
3. Judgement: the detectors on the repository's evaluation set (tests/data/safety), per language: per category F1
   at the medium threshold, and the false-positive rate on the benign work prompts.

Targets (issue: content filtering): default-policy p50 under 15 ms; hold-back under 50 ms of added TTFT;
F1 ≥ 0.85 jailbreak, ≥ 0.80 each harm category; benign false-positive rate ≤ 2%.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from azurine.safety.evaluation import Prediction, evaluate_by_language, read_labelled  # noqa: E402
from azurine.safety.language_routing import LanguageRoutedClassifiers  # noqa: E402
from azurine.safety.policy import BUILT_IN_PROPERTIES, resolve  # noqa: E402
from azurine.safety.screen import Detectors  # noqa: E402
from azurine.storage.database import make_engine  # noqa: E402
from azurine.storage.state import StateStore  # noqa: E402
from conftest import API_KEY, API_VERSION, Server, start_server, stop  # noqa: E402

EVAL = ROOT / "tests" / "data" / "safety"
PROMPT_200 = ("I am preparing a quarterly report for the operations team and need help structuring it. The report "
              "covers incident response times, the migration of our database cluster to a new region, the hiring "
              "plan for the next two quarters, and the budget for cloud spending. Please suggest a clear outline "
              "with headings, a short executive summary, and a list of the metrics we should show in charts. Our "
              "audience is the leadership team, who prefer concise bullet points over long paragraphs, and who "
              "will read the report on their phones during a two-hour offsite meeting. Also mention which risks "
              "deserve a dedicated section, how to present the on-call load fairly across teams, and how to "
              "explain the delay in the migration without blaming any single team. Finally, propose three "
              "questions the leadership team should discuss at the end of the meeting.")


# the same request in German and Japanese: screening cost in another script and another language
PROMPT_200_DE = ("Ich bereite einen Quartalsbericht für das Betriebsteam vor und brauche Hilfe bei der Gliederung. "
                 "Der Bericht behandelt die Reaktionszeiten bei Störungen, den Umzug unseres Datenbank-Clusters in "
                 "eine neue Region, die Personalplanung für die nächsten zwei Quartale und das Budget für "
                 "Cloud-Kosten. Bitte schlage eine klare Gliederung mit Überschriften, eine kurze Zusammenfassung "
                 "für die "
                 "Geschäftsführung und eine Liste der Kennzahlen vor, die wir in Diagrammen zeigen sollten. Unser "
                 "Publikum ist die Leitungsebene, die knappe Stichpunkte langen Absätzen vorzieht und den Bericht "
                 "während einer zweistündigen Klausur auf dem Handy lesen wird. Erwähne auch, welche Risiken einen "
                 "eigenen Abschnitt verdienen und wie wir die Verzögerung beim Umzug erklären, ohne einem einzelnen "
                 "Team die Schuld zu geben.")
PROMPT_200_JA = ("運用チーム向けの四半期報告書を準備しているので、構成を手伝ってください。報告書では、障害対応の時間、"
                 "データベースクラスタの新しいリージョンへの移行、今後二四半期の採用計画、クラウド費用の予算を扱います。"
                 "見出しを含む分かりやすい構成案、短いエグゼクティブサマリー、グラフで示すべき指標の一覧を提案してください。"
                 "読み手は経営陣で、長い段落よりも簡潔な箇条書きを好み、二時間の社外会議の間にスマートフォンで読みます。"
                 "また、独立した章を設けるべきリスク、チーム間のオンコール負荷を公平に示す方法、特定のチームを責めずに"
                 "移行の遅れを説明する方法にも触れてください。最後に、会議の終わりに経営陣が話し合うべき質問を三つ提案して"
                 "ください。")


def percentiles(values: list[float]) -> tuple[float, float]:
    array = np.array(values) * 1000
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def detector_latency(runs: int) -> list[tuple[str, float, float]]:
    detectors = Detectors()
    detectors.warm()
    policy = resolve("Microsoft.DefaultV2")
    rows = []
    for label, source, text in (("prompt side (harm ×4, jailbreak)", "Prompt", PROMPT_200),
                                ("prompt side, German", "Prompt", PROMPT_200_DE),
                                ("prompt side, Japanese", "Prompt", PROMPT_200_JA),
                                ("completion side (harm ×4, protected material)", "Completion", PROMPT_200)):
        for _ in range(10):
            detectors.screen(policy, source, text, attacks=text)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            detectors.screen(policy, source, text, attacks=text)
            times.append(time.perf_counter() - started)
        rows.append((label, *percentiles(times)))
    return rows


def unfiltered_policy() -> dict[str, Any]:
    filters = [{**f, "enabled": False} for f in BUILT_IN_PROPERTIES["Microsoft.DefaultV2"]["contentFilters"]]
    return {"basePolicyName": "Microsoft.DefaultV2", "contentFilters": filters, "customBlocklists": [],
            "mode": "Default"}


def add_deployments(data_dir: Path, model: str = "SmolLM2-135M-Instruct") -> dict[str, str]:
    """Two deployments of `model` in the server's account: "filtered" (the default policy) and "unfiltered" (a
    policy that turns every filter off); their names by role."""
    store = StateStore(make_engine(f"sqlite:///{data_dir / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    store.put_child(account.id, "raiPolicies", "no-filters", properties=unfiltered_policy(), tags={},
                    principal="benchmark")
    names = {}
    for role, policy in (("filtered", "Microsoft.DefaultV2"), ("unfiltered", "no-filters")):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        store.put_deployment(account.id, name, model_format="x", model_name=model,
                             model_version="1", sku_name="GlobalStandard", sku_capacity=1000, rai_policy_name=policy,
                             version_upgrade_option="NoAutoUpgrade", properties={}, tags={}, principal="benchmark")
        names[role] = name
    return names


def first_token(http: httpx.Client, server: Server, deployment: str, content: str) -> float | None:
    """Seconds to the first content chunk; None when the prompt was refused by the content filter."""
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0, "stream": True}
    url = f"{server.url}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"
    started = time.perf_counter()
    with http.stream("POST", url, json=body) as response:
        if response.status_code == 400 and b'"content_filter"' in response.read():
            return None
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                    return time.perf_counter() - started
    raise RuntimeError("no content in the answer")


def added_ttft(pairs: int, console: Console) -> tuple[list[float], list[float]]:
    data = Path(tempfile.mkdtemp(prefix="azurine-safety-")) / "data"
    server = start_server(data)
    try:
        names = add_deployments(data)
        filtered, unfiltered = [], []
        with httpx.Client(timeout=300, headers={"api-key": API_KEY}) as http:
            for role in ("filtered", "unfiltered"):  # load the model and the detectors
                first_token(http, server, names[role], "Hello.")
            refused = 0
            while len(filtered) < pairs:
                order = ("filtered", "unfiltered") if len(filtered) % 2 == 0 else ("unfiltered", "filtered")
                times: dict[str, float | None] = {}
                for role in order:
                    # each request its own prefix: the engine reuses an evaluated prefix, which a shared prompt
                    # would hand to whichever of the pair runs second
                    content = f"Request {uuid.uuid4().hex[:8]}. {PROMPT_200}"
                    times[role] = first_token(http, server, names[role], content)
                if times["filtered"] is None:  # a false positive of the filter: counted, and the pair is redone
                    refused += 1
                    continue
                filtered.append(times["filtered"])
                unfiltered.append(times["unfiltered"])  # type: ignore[arg-type]
                console.log(f"pair {len(filtered)}/{pairs}: {filtered[-1] * 1000:.0f} ms filtered, "
                            f"{unfiltered[-1] * 1000:.0f} ms unfiltered")
            console.log(f"{refused} of {pairs + refused} filtered requests were refused by the filter")
        return filtered, unfiltered
    finally:
        stop(server.process)


def judgement() -> dict[str, tuple[dict[str, float], float]]:
    """Per language: F1 per category and the share of benign work prompts flagged."""
    classifiers = LanguageRoutedClassifiers.load()
    rows = [row for name in ("harm_eval", "jailbreak_eval", "indirect_eval", "benign_eval")
            for path in sorted(EVAL.rglob(f"{name}.jsonl")) for row in read_labelled(path)]

    def predict(batch: list[dict[str, Any]]) -> list[Prediction]:
        texts = [r["text"] for r in batch]
        return [Prediction(h, {"jailbreak": j, "indirect_attack": i}) for h, j, i in
                zip(classifiers.harm(texts), classifiers.jailbreak(texts), classifiers.indirect_attack(texts),
                    strict=True)]

    return {language: ({name: counts.f1 for name, counts in report.categories.items()}, report.false_positive_rate)
            for language, report in evaluate_by_language(rows, predict).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=25)
    args = parser.parse_args()
    console = Console(width=120)

    latency = detector_latency(args.runs)
    table = Table(title="default policy on a 200-token text, in this process")
    for column in ("side", "p50 ms", "p99 ms", "target"):
        table.add_column(column)
    for label, p50, p99 in latency:
        table.add_row(label, f"{p50:.2f}", f"{p99:.2f}", "p50 < 15 ms" if label.startswith("prompt") else "")
    console.print(table)

    filtered, unfiltered = added_ttft(args.pairs, console)
    differences = [f - u for f, u in zip(filtered, unfiltered, strict=True)]
    table = Table(title=f"time to first token through the server, {args.pairs} interleaved pairs (SmolLM2)")
    for column in ("deployment", "p50 ms", "p99 ms", "÷ unfiltered p50"):
        table.add_column(column)
    base = percentiles(unfiltered)[0]
    for label, values in (("default policy (held back)", filtered), ("every filter off", unfiltered)):
        p50, p99 = percentiles(values)
        table.add_row(label, f"{p50:.0f}", f"{p99:.0f}", f"{p50 / base:.2f}")
    console.print(table)
    console.print(f"added by filtering (paired difference): median {statistics.median(differences) * 1000:.1f} ms "
                  "(target < 50 ms)")

    judged = judgement()
    categories = list(dict.fromkeys(name for scores, _ in judged.values() for name in scores))
    table = Table(title="the detectors on tests/data/safety, per language (F1, harm positive from medium)")
    for column in ("language", *categories, "benign flagged"):
        table.add_column(column)
    for language, (scores, fpr) in judged.items():
        table.add_row(language, *(f"{scores[c]:.3f}" if c in scores else "—" for c in categories), f"{fpr:.1%}")
    console.print(table)
    console.print("targets per language: F1 ≥ 0.80 each harm category, ≥ 0.85 jailbreak; benign flagged ≤ 2%")


if __name__ == "__main__":
    main()
