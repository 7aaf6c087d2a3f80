"""Network rules of the data plane: public access, IP rules, private endpoints and trusted proxies.

The server runs on 127.0.0.1 with a private listener on 127.0.0.5; clients pick their source address within
127.0.0.0/8 (all of it is loopback on Linux), so each test speaks from a distinct address over real sockets."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from azurine.api.errors import AzureError
from azurine.api.network_stage import check_network as stage
from azurine.identity.tokens import issue_token
from azurine.jobs.batch_runner import BATCH_SCOPE_KEY
from azurine.network import (
    AccessRules,
    Listener,
    NetworkSettings,
    TrustedProxies,
    Verdict,
    decide,
    normalized_acls,
    parse_address,
    parse_network,
    parse_rules,
)
from azurine.network.rules import RulesCache
from azurine.storage.cache import StateCache
from azurine.storage.database import make_engine
from azurine.storage.state import AccountRecord, StateStore
from conftest import API_KEY, Server, start_server, stop

ARM = "?api-version=2025-09-01"
DEPLOYMENTS = "/openai/deployments?api-version=2023-05-15"
PUBLIC_DISABLED = {"error": {"code": "403", "message": "Public access is disabled. Please configure private endpoint."}}
FIREWALL = {"error": {"code": "403", "message": "Access denied due to Virtual Network/Firewall rules."}}
# how long a server may answer from what it read before: the lookup cache's lifetime, and a margin
SETTLE = StateCache().ttl + 0.2
PRIVATE_HOST = "127.0.0.5"
PROXY = "127.0.0.2"


def free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Network:
    server: Server
    private_url: str
    account_path: str
    token: str

    def manage(self, method: str, properties: dict[str, Any]) -> httpx.Response:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=60) as http:
            return http.request(method, f"{self.server.url}{self.account_path}{ARM}",
                                json={"properties": properties})

    def configure(self, **properties: Any) -> None:
        answer = self.manage("PATCH", properties)
        assert answer.status_code == 200, answer.text
        time.sleep(SETTLE)


def call(base_url: str, source: str, path: str = DEPLOYMENTS, **headers: str) -> httpx.Response:
    """A data-plane request sent from `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=base_url, timeout=120) as http:
        return http.get(path, headers={"api-key": API_KEY, **headers})


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    private = f"{PRIVATE_HOST}:{free_port_on(PRIVATE_HOST)}"
    data_dir = tmp_path_factory.mktemp("network") / "data"
    server = start_server(data_dir, env={"AZURINE_TRUSTED_PROXIES": f"{PROXY}/32"}, args=["--private-listen", private])
    try:
        store = StateStore(make_engine(f"sqlite:///{data_dir / 'azurine.db'}"))
        account = store.first_account()
        assert account is not None
        token, _ = issue_token(store)
        path = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
                f"Microsoft.CognitiveServices/accounts/{account.name}")
        yield Network(server, f"http://{private}", path, token)
    finally:
        stop(server.process)


@pytest.fixture()
def opened(network: Network) -> Iterator[Network]:
    """Each test starts and ends with the account open to everyone."""
    network.configure(publicNetworkAccess="Enabled", networkAcls=None)
    try:
        yield network
    finally:
        network.configure(publicNetworkAccess="Enabled", networkAcls=None)


# over real sockets -------------------------------------------------------------------------------------------

def test_ip_rules_let_in_listed_addresses_and_ranges_only(opened: Network) -> None:
    url = opened.server.url
    assert call(url, "127.0.0.3").status_code == 200
    opened.configure(networkAcls={"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.3"}]})
    assert call(url, "127.0.0.3").status_code == 200
    refused = call(url, "127.0.0.4")
    assert refused.status_code == 403 and refused.json() == FIREWALL
    files = call(url, "127.0.0.4", "/openai/v1/files")  # every data-plane route, the v1 surface too
    assert files.status_code == 403 and files.json() == FIREWALL

    opened.configure(networkAcls={"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.0/30"}]})
    assert call(url, "127.0.0.3").status_code == 200
    assert call(url, "127.0.0.4").status_code == 403

    # refused before the key is looked at: a wrong key from outside still reads as the firewall
    wrong_key = call(url, "127.0.0.4", **{"api-key": "not-the-key"})
    assert wrong_key.status_code == 403 and wrong_key.json() == FIREWALL

    opened.configure(networkAcls={"defaultAction": "Allow", "ipRules": [{"value": "127.0.0.3"}]})
    assert call(url, "127.0.0.4").status_code == 200
    assert call(url, "127.0.0.3").status_code == 200


def test_public_access_disabled_leaves_only_the_private_listener(opened: Network) -> None:
    opened.configure(publicNetworkAccess="Disabled",
                     networkAcls={"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.3"}]})
    refused = call(opened.server.url, "127.0.0.3")  # the IP rules do not reopen what public access closed
    assert refused.status_code == 403 and refused.json() == PUBLIC_DISABLED
    assert call(opened.private_url, "127.0.0.4").status_code == 200  # firewall passed by too
    chat = httpx.post(f"{opened.private_url}/openai/deployments/chat-small/chat/completions?api-version=2024-10-21",
                      headers={"api-key": API_KEY}, timeout=300,
                      json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    assert chat.status_code == 200, chat.text
    # the private listener still asks for the key
    assert call(opened.private_url, "127.0.0.4", **{"api-key": "not-the-key"}).status_code == 401


def test_management_plane_is_not_behind_the_firewall(opened: Network) -> None:
    opened.configure(publicNetworkAccess="Disabled")
    assert call(opened.server.url, "127.0.0.3").json() == PUBLIC_DISABLED
    reopened = opened.manage("PATCH", {"publicNetworkAccess": "Enabled"})
    assert reopened.status_code == 200
    time.sleep(SETTLE)
    assert call(opened.server.url, "127.0.0.3").status_code == 200


def test_forwarded_for_counts_only_from_a_trusted_proxy(opened: Network) -> None:
    url = opened.server.url
    opened.configure(networkAcls={"defaultAction": "Deny", "ipRules": [{"value": "198.51.100.7"}]})
    # the proxy forwards a listed client
    assert call(url, PROXY, **{"X-Forwarded-For": "198.51.100.7"}).status_code == 200
    # the right-most hop that is not the proxy is the client, whatever the client wrote before it
    assert call(url, PROXY, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}).status_code == 403
    assert call(url, PROXY, **{"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}).status_code == 200
    assert call(url, PROXY, **{"X-Forwarded-For": f"198.51.100.7, {PROXY}"}).status_code == 200
    # the proxy itself is not listed
    assert call(url, PROXY).status_code == 403
    # the same header from anyone else is ignored
    forged = call(url, "127.0.0.3", **{"X-Forwarded-For": "198.51.100.7"})
    assert forged.status_code == 403 and forged.json() == FIREWALL

    opened.configure(networkAcls={"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.3/32"}]})
    # a listed peer stays itself whatever it forwards, and a proxy cannot borrow a listed address it hides
    assert call(url, "127.0.0.3", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert call(url, PROXY, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_management_checks_network_acls(opened: Network) -> None:
    stored = opened.manage("PATCH", {"networkAcls": {"defaultAction": "deny", "bypass": "AzureServices",
                                                     "ipRules": [{"value": "2001:db8::/32"}, {"value": "10.1.2.3"}],
                                                     "virtualNetworkRules": []}})
    assert stored.status_code == 200, stored.text
    assert stored.json()["properties"]["networkAcls"] == {
        "defaultAction": "Deny", "bypass": "AzureServices",
        "ipRules": [{"value": "2001:db8::/32"}, {"value": "10.1.2.3"}], "virtualNetworkRules": []}
    for acls, named in [({"defaultAction": "Deny", "ipRules": [{"value": "10.0.0.0/33"}]}, "10.0.0.0/33"),
                        ({"defaultAction": "Deny", "ipRules": [{"value": "10.0.0.1"}, {"value": "bad"}]},
                         "ipRules[1].value 'bad'"),
                        ({"defaultAction": "Block"}, "Block"),
                        ({"ipRules": "10.0.0.1"}, "ipRules"),
                        ("Deny", "networkAcls")]:
        refused = opened.manage("PATCH", {"networkAcls": acls})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "InvalidResourceProperties"
        assert named in refused.json()["error"]["message"]


# the stage alone ---------------------------------------------------------------------------------------------

def account_with(properties: dict[str, Any], etag: str = "1") -> AccountRecord:
    return AccountRecord(id="acct", name="a", subscription_id="s", resource_group="g", kind="OpenAI",
                         location="eastus", custom_subdomain=None, key1="k1", key2="k2", properties=properties,
                         etag=etag)


def request_to(app: Starlette, client: str, server: tuple[str, int] = ("127.0.0.1", 8080),
               state: dict[str, Any] | None = None, forwarded_for: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return Request({"type": "http", "method": "GET", "path": "/openai/deployments", "headers": headers,
                    "client": (client, 5000), "server": server, "state": state or {}, "app": app})


def test_stage_refuses_public_traffic_but_not_a_batch_worker_or_a_private_listener() -> None:
    app = Starlette()
    settings = NetworkSettings(TrustedProxies.parse("10.0.0.1"), (Listener.parse("10.9.9.9:8443"),))
    rules = RulesCache()

    def check_network(request: Request, account: AccountRecord) -> None:
        stage(request, account, rules, settings)

    closed = account_with({"publicNetworkAccess": "Disabled"})
    with pytest.raises(AzureError) as refused:
        check_network(request_to(app, "127.0.0.1"), closed)
    assert refused.value.status == 403 and refused.value.body() == PUBLIC_DISABLED
    check_network(request_to(app, "127.0.0.1", state={BATCH_SCOPE_KEY: "batch_1"}), closed)
    check_network(request_to(app, "203.0.113.1", server=("10.9.9.9", 8443)), closed)
    with pytest.raises(AzureError):  # the same address on another port is public
        check_network(request_to(app, "203.0.113.1", server=("10.9.9.9", 8080)), closed)

    firewalled = account_with({"networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "192.0.2.0/24"}]}},
                              etag="2")
    check_network(request_to(app, "10.0.0.1", forwarded_for="192.0.2.8"), firewalled)
    with pytest.raises(AzureError) as blocked:
        check_network(request_to(app, "10.0.0.2", forwarded_for="192.0.2.8"), firewalled)
    assert blocked.value.body() == FIREWALL
    check_network(request_to(app, "203.0.113.1"), account_with({}, etag="3"))


# the rules alone ---------------------------------------------------------------------------------------------

def deny(*values: str, public: str = "Enabled") -> dict[str, Any]:
    return {"publicNetworkAccess": public,
            "networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": v} for v in values]}}


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = parse_address(text)
    assert address is not None
    return address


def test_verdicts_follow_azure() -> None:
    assert decide({}, ip("203.0.113.1"), private=False) is Verdict.ALLOWED
    assert decide({"networkAcls": {"defaultAction": "Allow"}}, None, private=False) is Verdict.ALLOWED
    assert decide(deny("10.0.0.0/8"), ip("10.200.1.1"), private=False) is Verdict.ALLOWED
    assert decide(deny("10.0.0.0/8"), ip("11.0.0.1"), private=False) is Verdict.FIREWALL
    assert decide(deny("10.0.0.0/8"), None, private=False) is Verdict.FIREWALL
    assert decide(deny(), ip("10.0.0.1"), private=False) is Verdict.FIREWALL
    assert decide(deny("10.0.0.1", public="Disabled"), ip("10.0.0.1"), private=False) is Verdict.PUBLIC_ACCESS_DISABLED
    assert decide({"publicNetworkAccess": "Disabled"}, ip("10.0.0.1"), private=False) is Verdict.PUBLIC_ACCESS_DISABLED
    assert decide(deny(public="Disabled"), None, private=True) is Verdict.ALLOWED
    assert decide({"networkAcls": {"defaultAction": "deny"}}, ip("10.0.0.1"), private=False) is Verdict.FIREWALL


def test_ipv6_rules_and_addresses() -> None:
    rules = deny("2001:db8::/32", "fe80::1", "192.0.2.0/24")
    assert decide(rules, ip("2001:db8:ffff::1"), private=False) is Verdict.ALLOWED
    assert decide(rules, ip("[2001:db8::5]:443"), private=False) is Verdict.ALLOWED
    assert decide(rules, ip("fe80::1%eth0"), private=False) is Verdict.ALLOWED
    assert decide(rules, ip("2001:db9::1"), private=False) is Verdict.FIREWALL
    # an IPv4 client seen through a dual-stack socket still matches IPv4 rules
    assert decide(rules, ip("::ffff:192.0.2.9"), private=False) is Verdict.ALLOWED
    assert ip("192.0.2.9:5000") == ipaddress.ip_address("192.0.2.9")
    assert parse_address("not-an-address") is None and parse_address("") is None and parse_address(None) is None


def test_bad_cidrs() -> None:
    for bad in ["10.0.0.0/33", "2001:db8::/129", "300.1.1.1", "10.0.0", "", "10.0.0.0/8/8", "eastus"]:
        with pytest.raises(ValueError):
            parse_network(bad)
    assert str(parse_network("10.0.0.7/24")) == "10.0.0.0/24"  # host bits name their range
    assert str(parse_network("192.0.2.1")) == "192.0.2.1/32"
    # a bad rule already stored grants nothing and keeps the good ones
    parsed = parse_rules(deny("bad", "10.0.0.0/33", "192.0.2.1"))
    assert parsed == AccessRules(public_access=True, deny_by_default=True,
                                 allowed=(ipaddress.ip_network("192.0.2.1/32"),))
    assert normalized_acls({"defaultAction": "ALLOW", "x": 1}) == {"defaultAction": "Allow", "x": 1}
    assert normalized_acls(None) is None
    for bad_acls in [{"defaultAction": "Maybe"}, {"ipRules": [{"value": "1.2.3.4/40"}]}, {"ipRules": ["1.2.3.4"]},
                     {"ipRules": {}}, [], {"defaultAction": 1}]:
        with pytest.raises(ValueError):
            normalized_acls(bad_acls)


def test_trusted_proxy_chains() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/24, 2001:db8::1")
    assert proxies.client_address("203.0.113.5", ["198.51.100.1"]) == ip("203.0.113.5")  # untrusted: ignored
    assert proxies.client_address("10.0.0.9", []) == ip("10.0.0.9")
    assert proxies.client_address("10.0.0.9", ["198.51.100.1"]) == ip("198.51.100.1")
    # two proxies of ours in a row: the client is the right-most hop that is not one of them
    assert proxies.client_address("10.0.0.9", ["6.6.6.6, 198.51.100.1, 10.0.0.3"]) == ip("198.51.100.1")
    assert proxies.client_address("10.0.0.9", ["6.6.6.6", "198.51.100.1, 10.0.0.3"]) == ip("198.51.100.1")
    assert proxies.client_address("2001:db8::1", ["[2001:db8::2]:1234"]) == ip("2001:db8::2")
    # nothing but proxies: the first hop is as far back as anyone saw
    assert proxies.client_address("10.0.0.9", ["10.0.0.1, 10.0.0.2"]) == ip("10.0.0.1")
    # a garbled hop hides who the client is
    assert proxies.client_address("10.0.0.9", ["198.51.100.1, garbage"]) is None
    assert TrustedProxies.parse(None).client_address("10.0.0.9", ["198.51.100.1"]) == ip("10.0.0.9")
    assert TrustedProxies.parse("").networks == ()
    with pytest.raises(ValueError):
        TrustedProxies.parse("10.0.0.0/8, nonsense")


def test_private_listeners() -> None:
    exact = Listener.parse("127.0.0.5:8443")
    assert exact.matches(("127.0.0.5", 8443)) and not exact.matches(("127.0.0.1", 8443))
    assert not exact.matches(("127.0.0.5", 8080)) and not exact.matches(None)
    everywhere = Listener.parse("0.0.0.0:9000")
    assert everywhere.matches(("10.1.1.1", 9000)) and not everywhere.matches(("10.1.1.1", 9001))
    v6 = Listener.parse("[::1]:8443")
    assert v6.host == "::1" and v6.matches(("::1", 8443)) and v6.bind_host == "::1"
    assert Listener.parse("localhost:8443").matches(("127.0.0.1", 8443))
    for bad in ["8443", "127.0.0.5", "127.0.0.5:http", "127.0.0.5:70000", "::1:8443"]:
        with pytest.raises(ValueError):
            Listener.parse(bad)


def test_rules_are_parsed_once_per_account_version(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RulesCache(size=2)
    calls: list[int] = []
    import azurine.network.rules as rules_module

    real = rules_module.parse_rules

    def counting(properties: dict[str, Any]) -> AccessRules:
        calls.append(1)
        return real(properties)

    monkeypatch.setattr(rules_module, "parse_rules", counting)
    properties = deny("10.0.0.0/8")
    for _ in range(100):
        assert cache.rules("a", "etag-1", properties).allowed == (ipaddress.ip_network("10.0.0.0/8"),)
    assert len(calls) == 1
    changed = deny("192.0.2.0/24")
    assert cache.rules("a", "etag-2", changed).allowed == (ipaddress.ip_network("192.0.2.0/24"),)
    assert len(calls) == 2
    cache.rules("b", "etag-1", properties)
    assert len(cache) == 2  # the oldest version fell out
    assert cache.rules("c", "", {}).open and len(calls) == 3  # an open account needs no parsing at all
