"""One side of one request through the detectors its policy turns on, as Azure's annotations.

Detectors load on first use (each takes from milliseconds to seconds), once per process, and are shared
by all requests; a policy that turns a detector off never loads it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azurine.safety.blocklists import BlocklistMatcher
from azurine.safety.language import detect_language
from azurine.safety.policy import HARM, PII, Policy
from azurine.telemetry.metrics import SCREENED

log = logging.getLogger("azurine")


def _language(text: str) -> str | None:
    """The text's language for metrics and the PII recognizers; not knowing it never stops a screening."""
    try:
        return detect_language(text)
    except Exception:
        log.exception("language detection failed")
        return None


@dataclass(frozen=True)
class Screening:
    """What the detectors found on one text, shaped as `content_filter_results` (blocklists apart)."""

    results: dict[str, dict[str, Any]]
    blocklists: list[tuple[str, bool]] = field(default_factory=list)  # (list name, filtered) of the lists hit
    # (category, severity or "detected") of each finding that filters the content
    reasons: list[tuple[str, str]] = field(default_factory=list)
    redacted: str | None = None  # the text with its PII replaced by [TYPE], where the policy redacts and PII was found
    language: str | None = None  # ISO 639-1 code of the text's language, where it could be told

    @property
    def filtered(self) -> bool:
        return bool(self.reasons) or any(filtered for _, filtered in self.blocklists)

    def annotations(self, with_blocklists: bool, legacy_blocklists: bool = False) -> dict[str, Any]:
        """`content_filter_results`; blocklists as an object (≥ 2024-10-01-preview) or the older array."""
        out = dict(self.results)
        if with_blocklists:
            details = [{"filtered": filtered, "id": name} for name, filtered in self.blocklists]
            out["custom_blocklists"] = details if legacy_blocklists else {
                "details": details, "filtered": any(filtered for _, filtered in self.blocklists)}
        return out


class Detectors:
    def __init__(self, models_dir: Path | None = None) -> None:
        self._models_dir = models_dir
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str) -> Any:
        if name == "classifiers":
            from azurine.safety.language_routing import LanguageRoutedClassifiers

            return LanguageRoutedClassifiers.load(self._models_dir)
        if name == "profanity":
            from azurine.safety.profanity import ProfanityDetector

            return ProfanityDetector.load()
        if name == "protected":
            from azurine.safety.protected_material import ProtectedMaterialIndex

            return ProtectedMaterialIndex.default()
        if name == "pii":
            from azurine.safety.pii import PiiDetector

            return PiiDetector.load()
        raise KeyError(name)

    def warm(self) -> None:
        """Load what the default policy needs, so the first request does not pay for it."""
        self._get("classifiers")
        self._get("protected")

    def screen(self, policy: Policy, source: str, text: str, *, attacks: str | None = None,
               documents: str | None = None, blocklists: BlocklistMatcher | None = None,
               scope: str | None = None) -> Screening:
        """Check `text` (everything on this side), `attacks` (what the user wrote, for prompt shields) and
        `documents` (tool output and other content the model reads, for indirect attacks). With a `scope` (the
        account the text is from), the classifiers remember the windows they score for it (`window_memo`).

        A detector that fails leaves the content unfiltered by the detectors with Azure's `error` annotation,
        as Azure answers when its filters cannot run, rather than failing the request; blocklists still apply."""
        redacted: str | None = None
        language = _language(text)
        SCREENED.labels(source, language or "und").inc()
        try:
            results, reasons, redacted = self._detect(policy, source, text, attacks, documents, scope, language)
        except Exception:
            log.exception("a content filter failed; the content goes unfiltered by the detectors")
            results = {"error": {"code": "content_filter_error", "message": "The contents are not filtered"}}
            reasons = []
        hits: list[tuple[str, bool]] = []
        if blocklists is not None:
            named = set(blocklists.match(text))
            hits = [(rule.name, rule.blocking) for rule in policy.blocklists(source) if rule.name in named]
        return Screening(results=results, blocklists=hits, reasons=reasons, redacted=redacted, language=language)

    def _detect(self, policy: Policy, source: str, text: str, attacks: str | None, documents: str | None,
                scope: str | None, language: str | None,
                ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]], str | None]:
        rules = policy.rules(source)
        results: dict[str, dict[str, Any]] = {}
        reasons: list[tuple[str, str]] = []

        def detected(key: str, found: bool, extra: dict[str, Any] | None = None) -> None:
            rule = rules[key]
            fires = rule.fires(detected=found)
            results[key] = {"detected": found, "filtered": fires and rule.blocking, **(extra or {})}
            if fires and rule.blocking:
                reasons.append((key, "detected"))

        jailbroken: bool | None = None
        if any(key in rules for key in HARM):
            if "jailbreak" in rules and attacks == text:
                # one prompt that is all the user's own words (the usual case): both from one scoring pass
                severities, jailbroken = self._get("classifiers").analyze(text, scope)
            else:
                severities = self._get("classifiers").harm([text], scope)[0]
            for key in HARM:
                if key in rules:
                    rule = rules[key]
                    fires = rule.fires(severity=severities[key])
                    results[key] = {"filtered": fires and rule.blocking, "severity": severities[key]}
                    if fires and rule.blocking:
                        reasons.append((key, severities[key]))
        if "jailbreak" in rules:
            if jailbroken is None:
                jailbroken = bool(attacks) and self._get("classifiers").jailbreak([attacks], scope)[0]
            detected("jailbreak", jailbroken)
        if "indirect_attack" in rules:
            detected("indirect_attack",
                     bool(documents) and self._get("classifiers").indirect_attack([documents], scope)[0])
        if "profanity" in rules:
            detected("profanity", self._get("profanity").detect([text])[0])
        if "protected_material_text" in rules:
            detected("protected_material_text", self._get("protected").check_text(text) is not None)
        if "protected_material_code" in rules:
            match = self._get("protected").check_code(text)
            detected("protected_material_code", match is not None,
                     {"citation": match.citation} if match is not None else None)
        redacted = None
        if PII in rules:
            detector = self._get("pii")
            entities = detector.find(text, language=language)
            found = [{"length": e.end - e.start, "offset": e.start, "type": e.type} for e in entities]
            detected(PII, bool(entities), {"entities": found})
            if entities and rules[PII].redact:
                redacted = detector.redact(text, entities)
                results[PII]["redacted"] = True
        return dict(sorted(results.items())), reasons, redacted
