"""How often `tool_choice: "auto"` gives an agent a call it can use, on the set in tests/data/tool_calls.

    .venv/bin/python benchmarks/tool_calls.py [--deployment chat] [--max-tokens 200] [--concurrency 4] [--rows]

One `azurine serve` (its default deployments) gets each prompt of tests/data/tool_calls/prompts.jsonl through the
openai SDK on chat completions, with the row's tools, `tool_choice: "auto"` and temperature 0. Reported:

- call rate: answers with a structured call, of the prompts where a tool fits;
- right tool: answers whose first call names the expected tool, of the same prompts;
- valid arguments: calls whose arguments are a JSON object that validates against the tool's parameters
  (with `jsonschema` or `jsonschema_rs` where one is installed, else required keys and JSON types), of all calls made;
- false calls: answers with a call, of the prompts where no tool fits;
- call left as text: answers without a structured call whose text holds `"name"` and an offered tool's name.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_server, stop  # noqa: E402

PROMPTS = ROOT / "tests" / "data" / "tool_calls" / "prompts.jsonl"
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
    "array": (list,), "null": (type(None),),
}


@dataclass
class Outcome:
    row: dict[str, Any]
    names: list[str]
    valid: list[bool]
    content: str
    finish: str


def valid_arguments(arguments: str, schema: dict[str, Any]) -> bool:
    try:
        value = json.loads(arguments)
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    try:
        import jsonschema
    except ImportError:
        try:
            import jsonschema_rs
        except ImportError:
            return _roughly_valid(value, schema)
        return bool(jsonschema_rs.is_valid(schema, value))
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


def _roughly_valid(value: dict[str, Any], schema: dict[str, Any]) -> bool:
    if any(key not in value for key in schema.get("required", [])):
        return False
    for key, item in value.items():
        wanted = schema.get("properties", {}).get(key, {}).get("type")
        if wanted is None:
            continue
        if isinstance(item, bool) and wanted in ("integer", "number"):
            return False
        if not isinstance(item, JSON_TYPES.get(wanted, (object,))):
            return False
    return True


def ask(client: openai.AzureOpenAI, deployment: str, row: dict[str, Any], max_tokens: int) -> Outcome:
    result = client.chat.completions.create(
        model=deployment, messages=row["messages"], tools=row["tools"], tool_choice="auto", temperature=0,
        max_tokens=max_tokens,
    )
    choice = result.choices[0]
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in row["tools"]}
    calls = choice.message.tool_calls or []
    return Outcome(row, [c.function.name for c in calls],
                   [c.function.name in schemas and valid_arguments(c.function.arguments, schemas[c.function.name])
                    for c in calls],
                   choice.message.content or "", choice.finish_reason)


def left_as_text(outcome: Outcome) -> bool:
    offered = [t["function"]["name"] for t in outcome.row["tools"]]
    return not outcome.names and '"name"' in outcome.content and any(n in outcome.content for n in offered)


def rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "-"


def summary(outcomes: list[Outcome], title: str) -> Table:
    expected = [o for o in outcomes if o.row["expected_tool"] is not None]
    unexpected = [o for o in outcomes if o.row["expected_tool"] is None]
    valid = [v for o in outcomes for v in o.valid]
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_row("call rate (a tool fits)", rate(sum(bool(o.names) for o in expected), len(expected)))
    table.add_row("right tool (a tool fits)",
                  rate(sum(o.names[:1] == [o.row["expected_tool"]] for o in expected), len(expected)))
    table.add_row("valid arguments (all calls)", rate(sum(valid), len(valid)))
    table.add_row("false calls (no tool fits)", rate(sum(bool(o.names) for o in unexpected), len(unexpected)))
    table.add_row("call left as text (all prompts)", rate(sum(left_as_text(o) for o in outcomes), len(outcomes)))
    return table


def details(outcomes: list[Outcome]) -> Table:
    table = Table(title="per prompt")
    for column in ("id", "expected", "calls", "valid", "finish", "content"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        table.add_row(o.row["id"], o.row["expected_tool"] or "-", ", ".join(o.names) or "-",
                      "".join("y" if v else "n" for v in o.valid) or "-", o.finish,
                      o.content[:80].replace("\n", "\\n"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployment", default="chat")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rows", action="store_true", help="print each prompt's outcome too")
    args = parser.parse_args()
    console = Console(width=120)
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    server = start_server(Path(tempfile.mkdtemp(prefix="azurine-tool-calls-")) / "data")
    try:
        client = server.azure(timeout=600)
        with ThreadPoolExecutor(args.concurrency) as pool:
            outcomes = list(pool.map(lambda row: ask(client, args.deployment, row, args.max_tokens), rows))
    finally:
        stop(server.process)
    if args.rows:
        console.print(details(outcomes))
    console.print(summary(outcomes, f"tool_choice auto on {args.deployment}, {len(rows)} prompts, temperature 0"))


if __name__ == "__main__":
    main()
