"""The Responses API through the official openai SDK against a running server, on `/openai/v1` and on the dated
`/openai/responses?api-version=<preview>`: create, retrieve, delete, input items, chaining, tools, structured
output, streaming, background runs, accounts kept apart, the content filter and bad input; the store alone for
retention and sealing, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from azurine.identity.access import data_operation
from azurine.identity.roles import ROLES_BY_NAME, RoleAssignment, is_allowed
from azurine.identity.tokens import COGNITIVE_AUDIENCES, issue_token
from azurine.storage.database import make_engine, migrate
from azurine.storage.envelope import EnvelopeSealer
from azurine.storage.responses import ChainTooLong, ResponseStore
from azurine.storage.state import StateStore
from conftest import Server, fresh_database

PREVIEW = "2025-04-01-preview"
HATEFUL = "People of that religion are vermin and must be driven out of our country by force."
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}
SURFACES = ["v1", "dated"]


def dated(server: Server, url: str | None = None, key: str | None = None) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=url or server.url, api_key=key or server.key, api_version=PREVIEW,
                       max_retries=0)


@pytest.fixture(params=SURFACES)
def client(request: pytest.FixtureRequest, server: Server) -> OpenAI:
    return server.v1() if request.param == "v1" else dated(server)


def ask(client: OpenAI, prompt: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("max_output_tokens", 24)
    kwargs.setdefault("temperature", 0)
    return client.responses.create(model="chat", input=prompt, **kwargs)


# create, retrieve, delete ----------------------------------------------------------------------------------

def test_a_string_input_answers_and_is_stored(client: OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="chat", input="What is the capital of France? Answer with one word.", max_output_tokens=16,
        temperature=0, metadata={"case": "capital"})
    wire = json.loads(raw.text)
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert "output_text" not in wire  # the SDKs' own property, computed from `output`
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_") and message.content[0].annotations == []
    assert "Paris" in response.output_text
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    # the engine's prompt cache: on the second surface, the first's prompt is still in a slot
    assert 0 <= usage.input_tokens_details.cached_tokens < usage.input_tokens
    assert response.metadata == {"case": "capital"} and response.model == "qwen2.5-coder-0.5b-instruct"
    assert wire["incomplete_details"] is None and wire["error"] is None
    assert raw.headers["x-ratelimit-remaining-requests"]  # admitted under the deployment's quota like chat

    again = client.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()


def test_an_item_list_input_with_instructions(client: OpenAI) -> None:
    response = ask(client, [
        {"role": "developer", "content": "Answer with a single word."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Name a primary colour."}]},
    ], instructions="Be brief.")
    assert response.status == "completed" and response.instructions == "Be brief." and response.output_text
    items = client.responses.input_items.list(response.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [("message", "developer"), ("message", "user")]
    assert items[1].content[0].type == "input_text" and items[1].content[0].text == "Name a primary colour."
    assert all(i.id.startswith("msg_") for i in items)


def test_delete_removes_a_response(client: OpenAI) -> None:
    response = ask(client, "Say hi.", max_output_tokens=4)
    raw = client.responses.with_raw_response.delete(response.id)
    assert json.loads(raw.text) == {"deleted": True, "id": response.id, "object": "response.deleted"}
    for call in (client.responses.retrieve, client.responses.delete, client.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            call(response.id)


def test_store_false_keeps_nothing(client: OpenAI) -> None:
    response = ask(client, "Say hi.", max_output_tokens=4, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_an_answer_cut_at_max_output_tokens_is_incomplete(client: OpenAI) -> None:
    response = ask(client, "Write a long poem about the sea.", max_output_tokens=3)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.usage.output_tokens == 3


def test_input_items_page_in_either_order(client: OpenAI) -> None:
    turns = [{"role": "user", "content": f"Remember the number {n}."} for n in range(5)]
    response = ask(client, turns, max_output_tokens=4)
    everything = client.responses.input_items.list(response.id, order="asc", limit=100).data
    assert [i.content[0].text for i in everything] == [t["content"] for t in turns]
    ids = [i.id for i in everything]

    first = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.id for i in first.data] == ids[:2] and first.has_more and first.last_id == ids[1]
    second = client.responses.input_items.list(response.id, order="asc", limit=2, after=first.last_id)
    assert [i.id for i in second.data] == ids[2:4]
    assert [i.id for i in client.responses.input_items.list(response.id, limit=100).data] == ids[::-1]  # desc
    assert [i.id for i in client.responses.input_items.list(response.id, order="asc", after=ids[-1]).data] == []
    # the SDK's pager walks every page
    assert [i.id for i in client.responses.input_items.list(response.id, order="asc", limit=2)] == ids
    with httpx.Client(base_url=str(client.base_url), headers={"api-key": client.api_key}) as http:
        query = {"api-version": PREVIEW} if isinstance(client, AzureOpenAI) else {}
        path = f"responses/{response.id}/input_items"
        before = http.get(path, params={**query, "order": "asc", "limit": 2, "before": ids[4]}).json()
        assert [i["id"] for i in before["data"]] == ids[2:4] and before["has_more"] is True
        assert http.get(path, params={**query, "limit": 0}).json()["error"]["param"] == "limit"
        assert http.get(path, params={**query, "order": "up"}).json()["error"]["param"] == "order"


# state: chaining ------------------------------------------------------------------------------------------------

def test_previous_response_id_continues_the_conversation(client: OpenAI) -> None:
    first = ask(client, "My name is Zorblax. Reply with OK.", instructions="Reply with one word.",
                max_output_tokens=8)
    second = ask(client, "What is my name? Answer with the name only.", previous_response_id=first.id,
                 max_output_tokens=12)
    assert "Zorblax" in second.output_text
    assert second.previous_response_id == first.id and second.instructions is None  # not carried over
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert [i.role for i in items] == ["user", "assistant", "user"]
    assert items[1].id == first.output[0].id and items[1].content[0].text == first.output_text
    assert all(getattr(i, "role", None) not in ("system", "developer") for i in items)
    client.responses.delete(first.id)  # a deleted link leaves what continues it whole
    assert [i.id for i in client.responses.input_items.list(second.id, order="asc").data] == [i.id for i in items]


def test_a_function_call_round_trip(client: OpenAI) -> None:
    called = ask(client, "What is the weather in Paris?", tools=[WEATHER], tool_choice="required",
                 max_output_tokens=40)
    call = called.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.id.startswith("fc_") and call.call_id
    assert json.loads(call.arguments) == {"city": "Paris"}
    answer = ask(client, [{"type": "function_call_output", "call_id": call.call_id,
                           "output": json.dumps({"temperature_c": 31, "sky": "sunny"})}],
                 previous_response_id=called.id, max_output_tokens=40,
                 instructions="Answer the user in one plain English sentence, using the result of the tool call.")
    assert "31" in answer.output_text
    kinds = [i.type for i in client.responses.input_items.list(answer.id, order="asc").data]
    assert kinds == ["message", "function_call", "function_call_output"]


def test_a_named_function_and_a_whole_history_sent_each_time(client: OpenAI) -> None:
    called = ask(client, "What is the weather in Oslo?", tools=[WEATHER], store=False, max_output_tokens=40,
                 tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
    call = called.output[-1]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}
    answer = ask(client, [{"role": "user", "content": "What is the weather in Oslo?"},
                          call.model_dump(exclude_none=True),
                          {"type": "function_call_output", "call_id": call.call_id, "output": "-4 degrees, snow"}],
                 store=False, max_output_tokens=40,
                 instructions="Answer the user in one plain English sentence, using the result of the tool call.")
    assert "4" in answer.output_text


def test_json_schema_output_is_constrained(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response = ask(client, "Describe a fictional person, with a name and an age.", max_output_tokens=60,
                   text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    person = json.loads(response.output_text)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    assert response.text.format.type == "json_schema" and response.text.format.name == "person"
    as_object = ask(client, "Give a JSON object with a key colour.", max_output_tokens=40,
                    text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(as_object.output_text), dict)


# streaming ------------------------------------------------------------------------------------------------------

def test_a_stream_accumulates_to_the_stored_answer(client: OpenAI) -> None:
    prompt = "Name three colours of the rainbow."
    with client.responses.stream(model="chat", input=prompt, max_output_tokens=30, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas == events[-4].text and final.status == "completed"
    assert final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == deltas
    assert ask(client, prompt, max_output_tokens=30).output_text == deltas  # the same answer unstreamed


def test_a_streamed_function_call(client: OpenAI) -> None:
    with client.responses.stream(model="chat", input="What is the weather in Rome?", tools=[WEATHER],
                                 tool_choice="required", max_output_tokens=40, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Rome"}
    assert events[4].arguments == call.arguments and events[2].item.id == call.id


# background -----------------------------------------------------------------------------------------------------

def test_a_background_response_is_polled_to_completed(client: OpenAI) -> None:
    queued = ask(client, "Count from 1 to 5.", background=True, max_output_tokens=30)
    assert queued.status == "queued" and queued.background is True and queued.output == []
    seen = {queued.status}
    response = queued
    while response.status in ("queued", "in_progress"):
        time.sleep(0.2)
        response = client.responses.retrieve(queued.id)
        seen.add(response.status)
    assert response.status == "completed" and "3" in response.output_text
    assert seen <= {"queued", "in_progress", "completed"}


def test_a_background_response_can_be_cancelled(client: OpenAI) -> None:
    queued = ask(client, "Count from 1 to 1000, one number per line.", background=True, max_output_tokens=2000)
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(queued.id).status == "cancelled"
    assert client.responses.cancel(queued.id).status == "cancelled"  # again: the same
    done = ask(client, "Say hi.", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError):  # only background responses can be cancelled
        client.responses.cancel(done.id)


def test_a_streamed_background_response_can_be_left_and_followed_again(client: OpenAI) -> None:
    stream = ask(client, "Count from 1 to 20, one number per line.", background=True, stream=True,
                 max_output_tokens=60)
    seen = []
    for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta" and len(seen) >= 6:
            break
    stream.close()  # the reader leaves; the run goes on
    assert [e.type for e in seen[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert seen[0].response.status == "queued" and seen[0].response.background is True
    response_id = seen[0].response.id
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number))
    numbers = [e.sequence_number for e in seen + rest]
    assert numbers == list(range(len(numbers)))  # nothing lost, nothing twice
    assert rest[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in seen + rest if e.type == "response.output_text.delta")
    stored = client.responses.retrieve(response_id)
    assert stored.status == rest[-1].response.status and stored.output_text == text and "3" in text
    again = list(client.responses.retrieve(response_id, stream=True))  # from the start, once more
    assert [e.sequence_number for e in again] == numbers


def test_only_a_streamed_background_response_is_streamed_again(client: OpenAI) -> None:
    done = ask(client, "Say hi.", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError) as refused:
        list(client.responses.retrieve(done.id, stream=True))
    assert refused.value.body["param"] == "stream"  # type: ignore[index]


# pipeline: accounts, identity, content filter, errors -----------------------------------------------------------

def test_another_accounts_response_is_not_found(server: Server) -> None:
    name = f"resp-{uuid.uuid4().hex[:8]}"
    state = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    other = state.create_account(name, location="local", subscription_id="00000000-0000-0000-0000-000000000000",
                                 resource_group="azurine")
    chat = state.deployment(state.first_account().id, "chat")  # type: ignore[union-attr]
    state.create_deployment(other.id, "chat", model_name=chat.model_name, model_version=chat.model_version,
                            model_format=chat.model_format, sku_name="GlobalStandard", sku_capacity=10)
    theirs = OpenAI(base_url=f"{server.url}/accounts/{name}/openai/v1/", api_key=other.key1, max_retries=0)
    mine = ask(server.v1(), "Say hi.", max_output_tokens=4)
    for call in (theirs.responses.retrieve, theirs.responses.delete, theirs.responses.cancel,
                 theirs.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    with pytest.raises(openai.NotFoundError) as caught:
        theirs.responses.create(model="chat", input="And now?", previous_response_id=mine.id)
    assert caught.value.body["code"] == "previous_response_not_found"
    assert caught.value.body["param"] == "previous_response_id"
    assert server.v1().responses.retrieve(mine.id).id == mine.id


def test_a_token_needs_the_responses_data_action(server: Server) -> None:
    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    scope = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}"
             f"/providers/Microsoft.CognitiveServices/accounts/{account.name}")
    principal = str(uuid.uuid4())
    token = issue_token(store, audience=COGNITIVE_AUDIENCES[0], object_id=principal, name=principal)[0]
    as_principal = OpenAI(base_url=f"{server.url}/openai/v1/", api_key=token, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(as_principal, "Say hi.", max_output_tokens=4)
    assert caught.value.body["code"] == "PermissionDenied"
    assert "Microsoft.CognitiveServices/accounts/OpenAI/responses/write" in caught.value.body["message"]

    admin = issue_token(store)[0]
    assigned = httpx.put(
        f"{server.url}{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
        "?api-version=2022-04-01", headers={"Authorization": f"Bearer {admin}"},
        json={"properties": {"principalId": principal, "roleDefinitionId":
                             f"/subscriptions/{account.subscription_id}/providers/Microsoft.Authorization/"
                             "roleDefinitions/5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"}})
    assert assigned.status_code == 201, assigned.text
    time.sleep(1.2)  # assignments are cached for a second
    response = ask(as_principal, "Say hi.", max_output_tokens=4)
    assert as_principal.responses.retrieve(response.id).id == response.id


def test_the_responses_data_actions_and_who_holds_them() -> None:
    account = "/subscriptions/s/resourceGroups/g/providers/Microsoft.CognitiveServices/accounts/a"
    actions = {(m, p): data_operation(m, p, account).action.rsplit("OpenAI/", 1)[1] for m, p in (
        ("POST", "/openai/v1/responses"), ("POST", "/openai/responses"), ("GET", "/openai/v1/responses/resp_1"),
        ("GET", "/openai/responses/resp_1/input_items"), ("DELETE", "/openai/v1/responses/resp_1"),
        ("POST", "/openai/v1/responses/resp_1/cancel"))}
    assert list(actions.values()) == ["responses/write", "responses/write", "responses/read", "responses/read",
                                      "responses/delete", "responses/write"]
    write = "Microsoft.CognitiveServices/accounts/OpenAI/responses/write"
    for role, allowed in (("cognitive services openai user", True), ("reader", False)):
        assignment = RoleAssignment(account, ROLES_BY_NAME[role].id, "p", "d")
        assert is_allowed([assignment], "p", account, write, True, directory="d") is allowed


def test_a_refused_prompt_is_chats_content_filter_error(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, HATEFUL)
    error = caught.value.body
    assert error["code"] == "content_filter" and error["param"] == "prompt" and error["status"] == 400
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert error["innererror"]["content_filter_result"]["hate"]["filtered"] is True
    # what a function returns is screened too, as a document
    with pytest.raises(openai.BadRequestError):
        ask(client, [{"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
                     {"type": "function_call_output", "call_id": "call_1", "output": HATEFUL}])


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    ({"input": "hi", "temperature": 3}, 400, "invalid_value", "temperature"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, "unsupported_parameter", "tools[0]"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, 400, "unsupported_parameter", "input[0]"),
    ({"input": "hi", "reasoning": {"effort": "high"}}, 400, "unsupported_parameter", "reasoning.effort"),
    ({"input": "hi", "conversation": "conv_1"}, 400, "unsupported_parameter", "conversation"),
    ({"input": "hi", "background": True, "store": False}, 400, "invalid_value", "background"),
    ({"input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, 400, "invalid_value", "metadata"),
    ({"input": "hi", "metadata": {"k": "v" * 513}}, 400, "invalid_value", "metadata"),
    ({"input": "hi", "tool_choice": "required"}, 400, "invalid_value", "tool_choice"),
    ({"input": "hi", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, 400,
     "invalid_value", "tool_choice"),
    ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, 400, "invalid_value",
     "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, 400, "missing_required_parameter",
     "input[0].content[0].text"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "bad name", "schema": {}}}}, 400,
     "invalid_value", "text.format.name"),
    ({"input": "hi", "max_output_tokens": True}, 400, "invalid_value", "max_output_tokens"),
    ({"input": "hi", "previous_response_id": "resp_" + "x" * 80}, 400, "invalid_value", "previous_response_id"),
    ({}, 400, "missing_required_parameter", "input"),
])
def test_bad_input_is_refused_by_name(server: Server, body: dict[str, Any], status: int, code: str,
                                      param: str) -> None:
    with server.http() as http:
        for path in ("/openai/v1/responses", f"/openai/responses?api-version={PREVIEW}"):
            response = http.post(path, headers={"api-key": server.key}, json={"model": "chat", **body})
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert (error["code"], error["param"]) == (code, param), error


def test_versions_deployments_and_unknown_ids(server: Server) -> None:
    with server.http() as http:
        headers = {"api-key": server.key}
        body = {"model": "chat", "input": "hi"}
        assert http.post("/openai/responses", headers=headers, json=body).status_code == 404
        assert http.post("/openai/responses?api-version=2024-10-21", headers=headers,
                         json=body).status_code == 400
        assert http.post("/openai/v1/responses?api-version=2025-04-01-preview", headers=headers,
                         json=body).status_code == 400
        assert http.post("/openai/v1/responses", headers=headers, json={"input": "hi"}).json()["error"][
            "param"] == "model"
        missing = http.post("/openai/v1/responses", headers=headers, json={"model": "nope", "input": "hi"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DeploymentNotFound"
        embeddings = http.post("/openai/v1/responses", headers=headers, json={"model": "embeddings", "input": "hi"})
        assert embeddings.status_code == 400 and embeddings.json()["error"]["code"] == "OperationNotSupported"
        gone = http.get("/openai/v1/responses/resp_unknown", headers=headers)
        assert gone.status_code == 404 and gone.json()["error"]["message"] == \
            "Response with id 'resp_unknown' not found."
        assert http.get("/openai/v1/responses/" + "r" * 300, headers=headers).status_code == 404
        assert http.post("/openai/v1/responses", headers={"api-key": "0" * 32}, json=body).status_code == 401


# the store alone: retention and sealing, on SQLite and PostgreSQL -------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'responses.db'}"
        return
    with fresh_database() as url:
        yield url


def test_the_store_seals_pages_and_sweeps_what_has_expired(store_url: str, tmp_path: Any) -> None:
    engine = make_engine(store_url)
    migrate(engine)
    state = StateStore(engine)
    account = state.create_account("sealed", location="local", subscription_id="s", resource_group="g")
    other = state.create_account("other", location="local", subscription_id="s", resource_group="g")
    store = ResponseStore(engine, EnvelopeSealer.open(engine, tmp_path))
    now = time.time()
    secret = "the launch code is swordfish"
    items = [{"id": f"msg_{n}", "type": "message", "role": "user",
              "content": [{"type": "input_text", "text": f"{secret} {n}"}]} for n in range(3)]
    for response_id, expires in (("resp_kept", now + 60), ("resp_old", now - 1)):
        store.create(account.id, {"id": response_id, "status": "completed", "created_at": int(now),
                                  "output": [{"text": secret}]}, items, expires_at=int(expires))
    with engine.connect() as connection:
        blobs = [bytes(b) for (b,) in connection.exec_driver_sql("SELECT body FROM responses UNION ALL "
                                                                 "SELECT body FROM response_items")]
    assert blobs and all(secret.encode() not in blob for blob in blobs)

    assert store.get(account.id, "resp_kept", now).body["output"] == [{"text": secret}]
    assert store.get(other.id, "resp_kept", now) is None  # another account's
    assert store.get(account.id, "resp_old", now) is None  # past its retention, even before the sweep
    page = store.page(account.id, "resp_kept", now, limit=2, order="asc")
    assert [i["id"] for i in page.items] == ["msg_0", "msg_1"] and page.has_more
    assert store.page(other.id, "resp_kept", now, limit=2) is None
    assert store.sweep(now) == 1
    assert store.items(account.id, "resp_old") == []
    assert len(store.items(account.id, "resp_kept")) == 3
    assert store.sweep(now + 120) == 1 and store.get(account.id, "resp_kept", now) is None
    engine.dispose()


def _said(n: int) -> dict[str, Any]:
    return {"id": f"msg_out{n}", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]}


def _asked(n: int) -> dict[str, Any]:
    return {"id": f"msg_in{n}", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"question {n}"}]}


def _chain(store: ResponseStore, account_id: str, now: float, length: int, expires: list[float]) -> list[str]:
    ids = [f"resp_{n}" for n in range(length)]
    for n, response_id in enumerate(ids):
        earlier = store.conversation(account_id, ids[n - 1], now, with_output=True) if n else []
        store.create(account_id, {"id": response_id, "status": "completed", "created_at": int(now) + n,
                                  "output": [_said(n)]}, [_asked(n)], expires_at=int(expires[n]),
                     previous_id=ids[n - 1] if n else None, earlier=earlier or [])
    return ids


def test_a_chain_stores_each_turn_once_and_outlives_a_deleted_or_expired_link(store_url: str) -> None:
    engine = make_engine(store_url)
    migrate(engine)
    state = StateStore(engine)
    account = state.create_account("chained", location="local", subscription_id="s", resource_group="g")
    store, now = ResponseStore(engine), time.time()
    ids = _chain(store, account.id, now, 5, [now + 60, now - 1, now + 60, now + 60, now + 60])
    whole = [item for n in range(5) for item in (_asked(n), _said(n))]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM response_items").scalar() == 5  # once each
    assert store.conversation(account.id, ids[4], now, with_output=True) == whole
    assert store.page(account.id, ids[4], now, limit=100, order="asc").items == whole[:-1]  # as OpenAI lists them
    assert [i["id"] for i in store.page(account.id, ids[4], now, limit=3, order="desc", after="msg_in3").items] == \
        ["msg_out2", "msg_in2", "msg_out1"]
    assert store.conversation(account.id, ids[4], now, with_output=True, longest=5) == whole
    with pytest.raises(ChainTooLong):  # five responses, one more than asked for
        store.conversation(account.id, ids[4], now, with_output=True, longest=4)

    assert store.delete(account.id, ids[2], now)  # a link in the middle
    assert store.get(account.id, ids[2], now) is None and store.page(account.id, ids[2], now, limit=5) is None
    assert store.conversation(account.id, ids[4], now, with_output=True) == whole
    assert store.sweep(now) == 1  # ids[1], past its retention
    assert store.conversation(account.id, ids[4], now, with_output=True) == whole
    assert store.conversation(account.id, ids[0], now, with_output=True) == whole[:2]
    assert store.items(account.id, ids[3]) == whole[2:7]  # what went is now the start of the next one's own
    assert store.delete(account.id, ids[0], now) and store.delete(account.id, ids[4], now)
    assert store.conversation(account.id, ids[3], now, with_output=True) == whole[:8]

    # a response stored after the one it continues went keeps the conversation it read
    store.create(account.id, {"id": "resp_late", "status": "completed", "created_at": int(now), "output": []},
                 [_asked(9)], expires_at=int(now + 60), previous_id=ids[2], earlier=whole[:6])
    assert store.conversation(account.id, "resp_late", now, with_output=True) == [*whole[:6], _asked(9)]
    engine.dispose()


def test_truncation_auto_leaves_out_the_oldest_turns_that_do_not_fit(client: OpenAI) -> None:
    history = [{"role": "user", "content": "word " * 40_000}, {"role": "assistant", "content": "Noted."},
               {"role": "user", "content": "Say hi."}]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, history, max_output_tokens=4)
    assert caught.value.body["code"] == "context_length_exceeded"
    response = ask(client, history, max_output_tokens=4, truncation="auto")
    assert response.status in ("completed", "incomplete") and response.truncation == "auto"
    assert response.usage.input_tokens < 1000
    assert len(client.responses.input_items.list(response.id, limit=100).data) == 3  # the state keeps them all


def test_logprobs_come_with_the_text_when_included(client: OpenAI) -> None:
    response = ask(client, "Say hello.", max_output_tokens=4, include=["message.output_text.logprobs"],
                   top_logprobs=2)
    logprobs = response.output[0].content[0].logprobs
    assert logprobs and "".join(p.token for p in logprobs) == response.output_text
    assert all(len(p.top_logprobs) == 2 and p.logprob <= 0 for p in logprobs)
    assert ask(client, "Say hello.", max_output_tokens=4).output[0].content[0].logprobs == []
