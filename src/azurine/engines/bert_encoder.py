"""BERT sentence vectors in numpy, from a sentence-transformers directory (all-MiniLM-L6-v2 and its kind).

It reads the directory's safetensors weights and `tokenizer.json` and computes what sentence-transformers computes
for a BERT model with mean pooling and a Normalize module: the same token ids, and vectors equal to its float32 ones
within rounding (cosine above 0.99999 on the safety evaluation set). It exists because importing torch and
sentence-transformers took 4.4 s of CPU on two cores, paid by every server at its first screened text (the
English classifiers' second stage) and again at its first embeddings request; this module imports in 0.1 s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BATCH = 32  # sequences per forward pass: bounds memory for 2,048 long inputs
# numpy's BLAS on one thread: the vectors of the safety evaluation set (1,049 texts) took 6.0 s of CPU so and 15.6 s
# on two threads, which spin while the decoding steps beside them hold the cores
BLAS_THREADS = 1

# Abramowitz and Stegun 7.1.26: erf within 1.5e-7, float32's own rounding, where numpy has no erf
_P = np.float32(0.3275911)
_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU (`hidden_act: gelu`), not the tanh approximation: x * (1 + erf(x / sqrt 2)) / 2, with
    erf(z) = sign(z) * (1 - poly(t) * exp(-z^2)) and t = 1 / (1 + p|z|), worked in place on few arrays."""
    z = np.abs(x) * np.float32(0.7071067811865476)
    decay = np.square(z)
    np.negative(decay, out=decay)
    np.exp(decay, out=decay)
    t = z
    t *= _P
    t += np.float32(1)
    np.reciprocal(t, out=t)
    a1, a2, a3, a4, a5 = _A
    poly = t * a5
    for a in (a4, a3, a2, a1):
        poly += a
        poly *= t
    poly *= decay  # 1 - |erf|
    np.copysign(poly, x, out=poly)  # (1 - |erf|) with x's sign; 1 + erf = 1 + sign - that
    result = np.sign(x)
    result += np.float32(1)
    result -= poly
    result *= x
    result *= np.float32(0.5)
    return result


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(variance + np.float32(eps)) * weight + bias


def is_pooled_bert(directory: Path) -> bool:
    """Whether a sentence-transformers directory holds what `BertEncoder` computes: a BERT model with GELU, then
    mean pooling, then normalisation, its weights in safetensors and its tokenizer in `tokenizer.json`."""
    try:
        config = json.loads((directory / "config.json").read_text())
        modules = [m.get("type", "") for m in json.loads((directory / "modules.json").read_text())]
        pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, AttributeError):
        return False
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode") and value}
    return (config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and [m.rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
            and modes == {"pooling_mode_mean_tokens"}
            and (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file())


def sentence_max_tokens(directory: Path) -> int | None:
    """The directory's `max_seq_length` (sentence_bert_config.json): sentence-transformers truncates there."""
    try:
        return int(json.loads((directory / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class _Layer:
    qkv_weight: np.ndarray  # (hidden, 3 * hidden): query, key and value in one product
    qkv_bias: np.ndarray
    out_weight: np.ndarray
    out_bias: np.ndarray
    norm_1: tuple[np.ndarray, np.ndarray]
    up_weight: np.ndarray
    up_bias: np.ndarray
    down_weight: np.ndarray
    down_bias: np.ndarray
    norm_2: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """Normalised mean-pooled vectors of a BERT encoder; `max_tokens` truncates as sentence-transformers'
    `max_seq_length` does ([CLS] and [SEP] kept), None leaves the caller to refuse what is too long."""

    def __init__(self, directory: Path, max_tokens: int | None = None) -> None:
        from safetensors.numpy import load_file
        from threadpoolctl import threadpool_limits
        from tokenizers import Tokenizer

        threadpool_limits(limits=BLAS_THREADS, user_api="blas")  # for the process: numpy has one BLAS

        config = json.loads((directory / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{directory} does not hold a BERT model with GELU activations")
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self.vocab_size = int(config["vocab_size"])
        self.max_positions = int(config["max_position_embeddings"])

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.no_padding()
        if max_tokens is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer = tokenizer
        self.cls_id = self._special(tokenizer, "[CLS]")
        self.sep_id = self._special(tokenizer, "[SEP]")
        self.pad_id = int(config.get("pad_token_id", 0))

        weights = load_file(str(directory / "model.safetensors"))

        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def linear(name: str) -> np.ndarray:  # torch stores (out, in); x @ W wants (in, out)
            return np.ascontiguousarray(weights[name].T, dtype=np.float32)

        self._words = w("embeddings.word_embeddings.weight")
        self._positions = w("embeddings.position_embeddings.weight")
        self._type_0 = w("embeddings.token_type_embeddings.weight")[0]
        self._norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self._layers = []
        for index in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{index}."
            attention = p + "attention.self."
            self._layers.append(_Layer(
                qkv_weight=np.concatenate([linear(attention + part + ".weight") for part in ("query", "key", "value")],
                                          axis=1),
                qkv_bias=np.concatenate([w(attention + part + ".bias") for part in ("query", "key", "value")]),
                out_weight=linear(p + "attention.output.dense.weight"), out_bias=w(p + "attention.output.dense.bias"),
                norm_1=(w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias")),
                up_weight=linear(p + "intermediate.dense.weight"), up_bias=w(p + "intermediate.dense.bias"),
                down_weight=linear(p + "output.dense.weight"), down_bias=w(p + "output.dense.bias"),
                norm_2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"))))

    @staticmethod
    def _special(tokenizer: object, token: str) -> int:
        found = tokenizer.token_to_id(token)  # type: ignore[attr-defined]
        if found is None:
            raise ValueError(f"the tokenizer has no {token} token")
        return int(found)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids with [CLS] and [SEP], as the model reads them."""
        return [list(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectors(self.token_ids(texts))

    def vectors(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One unit vector per sequence of ids (each with its [CLS] and [SEP]), shape (len(ids), hidden)."""
        out = np.zeros((len(ids), self._words.shape[1]), dtype=np.float32)
        # sequences of like length share a batch, so padding costs little (sentence-transformers sorts the same way)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), BATCH):
            chosen = order[start:start + BATCH]
            out[chosen] = self._forward([ids[i] for i in chosen])
        return out

    def _forward(self, batch: list[Sequence[int]]) -> np.ndarray:
        width = max(len(seq) for seq in batch)
        tokens = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, seq in enumerate(batch):
            tokens[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        # the hidden states as one (tokens, hidden) matrix, so that each linear layer is a single BLAS product
        x = (self._words[tokens] + self._positions[:width] + self._type_0).reshape(-1, self._words.shape[1])
        x = _layer_norm(x, *self._norm, self._eps)
        # a padded key gets a score no query can pick (finite, so that taking the row's maximum off cannot overflow)
        key_bias = ((np.float32(1) - mask) * np.float32(-1e9))[:, None, None, :]
        size, hidden = len(batch), x.shape[-1]
        head = hidden // self._heads
        scale = np.float32(1 / np.sqrt(head))
        for layer in self._layers:
            qkv = x @ layer.qkv_weight
            qkv += layer.qkv_bias
            # contiguous heads: numpy hands stacked products to BLAS only when each matrix is contiguous
            q, k, v = (np.ascontiguousarray(qkv[:, i * hidden:(i + 1) * hidden]
                                            .reshape(size, width, self._heads, head).transpose(0, 2, 1, 3))
                       for i in range(3))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))
            scores *= scale
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(-1, hidden)
            attended = context @ layer.out_weight
            attended += layer.out_bias
            attended += x
            x = _layer_norm(attended, *layer.norm_1, self._eps)
            up = x @ layer.up_weight
            up += layer.up_bias
            down = _gelu(up) @ layer.down_weight
            down += layer.down_bias
            down += x
            x = _layer_norm(down, *layer.norm_2, self._eps)
        x = x.reshape(size, width, hidden)
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return (pooled / norms).astype(np.float32)
