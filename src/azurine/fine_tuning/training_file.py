"""What a fine-tuning file must be, as Azure checks it: chat-format JSONL, every line a conversation with an
assistant turn, known roles, each example within the model's context, and at least 10 examples.

Every line is checked and every bad one named (up to `SHOWN`), so a customer fixes a file in one go.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

MIN_EXAMPLES = 10
SHOWN = 10  # bad lines named in the error's message
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"}
# the tokens a chat template adds around each message (`<|im_start|>role\n … <|im_end|>\n`)
TEMPLATE_TOKENS = 5


@dataclass(frozen=True)
class Example:
    line: int
    messages: tuple[dict[str, str], ...]  # role, content (text) and, for an assistant turn, weight
    tokens: int


@dataclass(frozen=True)
class FileProblem:
    code: str  # invalid_training_file or invalid_validation_file
    message: str


def _text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def _message(index: int, message: object) -> tuple[dict[str, str] | None, str | None]:
    if not isinstance(message, dict):
        return None, f"message {index} is not an object"
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        return None, f"message {index} has unrecognized key '{unknown[0]}'"
    role = message.get("role")
    if role not in ROLES:
        return None, f"message {index} has invalid role {json.dumps(role)}; use one of {', '.join(ROLES)}"
    text = _text(message.get("content")) if message.get("content") is not None else None
    if text is None and not (role == "assistant" and message.get("tool_calls")):
        return None, f"message {index} ({role}) has no text 'content'"
    shaped = {"role": str(role), "content": text or ""}
    if "weight" in message:
        if role != "assistant" or message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            return None, f"message {index} has 'weight' {json.dumps(message['weight'])}; only assistant " \
                         "messages have one, 0 or 1"
        shaped["weight"] = str(message["weight"])
    return shaped, None


def _example(line: int, raw: bytes, count_tokens: Callable[[str], int],
             context: int) -> tuple[Example | None, str | None]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None, "is not valid JSON"
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list) or not value["messages"]:
        return None, "has no 'messages' list (chat format: {\"messages\": [{\"role\": …, \"content\": …}, …]})"
    messages = []
    for index, message in enumerate(value["messages"]):
        shaped, problem = _message(index, message)
        if problem is not None:
            return None, problem
        assert shaped is not None
        messages.append(shaped)
    if not any(m["role"] == "assistant" for m in messages):
        return None, "has no assistant message to learn from"
    tokens = sum(count_tokens(m["content"]) + TEMPLATE_TOKENS for m in messages)
    if tokens > context:
        return None, f"has {tokens:,} tokens, more than the model's context of {context:,}"
    return Example(line, tuple(messages), tokens), None


def read_examples(content: bytes, count_tokens: Callable[[str], int], context: int,
                  code: str = "invalid_training_file") -> tuple[list[Example], FileProblem | None]:
    """The file's examples, or the problem that fails the job, naming the bad lines."""
    examples: list[Example] = []
    bad: list[str] = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        example, problem = _example(number, raw, count_tokens, context)
        if problem is not None:
            bad.append(f"Line {number} {problem}.")
        elif example is not None:
            examples.append(example)
    kind = "training" if code == "invalid_training_file" else "validation"
    if bad:
        more = f" ({len(bad) - SHOWN} more lines have problems.)" if len(bad) > SHOWN else ""
        return [], FileProblem(code, f"The {kind} file is invalid: {len(bad)} of its lines failed validation. "
                               + " ".join(bad[:SHOWN]) + more)
    if code == "invalid_training_file" and len(examples) < MIN_EXAMPLES:
        return [], FileProblem(code, f"The training file has {len(examples)} examples; a fine-tuning job needs "
                               f"at least {MIN_EXAMPLES}.")
    if not examples:
        return [], FileProblem(code, f"The {kind} file has no examples.")
    return examples, None
