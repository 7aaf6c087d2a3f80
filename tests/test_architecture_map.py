"""The documentation stays whole: the architecture map names every package, and no relative link is dead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = ROOT / "src" / "azurine"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# written from the code by its own generator; until it lands, links to it are the only dead ones allowed
CONFIGURATION = ROOT / "docs" / "configuration.md"

MAP_ROW = re.compile(r"^\|\s*`([a-z_]+(?:/[a-z_]+)*)/`\s*\|", re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def packages() -> list[str]:
    """Packages one and two levels below `azurine`, as the map writes them (`api/inference`)."""
    found = []
    for init in sorted(PACKAGE_ROOT.glob("*/__init__.py")) + sorted(PACKAGE_ROOT.glob("*/*/__init__.py")):
        found.append(init.parent.relative_to(PACKAGE_ROOT).as_posix())
    return sorted(found)


def mapped() -> set[str]:
    """The packages named in the first column of the map's table."""
    return set(MAP_ROW.findall(ARCHITECTURE.read_text()))


def test_the_package_walk_sees_both_levels() -> None:
    # a walk that found nothing, or only the first level, would let the next test pass vacuously
    found = packages()
    assert "api" in found and "api/inference" in found


def test_every_package_is_on_the_architecture_map() -> None:
    missing = [name for name in packages() if name not in mapped()]
    rows = ", ".join(f"`{name}/`" for name in missing)
    assert not missing, f"docs/architecture.md's package table lacks a row for: {rows}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(document: Path) -> list[str]:
    """The targets of the document's inline links, outside code, that point into the repository."""
    text = INLINE_CODE.sub("", FENCE.sub("", document.read_text()))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # a URL, mailto:, or an anchor in the same page
        targets.append(target)
    return targets


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(document: Path) -> None:
    dead = []
    for target in relative_links(document):
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if path == CONFIGURATION and not CONFIGURATION.exists():
            continue
        if not path.exists():
            dead.append(target)
    assert not dead, f"{document.relative_to(ROOT)} links to missing files: {dead}"
