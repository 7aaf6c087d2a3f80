"""Azure RBAC against a running server: role assignments through ARM decide what a principal's token may do on
the management plane and the data plane; keys can be turned off; changes and denials are audited."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import openai
import pytest

from azurine.identity.tokens import COGNITIVE_AUDIENCES, ISSUER, issue_token
from azurine.storage.access import AccessStore
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, start_server, stop

AUTHZ = "?api-version=2022-04-01"
ARM = "?api-version=2025-09-01"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
COGNITIVE_CONTRIBUTOR = "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68"
SETTLE = 1.2  # assignments are cached for a second


class Plane:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
        account = self.store.first_account()
        assert account is not None
        self.account = account
        self.account_id = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}"
                           f"/providers/Microsoft.CognitiveServices/accounts/{account.name}")
        self.group_id = self.account_id.split("/providers/")[0]
        admin, _ = issue_token(self.store)
        self.admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=60)

    def token(self, principal: str, audience: str = COGNITIVE_AUDIENCES[0]) -> str:
        return issue_token(self.store, audience=audience, object_id=principal, name=principal)[0]

    def as_principal(self, principal: str) -> httpx.Client:
        token = self.token(principal, "https://management.azure.com/")
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def assign(self, principal: str, role: str, scope: str) -> str:
        name = str(uuid.uuid4())
        subscription = scope.split("/")[2]
        response = self.admin.put(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}{AUTHZ}", json={
            "properties": {"roleDefinitionId": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/"
                                               f"roleDefinitions/{role}", "principalId": principal}})
        assert response.status_code == 201, response.text
        return name

    def chat(self, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.server.url}/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}",
                          headers=headers, json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2},
                          timeout=120)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    running = start_server(tmp_path_factory.mktemp("rbac") / "data")
    try:
        yield Plane(running)
    finally:
        stop(running.process)


def test_a_token_needs_a_role_with_the_data_action(plane: Plane) -> None:
    principal = str(uuid.uuid4())
    denied = plane.chat({"Authorization": f"Bearer {plane.token(principal)}"})
    assert denied.status_code == 401
    assert denied.json()["error"] == {
        "code": "PermissionDenied",
        "message": f"The principal `{principal}` lacks the required data action `Microsoft.CognitiveServices/"
                   "accounts/OpenAI/deployments/chat/completions/action` to perform `POST /openai/deployments/"
                   "{deployment-id}/chat/completions` operation."}

    plane.assign(principal, OPENAI_USER, plane.account_id)
    time.sleep(SETTLE)
    client = openai.AzureOpenAI(azure_endpoint=plane.server.url, api_version=API_VERSION,
                                azure_ad_token_provider=lambda: plane.token(principal))
    answer = client.chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=2)
    assert answer.choices[0].message is not None

    # a token for another resource, or for no one in particular, is not one for this
    wrong_audience = plane.chat({"Authorization": f"Bearer {plane.token(principal, 'https://management.azure.com/')}"})
    assert wrong_audience.status_code == 401 and wrong_audience.json()["error"]["code"] == "401"


@pytest.mark.parametrize("case", ["expired", "none", "signature"])
def test_bad_tokens_are_refused_on_the_data_plane(plane: Plane, case: str) -> None:
    now = int(time.time())
    claims = {"aud": COGNITIVE_AUDIENCES[0], "iss": ISSUER, "oid": plane.store.admin_object_id(), "exp": now + 600}
    if case == "expired":
        token = issue_token(plane.store, audience=COGNITIVE_AUDIENCES[0])[0]
        header = jwt.get_unverified_header(token)
        from cryptography.hazmat.primitives import serialization

        key = plane.store.signing_key(header["kid"])
        assert key is not None
        token = jwt.encode({**claims, "exp": now - 3600}, serialization.load_pem_private_key(
            key.private_pem.encode(), None), algorithm="ES256", headers={"kid": header["kid"]})
    elif case == "none":
        token = jwt.encode(claims, None, algorithm="none")
    else:
        from cryptography.hazmat.primitives.asymmetric import ec

        kid = jwt.get_unverified_header(issue_token(plane.store)[0])["kid"]
        token = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid})
    response = plane.chat({"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "401"


def test_management_calls_need_a_role_that_allows_them(plane: Plane) -> None:
    principal = str(uuid.uuid4())
    plane.assign(principal, OPENAI_USER, plane.account_id)
    time.sleep(SETTLE)
    with plane.as_principal(principal) as http:
        assert http.get(f"{plane.account_id}{ARM}").status_code == 200  # OpenAI User reads the account
        keys = http.post(f"{plane.account_id}/listKeys{ARM}")
        assert keys.status_code == 403 and keys.json()["error"]["code"] == "AuthorizationFailed"
        assert "Microsoft.CognitiveServices/accounts/listKeys/action" in keys.json()["error"]["message"]
        deployment = {"sku": {"name": "GlobalStandard", "capacity": 1}, "properties": {"model": {
            "format": "HuggingFace", "name": "SmolLM2-135M-Instruct", "version": "1"}}}
        refused = http.put(f"{plane.account_id}/deployments/by-user{ARM}", json=deployment)
        assert refused.status_code == 403
        roles = http.put(f"{plane.account_id}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
                         f"{AUTHZ}", json={"properties": {"roleDefinitionId": OPENAI_USER, "principalId": "x"}})
        assert roles.status_code == 403  # only Owner gives roles

        plane.assign(principal, COGNITIVE_CONTRIBUTOR, plane.group_id)  # at the resource group, above the account
        time.sleep(SETTLE)
        assert http.put(f"{plane.account_id}/deployments/by-user{ARM}", json=deployment).status_code in (200, 201)
        assert http.post(f"{plane.account_id}/listKeys{ARM}").status_code == 200


def test_role_assignments_read_back_as_arm_resources(plane: Plane) -> None:
    principal = str(uuid.uuid4())
    name = plane.assign(principal, OPENAI_USER, plane.account_id)
    url = f"{plane.account_id}/providers/Microsoft.Authorization/roleAssignments/{name}{AUTHZ}"
    got = plane.admin.get(url).json()
    assert got["name"] == name and got["properties"]["principalId"] == principal
    assert got["properties"]["scope"] == plane.account_id and got["type"] == "Microsoft.Authorization/roleAssignments"
    again = plane.admin.put(url, json={"properties": {"roleDefinitionId": OPENAI_USER, "principalId": principal}})
    assert again.status_code == 409 and again.json()["error"]["code"] == "RoleAssignmentExists"
    listed = plane.admin.get(f"{plane.group_id}/providers/Microsoft.Authorization/roleAssignments{AUTHZ}"
                             f"&$filter=principalId eq '{principal}'").json()["value"]
    assert [a["name"] for a in listed] == [name]
    definitions = plane.admin.get(f"{plane.account_id}/providers/Microsoft.Authorization/roleDefinitions{AUTHZ}")
    assert "Cognitive Services OpenAI User" in {d["properties"]["roleName"] for d in definitions.json()["value"]}
    assert plane.admin.delete(url).status_code == 200
    assert plane.admin.get(url).status_code == 404


def test_keys_can_be_turned_off_for_an_account(plane: Plane) -> None:
    key = {"api-key": plane.account.key1}
    assert plane.chat(key).status_code == 200
    principal = str(uuid.uuid4())
    plane.assign(principal, OPENAI_USER, plane.account_id)
    patched = plane.admin.patch(f"{plane.account_id}{ARM}", json={"properties": {"disableLocalAuth": True}})
    assert patched.status_code == 200, patched.text
    try:
        time.sleep(SETTLE)
        refused = plane.chat(key)
        assert refused.status_code == 403
        assert refused.json()["error"] == {"code": "AuthenticationTypeDisabled",
                                           "message": "Key based authentication is disabled for this resource."}
        assert plane.chat({"Authorization": f"Bearer {plane.token(principal)}"}).status_code == 200
    finally:
        plane.admin.patch(f"{plane.account_id}{ARM}", json={"properties": {"disableLocalAuth": False}})
        time.sleep(SETTLE)


def test_changes_key_reads_and_denials_are_audited(plane: Plane) -> None:
    principal = str(uuid.uuid4())
    with plane.as_principal(principal) as http:
        assert http.post(f"{plane.account_id}/listKeys{ARM}").status_code == 403
    assert plane.admin.post(f"{plane.account_id}/listKeys{ARM}").status_code == 200
    events = AccessStore(make_engine(f"sqlite:///{plane.server.data_dir / 'azurine.db'}")).audit_events(limit=20)
    assert any(e.principal == principal and e.outcome == "denied"
               and e.action == "Microsoft.CognitiveServices/accounts/listKeys/action" for e in events)
    assert any(e.principal == plane.store.admin_object_id() and e.outcome == "allowed"
               and e.action == "Microsoft.CognitiveServices/accounts/listKeys/action" for e in events)


def test_the_cli_gives_lists_and_removes_roles_and_shows_the_audit_log(plane: Plane) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    def run(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURINE_")}
        result = subprocess.run([sys.executable, "-m", "azurine", *args], capture_output=True, text=True, cwd=ROOT,
                                env={**env, "COLUMNS": "250"}, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    connection = ("--endpoint", plane.server.url, "--data-dir", str(plane.server.data_dir))
    principal = str(uuid.uuid4())
    made = run("role", "assignment", "create", "--assignee", principal, "--role", "Cognitive Services OpenAI User",
               "--scope", plane.account_id, *connection)
    assert principal in made and "Cognitive Services OpenAI User" in made
    time.sleep(SETTLE)
    assert plane.chat({"Authorization": f"Bearer {plane.token(principal)}"}).status_code == 200
    listed = run("role", "assignment", "list", "--scope", plane.group_id, "--assignee", principal, *connection)
    name = next(line.split("│")[1].strip() for line in listed.splitlines() if principal in line)
    run("role", "assignment", "delete", "--name", name, "--scope", plane.account_id, *connection)
    time.sleep(SETTLE)
    assert plane.chat({"Authorization": f"Bearer {plane.token(principal)}"}).status_code == 401

    audit = run("audit", "show", "--data-dir", str(plane.server.data_dir))
    assert "Microsoft.Authorization/roleAssignments/write" in audit and "roleAssignments/delete" in audit
    denied = run("audit", "show", "--denied", "--data-dir", str(plane.server.data_dir))
    assert "denied" in denied and "allowed" not in denied


def test_a_key_or_token_for_one_account_reaches_nothing_of_another(plane: Plane) -> None:
    """Account B gets its own batch deployment, file and batch; A's key and a token whose role is on A alone are
    refused on every B route, and B's routes never show A's file or batch."""
    from batch_helpers import add_batch_deployment, chat_lines, submit, wait_for

    name = f"iso{uuid.uuid4().hex[:8]}"
    other = plane.store.create_account(name, location="local", subscription_id=plane.account.subscription_id,
                                       resource_group=plane.account.resource_group)
    add_batch_deployment(f"sqlite:///{plane.server.data_dir / 'azurine.db'}")  # on A, the first account
    principal = str(uuid.uuid4())
    plane.assign(principal, OPENAI_USER, plane.account_id)
    time.sleep(SETTLE)

    mine = plane.server.azure()
    a_file = mine.files.create(file=("a.jsonl", chat_lines(1)), purpose="batch")
    a_batch = wait_for(mine, submit(mine, chat_lines(1)).id)
    base = f"{plane.server.url}/accounts/{name}/openai"
    routes = [("POST", f"{base}/deployments/chat-small/chat/completions?api-version={API_VERSION}",
               {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
              ("GET", f"{base}/files?api-version={API_VERSION}", None),
              ("GET", f"{base}/files/{a_file.id}?api-version={API_VERSION}", None),
              ("GET", f"{base}/files/{a_file.id}/content?api-version={API_VERSION}", None),
              ("GET", f"{base}/batches?api-version={API_VERSION}", None),
              ("GET", f"{base}/batches/{a_batch.id}?api-version={API_VERSION}", None),
              ("POST", f"{base}/batches?api-version={API_VERSION}",
               {"input_file_id": a_file.id, "endpoint": "/chat/completions", "completion_window": "24h"}),
              ("GET", f"{plane.server.url}/accounts/{name}/openai/v1/files", None)]
    for credentials in ({"api-key": plane.account.key1}, {"Authorization": f"Bearer {plane.token(principal)}"}):
        for method, url, body in routes:
            refused = httpx.request(method, url, headers=credentials, json=body, timeout=60)
            assert refused.status_code == 401, (method, url, credentials.keys(), refused.text)

    # with B's own key, A's file and batch do not exist there
    theirs = {"api-key": other.key1}
    assert httpx.get(f"{base}/files/{a_file.id}?api-version={API_VERSION}", headers=theirs).status_code == 404
    assert httpx.get(f"{base}/batches/{a_batch.id}?api-version={API_VERSION}", headers=theirs).status_code == 404
    assert a_file.id not in httpx.get(f"{base}/files?api-version={API_VERSION}", headers=theirs).text
    assert a_batch.id not in httpx.get(f"{base}/batches?api-version={API_VERSION}", headers=theirs).text
    stolen = httpx.post(f"{base}/batches?api-version={API_VERSION}", headers=theirs, json={
        "input_file_id": a_file.id, "endpoint": "/chat/completions", "completion_window": "24h"})
    assert stolen.status_code == 404


def test_an_assignment_read_that_a_removal_overtook_is_not_kept(tmp_path) -> None:
    from azurine.identity.access import AccessControl
    from azurine.identity.roles import ROLES_BY_NAME
    from azurine.identity.tokens import BUILT_IN_DIRECTORY, Principal
    from azurine.storage.database import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    store = AccessStore(engine)
    scope = "/subscriptions/s/resourceGroups/g"
    store.put_assignment("a1", scope, ROLES_BY_NAME["reader"].id, "oid-1", "User", "test", BUILT_IN_DIRECTORY)
    access = AccessControl(store, ttl_s=60)
    principal = Principal("oid-1", BUILT_IN_DIRECTORY, "someone", BUILT_IN_DIRECTORY)
    read = store.assignments

    def overtaken(principal_id: str | None = None) -> list:
        found = read(principal_id)  # read while the role was held; removed before this read returns
        store.delete_assignment("a1")
        access.forget()
        return found

    store.assignments = overtaken  # type: ignore[method-assign]
    assert access.scopes(principal) == [scope]  # the read in flight answers, as it would have a moment earlier
    store.assignments = read  # type: ignore[method-assign]
    assert access.scopes(principal) == []
    engine.dispose()
