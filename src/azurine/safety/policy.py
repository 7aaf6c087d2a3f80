"""RAI policies as the data plane applies them: which detector runs on which side, from what severity it
blocks, and whether it blocks at all or only annotates.

A deployment names a policy (`raiPolicyName`): one of the two built in, or one of the account's own. An
account's policy starts from its `basePolicyName` and overrides filters by (name, source), as the portal
shows it: a filter the custom policy does not list keeps the base policy's setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HARM = ("hate", "sexual", "violence", "self_harm")
SEVERITIES = ("safe", "low", "medium", "high")
# Azure's filter names (management plane) → the annotation keys of the data plane
FILTER_KEYS = {
    "Hate": "hate", "Sexual": "sexual", "Violence": "violence", "Selfharm": "self_harm",
    "Jailbreak": "jailbreak", "Indirect Attack": "indirect_attack",
    "Protected Material Text": "protected_material_text", "Protected Material Code": "protected_material_code",
    "Profanity": "profanity", "Personally Identifiable Information": "personally_identifiable_information",
}
PII = "personally_identifiable_information"
HARM_FILTER_NAMES = ("Hate", "Sexual", "Violence", "Selfharm")
SOURCES = ("Prompt", "Completion")


def _filter(name: str, source: str, severity: str | None = "Medium") -> dict[str, Any]:
    found: dict[str, Any] = {"blocking": True, "enabled": True, "name": name, "source": source}
    if severity is not None:
        found["severityThreshold"] = severity
    return found


_HARM_DEFAULTS = [_filter(name, source) for name in HARM_FILTER_NAMES for source in SOURCES]
BUILT_IN_PROPERTIES: dict[str, dict[str, Any]] = {
    "Microsoft.Default": {"mode": "Blocking", "contentFilters": _HARM_DEFAULTS, "customBlocklists": []},
    "Microsoft.DefaultV2": {"mode": "Default", "customBlocklists": [], "contentFilters": [
        *_HARM_DEFAULTS, _filter("Jailbreak", "Prompt", None),
        _filter("Protected Material Text", "Completion", None),
        _filter("Protected Material Code", "Completion", None)]},
}


@dataclass(frozen=True)
class Rule:
    """One detector on one side: it runs when enabled; it filters when blocking and it fires."""

    key: str  # the annotation key: hate, jailbreak, protected_material_code, …
    blocking: bool
    threshold: int | None = None  # harm categories: the lowest severity index that fires (2 = medium)
    redact: bool = False  # PII on completions: replace what is found with [TYPE] instead of blocking the answer

    def fires(self, severity: str | None = None, detected: bool = False) -> bool:
        if self.threshold is not None:
            return severity is not None and SEVERITIES.index(severity) >= self.threshold
        return detected


@dataclass(frozen=True)
class BlocklistRule:
    name: str
    blocking: bool


@dataclass(frozen=True)
class Policy:
    name: str
    mode: str  # Default, Blocking, Deferred (held back and checked) or Asynchronous_filter
    prompt: dict[str, Rule] = field(default_factory=dict)
    completion: dict[str, Rule] = field(default_factory=dict)
    prompt_blocklists: tuple[BlocklistRule, ...] = ()
    completion_blocklists: tuple[BlocklistRule, ...] = ()

    @property
    def asynchronous(self) -> bool:
        return self.mode == "Asynchronous_filter"

    def rules(self, source: str) -> dict[str, Rule]:
        return self.prompt if source == "Prompt" else self.completion

    def blocklists(self, source: str) -> tuple[BlocklistRule, ...]:
        return self.prompt_blocklists if source == "Prompt" else self.completion_blocklists


def _rule(entry: Mapping[str, Any]) -> tuple[str, str, Rule | None]:
    key = FILTER_KEYS[entry["name"]]
    if not entry.get("enabled", True):
        return key, entry["source"], None
    threshold = None
    if entry["name"] in HARM_FILTER_NAMES:
        threshold = SEVERITIES.index(str(entry.get("severityThreshold") or "Medium").lower())
    redact = str(entry.get("action") or "").lower() == "redact"
    return key, entry["source"], Rule(key, bool(entry.get("blocking", True)) and not redact, threshold, redact)


def resolve(name: str, properties: Mapping[str, Any] | None = None) -> Policy:
    """The policy named `name`: built in, or an account's stored properties over their base policy."""
    if properties is None:
        properties = BUILT_IN_PROPERTIES[name]
        base: Mapping[str, Any] = {"contentFilters": []}
    else:
        base = BUILT_IN_PROPERTIES.get(properties.get("basePolicyName") or "Microsoft.DefaultV2",
                                       BUILT_IN_PROPERTIES["Microsoft.DefaultV2"])
    sides: dict[str, dict[str, Rule]] = {"Prompt": {}, "Completion": {}}
    for entry in [*base["contentFilters"], *properties.get("contentFilters", [])]:
        key, source, rule = _rule(entry)
        if rule is None:
            sides[source].pop(key, None)
        else:
            sides[source][key] = rule
    lists: dict[str, list[BlocklistRule]] = {"Prompt": [], "Completion": []}
    for entry in properties.get("customBlocklists", []):
        lists[entry["source"]].append(BlocklistRule(entry["blocklistName"], bool(entry.get("blocking", True))))
    return Policy(name=name, mode=str(properties.get("mode") or "Default"), prompt=sides["Prompt"],
                  completion=sides["Completion"], prompt_blocklists=tuple(lists["Prompt"]),
                  completion_blocklists=tuple(lists["Completion"]))


# custom_blocklists became an object with 2024-10-01-preview; earlier dated versions have an array
BLOCKLIST_OBJECT_SINCE = "2024-10-01-preview"


def blocklists_as_array(api_version: str) -> bool:
    """Whether this API version lists blocklist results as the older array."""
    dated = re.match(r"\d{4}-\d{2}-\d{2}(-preview)?$", api_version)
    return bool(dated) and api_version < BLOCKLIST_OBJECT_SINCE
