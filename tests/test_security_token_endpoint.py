"""The built-in issuer's token endpoints answer anyone, so what an unauthenticated caller sends may not grow the
audit log beyond a bound: a client id must be a GUID (as Entra requires), what is audited is cut to size, and a
client address whose token requests keep failing is told to wait (429, `Retry-After`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from azurine.identity.tokens import TENANT_ID
from azurine.storage.access import AuditRecord
from test_security_tokens import Install, open_install

TOKEN = f"/{TENANT_ID}/oauth2/v2.0/token"
SCOPE = "https://cognitiveservices.azure.com/.default"
FAILURES = 4  # AZURINE_TOKEN_FAILURES_PER_MINUTE here
PRINCIPAL_MAX, DETAIL_MAX = 128, 1024  # the audit log's principal column, and the most a detail keeps


@pytest.fixture()
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    monkeypatch.setenv("AZURINE_TOKEN_FAILURES_PER_MINUTE", str(FAILURES))
    return open_install(tmp_path / "data", monkeypatch)


def directory_events(install: Install) -> list[AuditRecord]:
    return [e for e in install.services.access.store.audit_events(limit=10_000)
            if e.action.startswith("Azurine.Directory/tokens/")]


def assert_bounded(events: list[AuditRecord]) -> None:
    assert events
    for event in events:
        assert len(event.principal) <= PRINCIPAL_MAX and len(event.detail) <= DETAIL_MAX
        assert "\n" not in event.principal + event.detail


def test_a_client_id_that_is_not_a_guid_is_refused_as_entra_refuses_it(install: Install) -> None:
    huge = "x" * 200_000
    refused = install.call("POST", TOKEN, data={"grant_type": "client_credentials", "client_id": huge,
                                                "client_secret": "s", "scope": SCOPE})
    assert refused.status_code == 400
    body = refused.json()
    assert (body["error"], body["error_codes"]) == ("invalid_request", [700016])
    assert body["error_description"].startswith("AADSTS700016: ") and len(body["error_description"]) < 2048
    assert_bounded(directory_events(install))


def test_what_an_unauthenticated_caller_sends_is_audited_only_in_part(install: Install) -> None:
    scope = " ".join([SCOPE] * 10_000) + "\nforged line"
    refused = install.call("POST", TOKEN, data={"grant_type": "client_credentials", "client_id": str(uuid.uuid4()),
                                                "client_secret": "s", "scope": scope})
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
    managed = install.call("GET", "/msi/token", params={"api-version": "2019-08-01", "resource": "r" * 20_000,
                                                        "client_id": "c" * 20_000},
                           headers={"X-IDENTITY-HEADER": "not-the-header"}, client="198.51.100.9")
    assert managed.status_code in (400, 401)
    oversized = install.call("POST", TOKEN, data={"grant_type": "client_credentials", "client_id": "c",
                                                  "scope": "s" * 2_000_000}, client="198.51.100.10")
    assert (oversized.status_code, oversized.json()["error"]) == (400, "invalid_request")
    events = directory_events(install)
    assert {e.action for e in events} == {"Azurine.Directory/tokens/clientCredentials",
                                          "Azurine.Directory/tokens/managedIdentity"}
    assert_bounded(events)


def test_a_managed_identity_client_id_that_is_not_a_guid_is_refused(install: Install) -> None:
    refused = install.call("GET", "/msi/token", params={"api-version": "2019-08-01", "resource": SCOPE[:-9],
                                                        "client_id": "not-a-guid"},
                           headers={"X-IDENTITY-HEADER": "whatever"})
    assert refused.status_code == 400 and "client_id" in refused.json()["message"]


def test_failed_token_requests_are_limited_per_client_address(install: Install) -> None:
    form = {"grant_type": "client_credentials", "client_id": str(uuid.uuid4()), "client_secret": "s",
            "scope": SCOPE}
    for _ in range(FAILURES):
        assert install.call("POST", TOKEN, data=form, client="198.51.100.1").status_code == 400
    audited = len(directory_events(install))
    limited = install.call("POST", TOKEN, data=form, client="198.51.100.1")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    body = limited.json()
    assert body["error"] == "temporarily_unavailable" and body["error_description"].startswith("AADSTS")
    assert len(directory_events(install)) == audited  # a refused flood writes nothing
    managed = install.call("GET", "/msi/token", params={"api-version": "2019-08-01", "resource": SCOPE[:-9]},
                           headers={"X-IDENTITY-HEADER": "wrong"}, client="198.51.100.1")
    assert managed.status_code == 429 and int(managed.headers["Retry-After"]) >= 1
    # another address is not held back by this one's failures
    assert install.call("POST", TOKEN, data=form, client="198.51.100.2").status_code == 400
