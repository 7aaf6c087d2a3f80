"""The checks a batch input file (JSON Lines, one request a line) must pass before a batch may use it.

Every line is read, so one upload reports every bad line at once rather than the first alone. The error
codes are those Azure OpenAI reports for batch input files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azurine.config import RequestLimits
from azurine.json_depth import too_deep

MAX_REQUESTS = 100_000
MAX_DEPTH = RequestLimits().max_json_depth

# the operations a batch can run, by the url a line names (with or without OpenAI's /v1 prefix)
BATCH_URLS = ("/chat/completions", "/completions", "/embeddings")

INVALID_JSON_LINE = "invalid_json_line"
INVALID_REQUEST = "invalid_request"
DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
URL_MISMATCH = "url_mismatch"
MODEL_MISMATCH = "model_mismatch"
EMPTY_BATCH = "empty_batch"
TOO_MANY_TASKS = "too_many_tasks"


@dataclass(frozen=True)
class BatchLine:
    """One request of a batch: `url` is one of `BATCH_URLS`, `body` has a `model` (the deployment)."""

    line: int  # 1-based, counting blank lines too, as an editor shows them
    custom_id: str
    method: str
    url: str
    body: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class LineError:
    """Why a line cannot run; line 0 is the file as a whole (empty)."""

    line: int
    code: str
    message: str


def normalize_url(url: str) -> str | None:
    path = url.strip()
    if path.startswith("/v1/"):
        path = path[len("/v1"):]
    return path if path in BATCH_URLS else None


def _too_deep(number: int, max_depth: int) -> LineError:
    return LineError(number, INVALID_JSON_LINE, f"Line {number} nests arrays and objects more than {max_depth} "
                                                "levels deep.")


def _check_line(number: int, text: str, seen_ids: dict[str, int], max_depth: int) -> BatchLine | LineError:
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        return LineError(number, INVALID_JSON_LINE, f"Line {number} is not valid JSON: {error.msg} "
                                                    f"(column {error.colno}).")
    except RecursionError:  # nested deeper than the parser's own stack
        return _too_deep(number, max_depth)
    if too_deep(request, max_depth):
        return _too_deep(number, max_depth)
    if not isinstance(request, dict):
        return LineError(number, INVALID_REQUEST, f"Line {number} must be a JSON object, "
                                                  f"not {type(request).__name__}.")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineError(number, INVALID_REQUEST, f"Line {number} has no 'custom_id': each request needs a "
                                                  "non-empty string that names it in the results.")
    if custom_id in seen_ids:
        return LineError(number, DUPLICATE_CUSTOM_ID, f"Line {number} repeats the custom_id '{custom_id}' of "
                                                      f"line {seen_ids[custom_id]}; each must be unique.")
    seen_ids[custom_id] = number
    method = request.get("method")
    if not isinstance(method, str) or method.upper() != "POST":
        return LineError(number, INVALID_REQUEST, f"Line {number} has method {json.dumps(method)}; "
                                                  "batch requests must use 'POST'.")
    url = request.get("url")
    normalized = normalize_url(url) if isinstance(url, str) else None
    if normalized is None:
        return LineError(number, URL_MISMATCH, f"Line {number} has url {json.dumps(url)}; a batch runs one of "
                                               f"{', '.join(BATCH_URLS)} (a /v1 prefix is accepted).")
    body = request.get("body")
    if not isinstance(body, dict):
        return LineError(number, INVALID_REQUEST, f"Line {number} has no 'body' object with the request.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return LineError(number, INVALID_REQUEST, f"Line {number} has no 'model' in its body: name the "
                                                  "deployment that should answer it.")
    return BatchLine(line=number, custom_id=custom_id, method="POST", url=normalized, body=body)


def validate_batch_lines(data: bytes, max_depth: int = MAX_DEPTH) -> tuple[list[BatchLine], list[LineError]]:
    """The requests of a batch input file and, when it cannot run, why: no errors means every line is good.

    Blank lines are skipped; a line nested more than `max_depth` levels is a bad line.
    All requests must share one url and one `model`; the first good line sets both.
    """
    lines: list[BatchLine] = []
    errors: list[LineError] = []
    seen_ids: dict[str, int] = {}
    first: BatchLine | None = None
    requests = 0
    if data.startswith(b"\xef\xbb\xbf"):  # a byte order mark some editors write
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            errors.append(LineError(number, INVALID_JSON_LINE, f"Line {number} is not UTF-8 text (byte "
                                                               f"{error.start + 1} of the line)."))
            requests += 1
            continue
        if not text.strip():
            continue
        requests += 1
        if requests == MAX_REQUESTS + 1:
            errors.append(LineError(number, TOO_MANY_TASKS, f"Line {number} is request {requests:,}; a batch "
                                                            f"file holds at most {MAX_REQUESTS:,} requests."))
        checked = _check_line(number, text, seen_ids, max_depth)
        if isinstance(checked, LineError):
            errors.append(checked)
            continue
        if first is None:
            first = checked
        elif checked.url != first.url:
            errors.append(LineError(number, URL_MISMATCH, f"Line {number} has url {checked.url} but line "
                                                          f"{first.line} has {first.url}; every request of a "
                                                          "batch must use the same url."))
            continue
        elif checked.body["model"] != first.body["model"]:
            errors.append(LineError(number, MODEL_MISMATCH, f"Line {number} has model '{checked.body['model']}'"
                                                            f" but line {first.line} has "
                                                            f"'{first.body['model']}'; every request of a batch"
                                                            " must use the same model."))
            continue
        lines.append(checked)
    if requests == 0:
        errors.append(LineError(0, EMPTY_BATCH, "The file has no requests: write one JSON object a line."))
    return lines, errors
