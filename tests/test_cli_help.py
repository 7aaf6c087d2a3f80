"""`--help` works for every `azurine` command and group, walked in-process through the Click tree."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from azurine.cli.main import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    # Typer carries its own copy of Click, so a group is known by its subcommands, not by its class
    if hasattr(command, "commands"):
        for name, child in sorted(command.commands.items()):
            found += _paths(child, (*prefix, name))
    return found


COMMANDS = _paths(typer.main.get_command(app))


def test_the_tree_is_walked() -> None:
    assert ("role", "assignment", "create") in COMMANDS
    assert ("serve",) in COMMANDS
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "azurine")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"azurine {' '.join(path)} --help: {result.output}\n{result.exception!r}"
    assert "Usage:" in result.output


def test_a_command_starts_without_the_state_store_or_torch() -> None:
    """Commands that talk to a server import none of the database layer at their start (0.27 s of each command's
    0.6 s when they did); the commands that read the store import it when they run."""
    heavy = ("sqlalchemy", "alembic", "torch", "llama_cpp", "numpy")
    probe = f"import sys, azurine.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
