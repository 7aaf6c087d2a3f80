"""The server against Azure's published 2024-10-21 specs (inference; authoring: files, batches, models), with
schemathesis: whatever a case sends, no answer is a server error, every request the spec calls invalid is refused
(`negative_data_rejection`), and inference answers have the spec's shape.

Each operation runs schemathesis's coverage phase (every limit met and missed, every type swapped, every required
field left out) and then random cases, valid and invalid, against a real server. The specs are read as published
(`../shared/specs/` beside the repository) and patched only where their text says other than Azure means; each
patch says why.

`AZURINE_CONFORMANCE_EXAMPLES` sets the random cases per operation and mode (default 100: the file takes about a
minute on two cores); raise it for a deeper run by hand.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.meta import CoverageScenario
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance
from schemathesis.transport.serialization import Binary

from conftest import API_VERSION, Server

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs" / "AzureOpenAI"
INFERENCE = SPECS / "inference" / "stable" / "2024-10-21" / "inference.json"
AUTHORING = SPECS / "authoring" / "stable" / "2024-10-21" / "azureopenai.json"
EXAMPLES = int(os.environ.get("AZURINE_CONFORMANCE_EXAMPLES", 100))
if not (INFERENCE.is_file() and AUTHORING.is_file()):
    pytest.skip(f"Azure's specs are not beside the repository ({SPECS})", allow_module_level=True)
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
PHASES = ["coverage", "positive", "negative"]  # the coverage phase runs both modes

DEPLOYMENTS = {"completions": "chat-small", "chat/completions": "chat-small", "embeddings": "embeddings",
               "audio/transcriptions": "whisper", "audio/translations": "whisper"}
# cases stay small, so each is quick on a slow machine; the spec's limits on these are checked by negative cases
SMALL = {"max_tokens": 2, "max_completion_tokens": 2, "n": 2, "best_of": 2}

# Operations left out, and why. Everything else in the two specs runs.
NOT_SERVED = {
    # dall-e-3 has no default deployment (its weights are the operator's): tests/test_images.py covers the route
    "/deployments/{deployment-id}/images/generations": "no image deployment by default",
    # not implemented (README: files, batches and models are the authoring surface served); each answers a 4xx
    "/files/import": "file import from blob storage is not implemented",
    "/uploads": "multi-part uploads are not implemented",
}


def without_examples(node: Any) -> Any:
    """The spec without `x-ms-examples`: they name example files that were not copied beside it."""
    if isinstance(node, dict):
        return {k: without_examples(v) for k, v in node.items() if k != "x-ms-examples"}
    if isinstance(node, list):
        return [without_examples(v) for v in node]
    return node


def inference_quirks(spec: dict[str, Any]) -> None:
    """Where the inference spec's text says other than Azure means."""
    schemas = spec["components"]["schemas"]
    chat = schemas["createChatCompletionRequest"]["allOf"][1]["properties"]
    common = schemas["chatCompletionsRequestCommon"]["properties"]
    # `allOf` with chatCompletionsRequestCommon, whose copies of these fields are not nullable, cancels the
    # `nullable: true` the chat request gives them: a value must pass both. The chat request's own word is meant.
    for name in ("max_tokens", "presence_penalty", "frequency_penalty"):
        if chat[name].get("nullable"):
            common[name]["nullable"] = True
    # `nullable` beside a `$ref` is ignored by OpenAPI 3.0, yet the spec writes it to say the field takes null
    chat["parallel_tool_calls"] = {**schemas["ParallelToolCalls"], "nullable": True}
    # the function message requires `function_call_id`, a property it does not have (the message's
    # properties are role, name and content; the spec's own chat request never refers to this schema)
    message = schemas["chatCompletionRequestMessageFunction"]
    message["required"] = [r for r in message["required"] if r != "function_call_id"]
    # `json_schema` lists `type` as required but has no such property: `type` belongs to the response format
    # around it, which requires it already
    json_schema = schemas["ResponseFormatJsonSchema"]["properties"]["json_schema"]
    json_schema["required"] = [r for r in json_schema["required"] if r != "type"]
    # `prompt` is "a string, array of strings, array of tokens, or array of token arrays" in its description, as
    # on Azure and OpenAI; its schema lists only the first two. Token ids are integers from 0.
    tokens = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    schemas["createCompletionRequest"]["properties"]["prompt"]["oneOf"] += [
        tokens, {"type": "array", "minItems": 1, "items": tokens}]
    # errors carry `param` and `type` as null where they have none (JSON bodies that do not parse, the content
    # filter's refusal); the wire form Azure sends, which the spec types as strings only
    for name in ("param", "type"):
        schemas["error"]["properties"][name]["nullable"] = True
    embeddings = spec["paths"]["/deployments/{deployment-id}/embeddings"]["post"]["requestBody"]
    text_input = embeddings["content"]["application/json"]["schema"]["properties"]["input"]
    # embeddings `input` is nullable with the default "": an empty string, which is no text to embed and which
    # Azure refuses; so null is no valid input either (made a negative case here, which the server must refuse)
    text_input["oneOf"][0].pop("nullable")
    # Azure embeds token arrays too, as the OpenAI API it follows does (its SDK takes them, LangChain sends them
    # by default); this spec lists strings only
    text_input["oneOf"] += [tokens, {"type": "array", "minItems": 1, "maxItems": 2048, "items": tokens}]


@cache
def load(path: Path) -> dict[str, Any]:
    spec = without_examples(json.loads(path.read_text()))
    if path == INFERENCE:  # the authoring spec needs no patch for what is checked of it
        inference_quirks(spec)
    return spec


def skipped(path: str) -> str | None:
    return next((why for prefix, why in NOT_SERVED.items() if path.startswith(prefix)), None)


# the key is sent with every case: generating the `api-key` header as well would only test that key checks work
CONFIG = {"generation": {"with-security-parameters": False}}


@cache
def schema(path: Path) -> Any:
    return schemathesis.openapi.from_dict(copy.deepcopy(load(path)), config=schemathesis.Config.from_dict(CONFIG))


def operations(path: Path) -> Iterator[Any]:
    for result in schema(path).get_all_operations():
        operation = result.ok()
        if skipped(operation.path) is None:
            yield operation


def cases(path: Path) -> list[tuple[str, str]]:
    """(operation, phase) pairs. Negative fuzzing needs something the spec constrains: an operation whose only
    inputs are the pinned api-version and free-form ids (`GET /models`, `GET /files/{file-id}`) has no invalid
    request beyond those its coverage phase sends."""
    return [(operation.label, phase) for operation in operations(path) for phase in PHASES
            if phase != "negative" or negatable(operation)]


def negatable(operation: Any) -> bool:
    pinned = {name for values in fixed(operation).values() for name in values}
    parameters = [p for p in [*operation.query, *operation.path_parameters] if p.name not in pinned]
    return bool(list(operation.body)) or any(_constrained(p.definition) for p in parameters)


def _constrained(parameter: dict[str, Any]) -> bool:
    schema = parameter.get("schema", parameter)  # OpenAPI 3 wraps it; Swagger 2 does not
    return schema.get("type") != "string" or any(k in schema for k in ("enum", "format", "pattern", "minLength"))


def find(path: Path, label: str) -> Any:
    return next(operation for operation in operations(path) if operation.label == label)


def keep_small(case: schemathesis.Case) -> None:
    """A positive case asks for little work; a negative one gets a small `max_tokens` only where it sent none, so
    that a body the server wrongly accepts still answers quickly (schemathesis checks the case again as sent)."""
    body = case.body
    if not isinstance(body, dict) or not case.operation.path.startswith("/deployments/"):
        return
    if negative(case):
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = SMALL["max_tokens"]
        return
    for name, cap in SMALL.items():
        if name.startswith("max_") and name in body and (body[name] is None or _is_int(body[name])):
            body[name] = cap  # null is "up to the context length" for chat
        elif _is_int(body.get(name)):
            body[name] = max(1, min(body[name], cap))
    if case.operation.path.endswith("completions"):
        body.setdefault("max_tokens", SMALL["max_tokens"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fixed(operation: Any) -> dict[str, dict[str, str]]:
    """The api-version under test, and the deployment that serves each inference operation: every case keeps
    them, so that a negative case is invalid in what the spec describes, not merely addressed to a deployment
    that does not exist (a 404 that tests nothing)."""
    values = {"query": {"api-version": API_VERSION}}
    if operation.path.startswith("/deployments/"):
        values["path_parameters"] = {"deployment-id": DEPLOYMENTS[operation.path.split("{deployment-id}/", 1)[1]]}
    return values


def fuzzed(operation: Any, mode: schemathesis.GenerationMode) -> Any:
    return operation.as_strategy(generation_mode=mode, **fixed(operation))


def boundaries(operation: Any) -> Iterator[schemathesis.Case]:
    """The coverage phase's cases: each limit of the spec just met and just missed, each type swapped, each
    required field left out, in both modes (deterministic; what schemathesis's CLI runs first)."""
    generation = operation.schema.config.generation_for(operation=operation, phase="coverage")
    pinned = fixed(operation)
    for case in CoverageGenerator(operation=operation, generation_modes=MODES, generation_config=generation,
                                  auth_storage=None, override=Override(**pinned), feedback=FeedbackSources()):
        if not left_out(case, {name for values in pinned.values() for name in values}):
            yield case


def left_out(case: schemathesis.Case, pinned: set[str]) -> bool:
    if negative(case) and only_unknown_form_fields(case):
        return True
    data = case.meta.phase.data if case.meta is not None else None
    # a case that changes a pinned parameter is sent with the pinned value instead, so it is no negative case
    if getattr(data, "parameter", None) in pinned:
        return True
    # Azure, like most HTTP services, ignores query parameters it does not know; the spec does not forbid them
    # (schemathesis reads an operation's query as a closed object)
    return (getattr(data, "scenario", None) == CoverageScenario.OBJECT_UNEXPECTED_PROPERTIES
            and getattr(data, "parameter_location", None) == ParameterLocation.QUERY)


def only_unknown_form_fields(case: schemathesis.Case) -> bool:
    """Whether a negative multipart case is invalid only in form fields its operation does not name. Schemathesis
    takes a form to be closed (Swagger 2.0 cannot say whether it is; an OpenAPI 3 form schema here does not say);
    Azure ignores form fields it does not know, so such a case is a valid upload (the form's own fields are
    checked as usual)."""
    if case.media_type != "multipart/form-data" or not isinstance(case.body, dict):
        return False
    fields, required = form_fields(case.operation)
    return all(_valid_field(case.body.get(name), schema, name in required) for name, schema in fields.items())


def form_fields(operation: Any) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """A form's fields, each with its schema, and the required ones: Swagger 2.0's `formData` parameters, or the
    properties of an OpenAPI 3 multipart body."""
    raw = operation.definition.raw
    parameters = [p for p in raw.get("parameters", []) if p.get("in") == "formData"]
    if parameters:
        return {p["name"]: p for p in parameters}, {p["name"] for p in parameters if p.get("required")}
    content = raw.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
    schema = resolved(operation, content.get("schema", {}))
    properties = {name: resolved(operation, value) for name, value in schema.get("properties", {}).items()}
    return properties, set(schema.get("required", []))


def resolved(operation: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the component its local `$ref` names."""
    reference = schema.get("$ref")
    if reference is None:
        return schema
    node: Any = operation.schema.raw_schema
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return resolved(operation, node)


def _valid_field(value: Any, schema: dict[str, Any], required: bool) -> bool:
    if value is None:
        return not required
    if schema.get("type") == "file" or schema.get("format") == "binary":
        return isinstance(value, bytes | Binary)
    if schema.get("type") in ("number", "integer"):
        return _is_number(value) and (schema["type"] == "number" or _is_int(value))
    return isinstance(value, str) and not isinstance(value, Binary) and value in schema.get("enum", [value])


def negative(case: schemathesis.Case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_negative


def checks(operation: Any) -> list[Any]:
    """No server errors, invalid requests refused; and inference answers (the JSON ones: schemathesis reads no
    event streams) shaped as the spec says. Authoring answers are not held to their spec yet: its error `code`
    is an enum of REST-guideline codes (`invalidPayload`, `notFound`, …) that Azurine's file and batch routes do
    not keep to (`404`, `invalid_value`), and Swagger 2.0 cannot mark the fields those routes send as null."""
    inference = operation.path.startswith("/deployments/")
    return [not_a_server_error, negative_data_rejection, *([response_schema_conformance] if inference else [])]


def send(case: schemathesis.Case, session: requests.Session, server: Server) -> None:
    keep_small(case)
    case.call_and_validate(base_url=f"{server.url}/openai", session=session, headers={"api-key": server.key},
                           checks=checks(case.operation), timeout=120)


def run_boundaries(server: Server, operation: Any) -> None:
    failures = []
    with requests.Session() as session:
        for case in boundaries(operation):
            try:
                send(case, session, server)
            except (Exception, BaseExceptionGroup) as failure:  # every case runs; all failures are reported
                failures.append(f"{failure}\n{case.as_curl_command(headers={'api-key': '…'})}")
    assert not failures, f"{len(failures)} failing cases, the first ones:\n\n" + "\n\n".join(failures[:5])


def run_fuzzed(server: Server, operation: Any, mode: schemathesis.GenerationMode) -> None:
    with requests.Session() as session:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate, Phase.shrink])
        @given(case=fuzzed(operation, mode))
        def check(case: schemathesis.Case) -> None:
            if negative(case) and only_unknown_form_fields(case):
                reject()
            send(case, session, server)

        check()


def run(server: Server, spec: Path, label: str, phase: str) -> None:
    operation = find(spec, label)
    if phase == "coverage":
        run_boundaries(server, operation)
    else:
        run_fuzzed(server, operation, schemathesis.GenerationMode(phase))


@pytest.mark.parametrize(("label", "phase"), cases(INFERENCE))
def test_inference_spec(server: Server, label: str, phase: str) -> None:
    run(server, INFERENCE, label, phase)


@pytest.mark.parametrize(("label", "phase"), cases(AUTHORING))
def test_authoring_spec(server: Server, label: str, phase: str) -> None:
    run(server, AUTHORING, label, phase)


def left_out_operations() -> list[tuple[str, str]]:
    return [(method.upper(), path) for spec in (INFERENCE, AUTHORING) for path, item in load(spec)["paths"].items()
            if skipped(path) for method in item if method != "parameters"]


@pytest.mark.parametrize(("method", "path"), left_out_operations())
def test_operations_left_out_answer_a_clean_4xx(server: Server, method: str, path: str) -> None:
    """What the run leaves out is refused in Azure's error shape, never a server error."""
    url = re.sub(r"\{deployment-id\}", "chat-small", path)
    url = re.sub(r"\{[^}]+\}", "x", url)
    with requests.Session() as session:
        response = session.request(method, f"{server.url}/openai{url}", params={"api-version": API_VERSION},
                                   headers={"api-key": server.key}, json={})
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["error"]["code"], str)
