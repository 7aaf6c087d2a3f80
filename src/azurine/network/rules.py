"""Who may reach an account's data plane: the public-access switch, IP rules, private listeners, trusted proxies.

Azure's order: a request through a private endpoint always passes; otherwise public access must be enabled, and
with `networkAcls.defaultAction: Deny` the client's address must fall within one of the `ipRules`.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from azurine import settings_table

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TRUSTED_PROXIES_ENV = "AZURINE_TRUSTED_PROXIES"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
DEFAULT_ACTIONS = {"allow": "Allow", "deny": "Deny"}


class Verdict(Enum):
    ALLOWED = "allowed"
    PUBLIC_ACCESS_DISABLED = "public access disabled"
    FIREWALL = "denied by the firewall"


def parse_address(text: str | None) -> IPAddress | None:
    """An address as sockets and `X-Forwarded-For` write it (`[v6]`, `v4:port` and zone ids included), or None."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    value = value.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d, which IPv4 rules must still match
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> IPNetwork:
    """An IP rule's value: one address or a CIDR range, IPv4 or IPv6; ValueError when it is neither."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'{text}' is not an IP address or CIDR range")
    try:
        # host bits set (10.0.0.1/24) name the range they fall in, as Azure reads them
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address or CIDR range") from None


def _contains(networks: Iterable[IPNetwork], address: IPAddress) -> bool:
    return any(address.version == network.version and address in network for network in networks)


@dataclass(frozen=True)
class AccessRules:
    """An account's network rules, parsed once."""

    public_access: bool = True
    deny_by_default: bool = False
    allowed: tuple[IPNetwork, ...] = ()

    @property
    def open(self) -> bool:
        """Every request passes, wherever it comes from."""
        return self.public_access and not self.deny_by_default

    def verdict(self, client: IPAddress | None, *, private: bool) -> Verdict:
        if private or self.open:
            return Verdict.ALLOWED
        if not self.public_access:
            return Verdict.PUBLIC_ACCESS_DISABLED
        if client is not None and _contains(self.allowed, client):
            return Verdict.ALLOWED
        return Verdict.FIREWALL


OPEN = AccessRules()


def parse_rules(properties: Mapping[str, Any]) -> AccessRules:
    """From an account's ARM properties. Entries that do not parse (stored before they were checked) grant
    nothing, so a bad rule can only shut a client out, never let one in."""
    public = str(properties.get("publicNetworkAccess") or "Enabled").lower() != "disabled"
    acls = properties.get("networkAcls")
    if not isinstance(acls, Mapping):
        return AccessRules(public_access=public)
    deny = str(acls.get("defaultAction") or "Allow").lower() == "deny"
    allowed: list[IPNetwork] = []
    rules = acls.get("ipRules")
    for rule in rules if isinstance(rules, list) else []:
        try:
            allowed.append(parse_network(rule.get("value") if isinstance(rule, Mapping) else rule))
        except ValueError:
            continue
    return AccessRules(public_access=public, deny_by_default=deny, allowed=tuple(allowed))


def decide(properties: Mapping[str, Any], client: IPAddress | None, *, private: bool) -> Verdict:
    """Whether a request from `client` (None: unknown) may reach the account whose ARM properties these are."""
    return parse_rules(properties).verdict(client, private=private)


class RulesCache:
    """Parsed rules per account version, so that a request never parses CIDRs. An account's etag changes with
    every write, so an entry never goes stale; old versions fall out as the cache fills."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], AccessRules] = OrderedDict()
        self._lock = threading.Lock()

    def rules(self, account_id: str, etag: str, properties: Mapping[str, Any]) -> AccessRules:
        if "networkAcls" not in properties and properties.get("publicNetworkAccess", "Enabled") == "Enabled":
            return OPEN
        version = etag or json.dumps([properties.get("publicNetworkAccess"), properties.get("networkAcls")],
                                     sort_keys=True, default=str)
        key = (account_id, version)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        parsed = parse_rules(properties)
        with self._lock:
            self._entries[key] = parsed
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return parsed

    def __len__(self) -> int:
        return len(self._entries)



@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose `X-Forwarded-For` names the client; from anyone else the header is ignored."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> TrustedProxies:
        """Comma-separated addresses or CIDRs; ValueError names a bad one."""
        return cls(tuple(parse_network(item) for item in (text or "").split(",") if item.strip()))

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and _contains(self.networks, address)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> IPAddress | None:
        """The socket peer, or behind trusted proxies the right-most forwarded address that is not one of them
        (each proxy appends the address it was reached from, so only the right end of the header is vouched
        for). A garbled hop means the client is unknown."""
        address = parse_address(peer)
        if not self.trusts(address):
            return address
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
        if not hops:
            return address
        for hop in reversed(hops):
            forwarded = parse_address(hop)
            if not self.trusts(forwarded):
                return forwarded
        return parse_address(hops[0])  # every hop a proxy of ours: the first is as far back as anyone saw


@dataclass(frozen=True)
class Listener:
    """A socket a server listens on; `addresses` are what its host resolved to when it was given."""

    host: str
    port: int
    addresses: frozenset[IPAddress] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Listener:
        """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every address); ValueError when it is none of these."""
        host, separator, port = text.strip().rpartition(":")
        if not separator or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'{text}' is not HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"'{text}' is not HOST:PORT: write an IPv6 address in brackets, [::1]:PORT")
        return cls(host, int(port), cls._resolve(host))

    @staticmethod
    def _resolve(host: str) -> frozenset[IPAddress]:
        if host in WILDCARD_HOSTS:
            return frozenset()
        literal = parse_address(host)
        if literal is not None:
            return frozenset({literal})
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise ValueError(f"'{host}' does not resolve: {error}") from None
        return frozenset(a for a in (parse_address(str(info[4][0])) for info in found) if a is not None)

    @property
    def bind_host(self) -> str:
        return "0.0.0.0" if self.host in ("", "*") else self.host

    def matches(self, server: Sequence[Any] | None) -> bool:
        """Whether a connection whose local end is `server` (the ASGI scope's (host, port)) came in here."""
        if not server or len(server) < 2 or server[1] != self.port:
            return False
        if self.host in WILDCARD_HOSTS:
            return True
        return parse_address(str(server[0])) in self.addresses


@dataclass(frozen=True)
class NetworkSettings:
    """What a server knows of its own network: the proxies in front of it and its private listeners."""

    trusted_proxies: TrustedProxies = TrustedProxies()
    private_listeners: tuple[Listener, ...] = ()

    @classmethod
    def from_environment(cls, private_listeners: Sequence[Listener] = ()) -> NetworkSettings:
        return cls(TrustedProxies.parse(settings_table.read(TRUSTED_PROXIES_ENV)), tuple(private_listeners))

    def arrived_privately(self, server: Sequence[Any] | None) -> bool:
        return any(listener.matches(server) for listener in self.private_listeners)


def normalized_acls(value: Any) -> dict[str, Any] | None:
    """`networkAcls` as the management plane stores it: `defaultAction` in Azure's spelling, every IP rule
    parseable, everything else as given. ValueError says what is wrong."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("networkAcls must be an object.")
    acls = dict(value)
    action = acls.get("defaultAction")
    if action is not None:
        spelled = DEFAULT_ACTIONS.get(str(action).lower()) if isinstance(action, str) else None
        if spelled is None:
            raise ValueError(f"networkAcls.defaultAction '{action}' is invalid; use Allow or Deny.")
        acls["defaultAction"] = spelled
    rules = acls.get("ipRules")
    if rules is not None:
        if not isinstance(rules, list):
            raise ValueError("networkAcls.ipRules must be an array of {\"value\": \"IP or CIDR\"}.")
        for index, rule in enumerate(rules):
            if not isinstance(rule, dict) or "value" not in rule:
                raise ValueError(f"networkAcls.ipRules[{index}] must be an object with a value.")
            try:
                parse_network(rule["value"])
            except ValueError:
                raise ValueError(f"networkAcls.ipRules[{index}].value '{rule['value']}' is not a valid IP "
                                 "address or CIDR range.") from None
    return acls
