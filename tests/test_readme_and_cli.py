"""The README's quickstart runs as written, and the CLI manages keys and deployments."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import openai

from conftest import ROOT, Server

README = (ROOT / "README.md").read_text()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "azurine", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, cwd=ROOT)


def test_readme_gives_exactly_two_setup_commands() -> None:
    setup = README.split("## Set up", 1)[1].split("## Quickstart", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.DOTALL)
    assert [c.strip() for c in commands] == [
        "./scripts/setup.sh && .venv/bin/azurine serve",
        "./scripts/setup.sh && .venv/bin/python -m pytest",
    ]
    assert "./scripts/setup.sh && .venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_quickstart_snippet_runs(server: Server) -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    script = re.search(r"```bash\n(.*?)```", quickstart, re.DOTALL).group(1)  # type: ignore[union-attr]
    script = script.replace("http://localhost:8080", server.url)
    env = {**os.environ, "AZURINE_DATA_DIR": str(server.data_dir)}
    env.pop("AZURINE_API_KEY", None)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "paris" in lines[0].lower()
    assert lines[-1] == "384 dimensions"


def test_keys_show_prints_both_keys(server: Server) -> None:
    assert cli(server, "keys", "show").stdout.strip() == server.key
    key2 = cli(server, "keys", "show", "--key", "key2").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", key2) and key2 != server.key


def test_a_deployment_created_by_the_cli_answers_at_once(server: Server, azure: openai.AzureOpenAI) -> None:
    created = cli(server, "deployments", "create", "cli-small", "--model", "SmolLM2-135M-Instruct",
                  "--sku", "Standard", "--capacity", "5")
    assert created.returncode == 0, created.stdout + created.stderr
    result = azure.chat.completions.create(model="cli-small", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2)
    assert result.model == "smollm2-135m-instruct"


def test_the_cli_refuses_unknown_models(server: Server) -> None:
    result = cli(server, "deployments", "create", "nope", "--model", "gpt-99")
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: (DeploymentModelNotSupported) The model 'Format:None, Name:gpt-99, ")
