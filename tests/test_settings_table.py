"""The settings table is the one place `AZURINE_*` variables are read and documented from."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from azurine import settings_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "azurine"
MIGRATIONS = PACKAGE / "storage" / "migrations"

NAME = re.compile(r"AZURINE_[A-Z_]+")
# any way of reaching the environment: os.environ / environ / os.getenv / getenv
ENVIRONMENT = re.compile(r"\b(?:os\.)?(?:environ|getenv)\b")
# ...and the only form allowed outside the table: a string literal naming the variable, so the name is visible
LITERAL_ACCESS = re.compile(
    r"""(?:os\.)?(?:environ(?:\.get|\.setdefault|\.pop)?\s*[\[(]|getenv\s*\()\s*(['"])([A-Za-z0-9_]+)\1""")
TYPER_ENVVAR_LITERAL = re.compile(r"""\benvvar\s*=\s*[\[(]?\s*['"]""")


def _sources() -> dict[str, str]:
    return {path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(PACKAGE.rglob("*.py")) if MIGRATIONS not in path.parents}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configuration_doc", ROOT / "scripts" / "configuration_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _environment_reads_outside_table(source: str) -> list[str]:
    """Each access to the environment that is not a literal non-`AZURINE_` name, as written."""
    found = []
    for access in ENVIRONMENT.finditer(source):
        literal = LITERAL_ACCESS.match(source, access.start())
        if literal is None or literal.group(2).startswith("AZURINE_"):
            found.append(source[access.start():access.start() + 60].splitlines()[0])
    return found


def test_the_configuration_page_is_what_the_generator_renders_now() -> None:
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == _generator().render(), (
        "docs/configuration.md is stale: run `.venv/bin/python scripts/configuration_doc.py` and commit the result")


def test_the_page_lists_every_setting_and_every_serve_flag() -> None:
    generator = _generator()
    page = generator.render()
    for setting in settings_table.SETTINGS:
        assert f"| `{setting.env}` |" in page
    for option in generator.serve_options():
        assert any(f"`{name}" in page for name in option.opts if name.startswith("--")), option.opts
    assert "`--host`" in page and "`--private-listen HOST:PORT`" in page


def test_no_module_reads_an_azurine_variable_around_the_table() -> None:
    sources = _sources()
    offenders = {module: reads for module, source in sources.items()
                 if module != "settings_table.py"
                 and (reads := _environment_reads_outside_table(source))}
    assert offenders == {}, "read AZURINE_* variables with azurine.settings_table.read"
    typer_literals = [module for module, source in sources.items() if TYPER_ENVVAR_LITERAL.search(source)]
    assert typer_literals == [], "name a typer option's variable with azurine.settings_table.envvar"


def test_every_azurine_variable_named_in_the_code_is_in_the_table() -> None:
    named = {name: module for module, source in _sources().items() for name in NAME.findall(source)}
    missing = {name: module for name, module in named.items() if name not in settings_table.BY_NAME}
    assert missing == {}, "add these to azurine.settings_table.SETTINGS"


def test_every_setting_in_the_table_is_named_by_the_code() -> None:
    code = "\n".join(source for module, source in _sources().items() if module != "settings_table.py")
    unused = [setting.env for setting in settings_table.SETTINGS if setting.env not in code]
    assert unused == [], "these are documented but nothing reads them"


def test_the_table_names_each_variable_once_and_says_something_of_each() -> None:
    names = [setting.env for setting in settings_table.SETTINGS]
    assert len(names) == len(set(names))
    for setting in settings_table.SETTINGS:
        assert NAME.fullmatch(setting.env) and setting.meaning.strip() and setting.default.strip(), setting


def test_read_gives_what_os_environ_gives_and_refuses_names_the_table_lacks(monkeypatch) -> None:
    monkeypatch.delenv("AZURINE_REGION", raising=False)
    assert settings_table.read("AZURINE_REGION") is None
    assert settings_table.read("AZURINE_REGION", "local") == "local"
    monkeypatch.setenv("AZURINE_REGION", "")
    assert settings_table.read("AZURINE_REGION", "local") == ""  # empty stays empty, as with os.environ.get
    monkeypatch.setenv("AZURINE_REGION", "westeurope")
    assert settings_table.read("AZURINE_REGION") == "westeurope"
    monkeypatch.setenv("AZURINE_NOT_A_SETTING", "1")
    with pytest.raises(settings_table.UnknownSetting):
        settings_table.read("AZURINE_NOT_A_SETTING")
    with pytest.raises(KeyError):
        settings_table.envvar("AZURINE_NOT_A_SETTING")
    assert settings_table.envvar("AZURINE_ROLE") == "AZURINE_ROLE"
