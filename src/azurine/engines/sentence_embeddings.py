"""Sentence-transformers embedding models on the CPU, from a local directory only.

A BERT model with mean pooling and normalised vectors (the catalog's all-MiniLM-L6-v2) is computed by numpy
(`engines/bert_encoder`), which starts in a fraction of a second; any other architecture by sentence-transformers on
torch. The engine computes on the thread that calls it; the scheduler runs its calls in turn (see `BlockingEmbedder`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from azurine.catalog import ModelSpec
from azurine.engines.base import ContextLengthExceeded, Embeddings, EngineError, EngineUnavailable
from azurine.engines.bert_encoder import BertEncoder, is_pooled_bert

BATCH = 32  # sequences per forward pass: bounds memory for 2,048 long inputs


class SentenceEmbeddingEngine:
    def __init__(self, spec: ModelSpec, model_dir: Path) -> None:
        self.spec = spec
        self._dir = model_dir
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if not self._dir.exists():
                    raise EngineUnavailable(
                        f"The model files for {self.spec.name} are not installed; run `azurine models install`."
                    )
                if is_pooled_bert(self._dir):
                    self._model = BertEncoder(self._dir)
                else:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(str(self._dir), device="cpu", local_files_only=True)
                    model.max_seq_length = self.spec.context_length
                    self._model = model
            return self._model

    # residency (`scheduler/residency`): the weights' files, which torch holds in memory as stored (float32)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def footprint(self, priorities: Collection[int]) -> int:
        try:
            return sum(path.stat().st_size for path in self._dir.rglob("*") if path.is_file())
        except OSError:
            return 0

    def unload(self) -> None:
        # a call under way keeps the model it took until it ends: only this reference goes
        with self._lock:
            self._model = None

    def embed_blocking(self, inputs: list[str] | list[list[int]]) -> Embeddings:
        model = self._load()
        numpy_bert = isinstance(model, BertEncoder)
        if numpy_bert:
            cls_id, sep_id, vocab = model.cls_id, model.sep_id, model.vocab_size
        else:
            tokenizer = model.tokenizer
            cls_id, sep_id, vocab = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.vocab_size
        if inputs and isinstance(inputs[0], list):
            ids = [[cls_id, *seq, sep_id] for seq in inputs]  # type: ignore[misc]
            if any(not (0 <= t < vocab) for seq in inputs for t in seq):  # type: ignore[union-attr]
                raise EngineError(f"Invalid token in input: ids must be in [0, {vocab}).", param="input")
        elif numpy_bert:
            ids = model.token_ids(list(inputs))  # type: ignore[arg-type]
        else:
            ids = model.tokenizer(list(inputs), add_special_tokens=True, truncation=False)["input_ids"]
        for index, seq in enumerate(ids):
            if len(seq) > self.spec.context_length:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self.spec.context_length} tokens, however you "
                    f"requested {len(seq)} tokens ({len(seq)} in your prompt; 0 for the completion) for input "
                    f"{index}. Please reduce your prompt; or completion length.", "input")
        vectors = model.vectors(ids).tolist() if numpy_bert else self._torch_vectors(model, ids)
        # usage counts the text's tokens, as OpenAI's tokenizer counts them: special tokens excluded
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(seq) - 2 for seq in ids))

    @staticmethod
    def _torch_vectors(model: Any, ids: list[list[int]]) -> list[list[float]]:
        import torch

        pad = model.tokenizer.pad_token_id
        vectors: list[list[float]] = []
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            width = max(len(seq) for seq in batch)
            features = {
                "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in batch]),
                "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch]),
            }
            with torch.inference_mode():
                vectors.extend(model(features)["sentence_embedding"].tolist())
        return vectors
