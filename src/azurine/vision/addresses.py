"""The addresses an image download may connect to: public ones, and the non-public ones the operator allows.

Private, loopback, link-local, multicast, reserved, unspecified and shared (CGNAT) addresses are not public, and
neither is an IPv6 address that carries one of them (IPv4-mapped, 6to4, NAT64): a tenant's URL must not reach the
server itself, the operator's network or a cloud's metadata service (169.254.169.254).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in NAT64:
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None:
            return is_public(carried)
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local
                                      or address.is_loopback or address.is_unspecified or address.is_private)


@dataclass(frozen=True)
class AddressPolicy:
    """`AZURINE_IMAGE_URL_ALLOW_PRIVATE`: every address (`true`), or these networks beside the public ones."""

    allow_private: bool = False
    allowed: tuple[Network, ...] = ()

    def permits(self, address: Address) -> bool:
        if self.allow_private or is_public(address):
            return True
        return any(address.version == network.version and address in network for network in self.allowed)

    @classmethod
    def parse(cls, text: str) -> AddressPolicy:
        """`true`/`1`/`yes`, `false`/`0`/`no`/empty, or comma-separated addresses and CIDRs."""
        raw = text.strip()
        if raw.lower() in ("1", "true", "yes"):
            return cls(allow_private=True)
        if raw.lower() in ("", "0", "false", "no"):
            return cls()
        networks = []
        for item in raw.split(","):
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"AZURINE_IMAGE_URL_ALLOW_PRIVATE must be true, false, or comma-separated addresses "
                                 f"and CIDRs, not {item.strip()!r}") from None
        return cls(allowed=tuple(networks))
