"""Network rules of the data plane: public access, IP rules, private listeners, trusted proxies."""

from azurine.network.rules import (
    AccessRules,
    Listener,
    NetworkSettings,
    RulesCache,
    TrustedProxies,
    Verdict,
    decide,
    normalized_acls,
    parse_address,
    parse_network,
    parse_rules,
)

__all__ = [
    "AccessRules",
    "Listener",
    "NetworkSettings",
    "RulesCache",
    "TrustedProxies",
    "Verdict",
    "decide",
    "normalized_acls",
    "parse_address",
    "parse_network",
    "parse_rules",
]
