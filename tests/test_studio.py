"""Azurine Studio in a real browser: Debian's Chromium, driven by Playwright, against a real `azurine serve`.

One server and one browser for the module; each test opens a fresh browser context (its own sessionStorage) and
signs in as a user would: with the account key, or as a service principal that the official CLI created and gave
roles to. What the Studio changed is then read back through the public APIs. Screenshots of each page are kept in
`tests/artifacts/studio/`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright
from starlette.testclient import TestClient

from azurine.identity.tokens import TENANT_ID
from azurine.studio.serving import DIST, mount_studio
from conftest import API_KEY, Server, start_server, stop

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "studio"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
ACCOUNT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/azurine/providers/Microsoft.CognitiveServices/accounts/default"
ARM_VERSION = "2024-10-01"
ROLES = ("Cognitive Services Contributor", "Cognitive Services OpenAI User", "Cost Management Reader")
BATCH_DEPLOYMENT = "studio-batch"
TIMEOUT_MS = 60_000  # the first answer of a deployment waits for its model to load


def azurine(server: Server, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "azurine", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert (DIST / "index.html").is_file(), "the Studio is not built: run ./scripts/setup.sh"
    running = start_server(tmp_path_factory.mktemp("studio") / "data")
    try:
        yield running
    finally:
        stop(running.process)


@pytest.fixture(scope="module")
def principal(studio: Server) -> dict[str, str]:
    """A service principal of the built-in issuer with the roles the Studio needs on the subscription, made with
    the official CLI."""
    created = json.loads(azurine(studio, "principal", "create", f"studio-{uuid.uuid4().hex[:8]}"))
    assigning = [subprocess.Popen([sys.executable, "-m", "azurine", "role", "assignment", "create", "--assignee",
                                   created["id"], "--assignee-principal-type", "ServicePrincipal", "--role", role,
                                   "--scope", f"/subscriptions/{SUBSCRIPTION}", "--endpoint", studio.url,
                                   "--data-dir", str(studio.data_dir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for role in ROLES]
    for process in assigning:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output.decode(errors="replace")
    return created


def token(studio: Server, principal: dict[str, str], scope: str) -> str:
    answer = httpx.post(f"{studio.url}/{TENANT_ID}/oauth2/v2.0/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": principal["appId"], "client_secret": principal["password"],
        "scope": scope})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture(scope="module")
def arm(studio: Server, principal: dict[str, str]) -> Iterator[httpx.Client]:
    """ARM as the principal sees it, to check what the Studio did."""
    bearer = token(studio, principal, "https://management.azure.com/.default")
    with httpx.Client(base_url=studio.url, headers={"Authorization": f"Bearer {bearer}"},
                      params={"api-version": ARM_VERSION}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # a CSP violation is reported on the console: the bundle must run under the Studio's policy as it is
    opened.on("console", lambda message: problems.append(message.text)
              if message.type == "error" and "Content Security Policy" in message.text else None)
    try:
        yield opened
    finally:
        context.close()
    assert not problems, problems


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in_with_key(page: Page, studio: Server, key: str = API_KEY) -> None:
    page.goto(f"{studio.url}/studio/")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in with key").click()
    expect(page.get_by_role("link", name="Playground")).to_be_visible()


def sign_in_as_principal(page: Page, studio: Server, principal: dict[str, str], shoot: bool = False) -> None:
    page.goto(f"{studio.url}/studio/")
    expect(page.get_by_label("Tenant")).to_have_value(TENANT_ID)
    page.get_by_label("Client id").fill(principal["appId"])
    page.get_by_label("Client secret").fill(principal["password"])
    if shoot:
        shot(page, "sign-in")
    page.get_by_role("button", name="Sign in as service principal").click()
    opening = page.get_by_role("button", name="Open default")
    expect(opening).to_be_visible()
    if shoot:
        shot(page, "accounts")
    opening.click()
    expect(page.get_by_role("link", name="Deployments")).to_be_visible()


def go(page: Page, where: str) -> None:
    page.get_by_role("link", name=where, exact=True).click()


# serving --------------------------------------------------------------------------------------------------------


def test_studio_is_served_at_studio_with_its_security_headers(studio: Server) -> None:
    with httpx.Client(base_url=studio.url, timeout=30) as http:
        bare = http.get("/studio")
        assert bare.status_code == 307 and bare.headers["location"] == "/studio/"
        index = http.get("/studio/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        policy = index.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
        assert index.headers["x-frame-options"] == "DENY"
        assert index.headers["x-content-type-options"] == "nosniff"
        assert index.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in index.text  # no inline script: the policy would refuse it
        script = next(part.split('"')[0] for part in index.text.split('src="')[1:] if "/assets/" in part)
        asset = http.get(script)
        assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
        assert http.get("/studio/assets/missing.js").status_code == 404


def test_an_unbuilt_studio_says_how_to_build_it(tmp_path: Path) -> None:
    app = FastAPI()
    mount_studio(app, tmp_path / "dist")
    with TestClient(app) as client:
        answer = client.get("/studio/")
        assert answer.status_code == 503
        assert "./scripts/setup.sh" in answer.text
        assert answer.headers["x-frame-options"] == "DENY"


# the data plane with a key ---------------------------------------------------------------------------------------


WATCH_STREAM = """() => {
  window.seen = [];
  const record = () => {
    const answer = document.querySelector('.message.assistant:last-of-type .content');
    if (answer) window.seen.push(answer.textContent.length);
  };
  new MutationObserver(record).observe(document.querySelector('.messages'),
                                       {subtree: true, childList: true, characterData: true});
}"""


def test_key_sign_in_and_a_streamed_answer_with_its_filter_annotations(page: Page, studio: Server) -> None:
    sign_in_with_key(page, studio)
    expect(page.get_by_label("Deployment")).to_have_value("chat")
    page.evaluate(WATCH_STREAM)
    page.get_by_label("Max tokens").fill("48")
    page.get_by_placeholder("Type a message").fill("Write two sentences about the sea.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message.assistant").last
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=TIMEOUT_MS)
    text = answer.locator(".content").inner_text()
    assert text.strip()
    lengths = sorted(set(page.evaluate("window.seen")) - {0})
    assert len(lengths) >= 2 and lengths[0] < len(text), f"the answer came in one piece: {lengths}"
    expect(answer.locator(".badge[data-category=hate]")).to_have_text("hate: safe")
    prompt = page.locator(".message.user").last
    expect(prompt.locator(".badge[data-category=jailbreak]")).to_have_text("jailbreak: not detected")
    page.get_by_role("button", name="View code").click()
    code = page.get_by_label("Python code").inner_text()
    assert "AzureOpenAI(" in code and 'model="chat"' in code and "stream=True" in code
    assert 'os.environ["AZURE_OPENAI_API_KEY"]' in code and API_KEY not in code
    assert "Write two sentences about the sea." in code
    shot(page, "playground")
    go(page, "Deployments")
    expect(page.get_by_text("which takes a token, not a key")).to_be_visible()


def test_a_refused_prompt_shows_azures_error(page: Page, studio: Server, arm: httpx.Client) -> None:
    blocklist = f"{ACCOUNT}/raiBlocklists/studio-refused"
    assert arm.put(blocklist, json={"properties": {}}).status_code in (200, 201)
    assert arm.put(f"{blocklist}/raiBlocklistItems/word", json={"properties": {"pattern": "zanzibar"}}).is_success
    assert arm.put(f"{ACCOUNT}/raiPolicies/studio-refusing", json={"properties": {
        "basePolicyName": "Microsoft.DefaultV2",
        "customBlocklists": [{"blocklistName": "studio-refused", "source": "Prompt", "blocking": True}]}}).is_success
    created = arm.put(f"{ACCOUNT}/deployments/studio-guarded", json={
        "sku": {"name": "GlobalStandard", "capacity": 1}, "properties": {
            "model": {"format": "HuggingFace", "name": "SmolLM2-135M-Instruct", "version": "1"},
            "raiPolicyName": "studio-refusing"}})
    assert created.is_success, created.text
    sign_in_with_key(page, studio)
    page.get_by_label("Deployment").select_option("studio-guarded")
    page.get_by_placeholder("Type a message").fill("Tell me about zanzibar.")
    page.get_by_role("button", name="Send").click()
    error = page.locator(".message.assistant .error")
    expect(error).to_contain_text("content_filter: ", timeout=TIMEOUT_MS)
    expect(page.locator(".message.user .badge[data-category=custom_blocklists]")).to_contain_text("filtered")
    shot(page, "playground-refused")


# management as a service principal -------------------------------------------------------------------------------


def test_principal_sign_in_picks_an_account_and_renews_its_tokens(page: Page, studio: Server,
                                                                   principal: dict[str, str]) -> None:
    page.clock.install()  # the page's timers, to reach the tokens' renewal without waiting an hour
    sign_in_as_principal(page, studio, principal, shoot=True)
    expect(page.locator("header .who")).to_contain_text("default")
    expect(page.get_by_label("Deployment")).to_have_value("chat")  # the data plane with the principal's token
    # tokens stay in sessionStorage; the secret is not kept at all
    stored = page.evaluate("JSON.stringify(sessionStorage)") + page.evaluate("JSON.stringify(localStorage)")
    assert principal["password"] not in stored
    assert page.evaluate("localStorage.length") == 0

    renewed: list[str] = []
    page.on("request", lambda r: renewed.append(r.post_data or "") if r.url.endswith("/oauth2/v2.0/token") else None)
    page.clock.fast_forward("54:00")  # an hour's tokens are renewed five minutes before they expire
    page.wait_for_timeout(300)
    assert renewed == []
    with page.expect_response(lambda r: r.url.endswith("/oauth2/v2.0/token")):
        page.clock.fast_forward("02:00")
    deadline = time.monotonic() + 10
    while len(renewed) < 2:
        assert time.monotonic() < deadline, renewed
        page.wait_for_timeout(100)
    assert {"management.azure.com" in body for body in renewed} == {True, False}
    go(page, "Deployments")  # ARM with the renewed token
    expect(page.locator("tr[data-deployment=chat]")).to_be_visible()


def test_creating_and_resizing_a_deployment(page: Page, studio: Server, principal: dict[str, str],
                                            arm: httpx.Client) -> None:
    sign_in_as_principal(page, studio, principal)
    go(page, "Deployments")
    form = page.get_by_role("form", name="Create deployment")
    form.get_by_label("Name").fill("studio-small")
    form.get_by_label("Model").select_option(label="SmolLM2-135M-Instruct (version 1)")
    form.get_by_label("Deployment type").select_option("GlobalStandard")
    expect(form.locator(".quota")).to_contain_text("Quota left:")
    form.get_by_label("Capacity").fill("2")
    form.get_by_role("button", name="Create deployment").click()
    row = page.locator("tr[data-deployment=studio-small]")
    expect(row).to_contain_text("SmolLM2-135M-Instruct")
    created = arm.get(f"{ACCOUNT}/deployments/studio-small").json()
    assert created["sku"] == {"name": "GlobalStandard", "capacity": 2}
    assert created["properties"]["model"]["name"] == "SmolLM2-135M-Instruct"

    row.get_by_label("Capacity of studio-small").fill("3")
    row.get_by_role("button", name="Resize").click()
    expect(page.locator("tr[data-deployment=studio-small]").get_by_label("Capacity of studio-small")).to_have_value("3")
    deadline = time.monotonic() + 10
    while arm.get(f"{ACCOUNT}/deployments/studio-small").json()["sku"]["capacity"] != 3:
        assert time.monotonic() < deadline, "the resize did not reach ARM"
        time.sleep(0.2)
    shot(page, "deployments")

    page.locator("tr[data-deployment=studio-small]").get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Delete studio-small").click()
    expect(page.locator("tr[data-deployment=studio-small]")).to_have_count(0)
    assert arm.get(f"{ACCOUNT}/deployments/studio-small").status_code == 404


def test_regenerating_a_key_retires_the_old_one(page: Page, studio: Server, principal: dict[str, str],
                                                arm: httpx.Client) -> None:
    old = arm.post(f"{ACCOUNT}/listKeys").json()["key2"]
    sign_in_as_principal(page, studio, principal)
    go(page, "Keys")
    row = page.locator("tr[data-key=Key2]")
    expect(row.locator("code")).to_contain_text(old[-4:])
    assert old not in row.inner_text()  # masked until shown
    row.get_by_role("button", name="Regenerate Key2").click()
    row.get_by_role("button", name="Yes, regenerate Key2").click()
    expect(row.locator("code")).not_to_contain_text(old[-4:])
    row.get_by_role("button", name="Show Key2").click()
    new = row.locator("code").inner_text().strip()
    assert len(new) == len(old) and new != old
    shot(page, "keys")
    deployments = f"{studio.url}/openai/deployments?api-version=2022-12-01"
    assert httpx.get(deployments, headers={"api-key": old}, timeout=30).status_code == 401
    assert httpx.get(deployments, headers={"api-key": new}, timeout=30).status_code == 200


def test_editing_a_content_filter_and_a_blocklist(page: Page, studio: Server, principal: dict[str, str],
                                                  arm: httpx.Client) -> None:
    sign_in_as_principal(page, studio, principal)
    go(page, "Content filters")
    new_policy = page.get_by_role("form", name="New policy")
    new_policy.get_by_label("New policy").fill("studio-strict")
    new_policy.get_by_label("Based on").select_option("Microsoft.DefaultV2")
    new_policy.get_by_role("button", name="Create policy").click()
    expect(page.get_by_role("heading", name="Policy studio-strict")).to_be_visible()
    page.get_by_label("Hate Prompt threshold").select_option("Low")
    page.get_by_label("Violence Completion blocking").uncheck()
    page.get_by_label("Profanity Prompt enabled").check()
    page.get_by_label("Profanity Prompt blocking").check()
    page.get_by_label("Mode").select_option("Asynchronous_filter")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_have_text("Saved")
    saved = arm.get(f"{ACCOUNT}/raiPolicies/studio-strict").json()["properties"]
    filters = {(f["name"], f["source"]): f for f in saved["contentFilters"]}
    assert filters[("Hate", "Prompt")]["severityThreshold"] == "Low"
    assert filters[("Hate", "Completion")]["severityThreshold"] == "Medium"
    assert filters[("Violence", "Completion")]["blocking"] is False
    assert filters[("Profanity", "Prompt")]["enabled"] is True
    assert filters[("Jailbreak", "Prompt")]["enabled"] is True  # kept from the base policy
    assert saved["mode"] == "Asynchronous_filter"

    new_list = page.get_by_role("form", name="New blocklist")
    new_list.get_by_label("New blocklist").fill("studio-terms")
    new_list.get_by_label("Description").fill("Words the Studio test bans")
    new_list.get_by_role("button", name="Create blocklist").click()
    add = page.get_by_role("form", name="Add item")
    add.get_by_label("Pattern").fill("forbidden-word")
    add.get_by_role("button", name="Add item").click()
    expect(page.locator(".items")).to_contain_text("forbidden-word")
    items = arm.get(f"{ACCOUNT}/raiBlocklists/studio-terms/raiBlocklistItems").json()["value"]
    assert [item["properties"]["pattern"] for item in items] == ["forbidden-word"]

    page.locator("select[name=blocklist-ref]").select_option("studio-terms")
    page.get_by_role("button", name="Add blocklist").click()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_have_text("Saved")
    saved = arm.get(f"{ACCOUNT}/raiPolicies/studio-strict").json()["properties"]
    assert saved["customBlocklists"] == [{"blocking": True, "blocklistName": "studio-terms", "source": "Prompt"}]
    shot(page, "content-filters")


def test_the_monitoring_chart_shows_the_traffic_just_sent(page: Page, studio: Server,
                                                          principal: dict[str, str]) -> None:
    sent = 3
    client = studio.azure()
    for i in range(sent):  # chat-small serves no other test here: its count is these requests alone
        client.chat.completions.create(model="chat-small", max_tokens=4,
                                       messages=[{"role": "user", "content": f"Count to {i + 2}."}])
    sign_in_as_principal(page, studio, principal)
    go(page, "Monitoring")
    requests = page.locator("tr[data-deployment=chat-small] td[data-metric=AzureOpenAIRequests]")
    deadline = time.monotonic() + 20
    while not (requests.count() and requests.inner_text() == str(sent)):  # metrics are written once a second
        assert time.monotonic() < deadline, f"the totals never showed {sent} requests"
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(500)
    tokens = page.locator("tr[data-deployment=chat-small] td[data-metric=GeneratedTokens]").inner_text()
    assert 0 < int(tokens) <= sent * 4
    chart = page.locator("[data-metric-chart=AzureOpenAIRequests]")
    expect(chart.locator("canvas")).to_be_visible()
    expect(chart.locator(".u-legend")).to_contain_text("chat-small")
    # the cost of those tokens, through Cost Management's query: the seeded prices make it more than nothing
    cost = page.locator("tr[data-deployment=chat-small] td[data-metric=Cost]")
    deadline = time.monotonic() + 20
    while float(cost.get_attribute("data-amount") or 0) <= 0:  # usage settles once each answer has ended
        assert time.monotonic() < deadline, "the totals never showed chat-small's cost"
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(500)
    expect(cost).to_contain_text("$")
    expect(page.locator("th", has_text="Cost (USD)")).to_be_visible()
    total = page.locator("[data-cost-total]")
    assert float(total.get_attribute("data-cost-total") or 0) >= float(cost.get_attribute("data-amount") or 0)
    expect(total).to_contain_text("USD")
    cost_chart = page.locator("[data-cost-chart]")
    expect(cost_chart.locator("canvas")).to_be_visible()
    expect(cost_chart.locator(".u-legend")).to_contain_text("chat-small")
    expect(page.get_by_text("Cost is not charted")).to_have_count(0)
    shot(page, "monitoring")


def batch_lines(count: int) -> bytes:
    lines = [{"custom_id": f"studio-{i}", "method": "POST", "url": "/chat/completions",
              "body": {"model": BATCH_DEPLOYMENT, "max_tokens": 4, "temperature": 0,
                       "messages": [{"role": "user", "content": f"Say the number {i}."}]}} for i in range(count)]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_uploading_a_file_and_following_a_batch(page: Page, studio: Server, principal: dict[str, str],
                                                arm: httpx.Client) -> None:
    created = arm.put(f"{ACCOUNT}/deployments/{BATCH_DEPLOYMENT}", json={
        "sku": {"name": "GlobalBatch", "capacity": 100},
        "properties": {"model": {"format": "HuggingFace", "name": "SmolLM2-135M-Instruct", "version": "1"}}})
    assert created.is_success, created.text
    sign_in_with_key(page, studio, arm.post(f"{ACCOUNT}/listKeys").json()["key1"])
    go(page, "Files & batches")
    upload = page.get_by_role("form", name="Upload file")
    upload.get_by_label("File").set_input_files(files=[{"name": "studio-batch.jsonl", "mimeType": "application/jsonl",
                                                        "buffer": batch_lines(2)}])
    upload.get_by_label("Purpose").select_option("batch")
    upload.get_by_role("button", name="Upload").click()
    expect(page.locator("tr[data-file='studio-batch.jsonl']")).to_contain_text("batch")

    page.get_by_role("form", name="Create batch").get_by_role("button", name="Create batch").click()
    batch = page.locator("tr[data-batch]").first
    expect(batch.locator("[data-batch-progress]")).to_contain_text("/ 2")
    expect(batch).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
    expect(batch.locator("[data-batch-progress]")).to_contain_text("2 / 2")
    shot(page, "files-and-batches")
    with page.expect_download() as downloading:
        batch.get_by_role("button", name="Output").click()
    output = Path(downloading.value.path()).read_text()
    results: list[dict[str, Any]] = [json.loads(line) for line in output.splitlines()]
    assert sorted(r["custom_id"] for r in results) == ["studio-0", "studio-1"]
    assert all(r["response"]["status_code"] == 200 for r in results)


def test_every_page_loads_for_a_principal(page: Page, studio: Server, principal: dict[str, str]) -> None:
    sign_in_as_principal(page, studio, principal)
    for title in ("Playground", "Deployments", "Keys", "Content filters", "Files & batches", "Monitoring"):
        go(page, title)
        expect(page.get_by_role("link", name=title, exact=True)).to_have_attribute("aria-current", "page")
        expect(page.locator("main .card").first).to_be_visible()
        expect(page.locator("main [role=alert]")).to_have_count(0)
