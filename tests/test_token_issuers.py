"""Tokens of external OpenID Connect issuers: keys read from a real provider over HTTP, rotation, and every
kind of bad token refused."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from azurine.identity.issuers import OidcIssuers, issuer_forms, verify_external
from azurine.identity.tokens import InvalidToken
from oidc_provider import AUDIENCE, Provider


def test_a_token_of_a_trusted_issuer_names_its_principal(provider: Provider) -> None:
    issuers = OidcIssuers([provider.issuer])
    principal = verify_external(issuers, provider.token("k1"), (AUDIENCE,))
    assert (principal.object_id, principal.tenant_id, principal.name) == ("user-1", "tenant-a", "Dana")
    verify_external(issuers, provider.token("k1"), (AUDIENCE,))
    assert provider.jwks_reads == 1  # the keys are cached


def test_a_rotated_key_is_fetched_once_and_unknown_ids_do_not_hammer_the_provider(provider: Provider) -> None:
    issuers = OidcIssuers([provider.issuer], refetch_after_s=0.5)
    verify_external(issuers, provider.token("k1"), (AUDIENCE,))
    time.sleep(0.6)
    provider.add_key("k2")
    assert verify_external(issuers, provider.token("k2"), (AUDIENCE,)).object_id == "user-1"
    assert provider.jwks_reads == 2
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verify_external(issuers, provider.token("k9", stranger), (AUDIENCE,))
    assert provider.jwks_reads == 2  # unknown ids within the interval after a read cost the provider nothing
    time.sleep(0.6)
    with pytest.raises(InvalidToken):
        verify_external(issuers, provider.token("k9", stranger), (AUDIENCE,))
    assert provider.jwks_reads == 3  # after it, one read to look for the id


def test_a_withdrawn_key_stops_verifying_after_the_key_age_but_an_outage_keeps_the_last_keys(
        provider: Provider) -> None:
    issuers = OidcIssuers([provider.issuer], max_age_s=0.3)
    provider.add_key("k2")
    signed_by_k1 = provider.token("k1")
    verify_external(issuers, signed_by_k1, (AUDIENCE,))
    del provider.keys["k1"]  # the provider withdraws the key, as after a leak
    time.sleep(0.4)
    with pytest.raises(InvalidToken):
        verify_external(issuers, signed_by_k1, (AUDIENCE,))
    signed_by_k2 = provider.token("k2")
    provider.close()
    time.sleep(0.4)
    assert verify_external(issuers, signed_by_k2, (AUDIENCE,)).object_id == "user-1"


@pytest.mark.parametrize("case", ["expired", "not_yet", "audience", "issuer", "signature", "none", "hmac", "garbage"])
def test_bad_tokens_are_refused(provider: Provider, case: str) -> None:
    issuers = OidcIssuers([provider.issuer])
    now = int(time.time())
    tokens = {
        "expired": lambda: provider.token("k1", exp=now - 3600, nbf=now - 7200),
        "not_yet": lambda: provider.token("k1", nbf=now + 3600, exp=now + 7200),
        "audience": lambda: provider.token("k1", aud="https://management.azure.com/"),
        "issuer": lambda: provider.token("k1", iss=f"{provider.base}/tenant-b"),
        "signature": lambda: provider.token("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "none": lambda: jwt.encode({"iss": provider.issuer, "aud": AUDIENCE, "exp": now + 600}, None,
                                   algorithm="none", headers={"kid": "k1"}),
        "hmac": lambda: jwt.encode({"iss": provider.issuer, "aud": AUDIENCE, "exp": now + 600}, "k1" * 16,
                                   algorithm="HS256", headers={"kid": "k1"}),
        "garbage": lambda: "not.a.token",
    }
    with pytest.raises(InvalidToken):
        verify_external(issuers, tokens[case](), (AUDIENCE,))


def test_clock_skew_is_tolerated(provider: Provider) -> None:
    now = int(time.time())
    token = provider.token("k1", exp=now - 60, nbf=now - 600)  # expired a minute ago: within five minutes' skew
    assert verify_external(OidcIssuers([provider.issuer]), token, (AUDIENCE,)).object_id == "user-1"


def test_entra_tenants_are_trusted_in_both_issuer_forms() -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    v1, v2 = f"https://sts.windows.net/{tenant}/", f"https://login.microsoftonline.com/{tenant}/v2.0"
    assert issuer_forms(v1) == issuer_forms(v2) == (v1, v2)
    issuers = OidcIssuers([v2])
    assert issuers.trusts(v1) and issuers.trusts(v2) and not issuers.trusts("https://sts.windows.net/other/")


def test_api_keys_are_compared_in_constant_time_against_both_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    from azurine.storage import state

    compared: list[tuple[bytes, bytes]] = []
    real = secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(state.secrets, "compare_digest", spy)
    account = state.AccountRecord("id", "a", "s", "g", "OpenAI", "local", None, key1="k" * 32, key2="j" * 32)
    assert account.key_matches("k" * 32) and account.key_matches("j" * 32)
    assert not account.key_matches("k" * 31 + "x")
    assert len(compared) == 6  # both keys, each time, whichever matched
