"""Each text to the classifiers of its language: English to the English artifact, every other language (and text
whose language cannot be told, which the multilingual one, trained on English too, judges as well) to the
multilingual one.

The multilingual artifact (artifacts/multilingual/, trained on English and Azure's seven other filter languages
with an e5 second stage) judges German, Spanish, French, Italian, Japanese, Portuguese and Chinese far better than
the English one, which refused most everyday prompts in them as jailbreaks. On English it is still worse than the
English artifact in two categories (hate F1 0.861 and self-harm 0.817 against 0.868 and 0.870 on tests/data/safety,
though violence is 0.844 against 0.824), so English keeps its own until one model does both.
"""

from __future__ import annotations

from pathlib import Path

from azurine.safety.classifiers import ARTIFACT_DIR, SafetyClassifiers
from azurine.safety.language import detect_language

MULTILINGUAL_DIR = ARTIFACT_DIR / "multilingual"
ENGLISH = {"en"}


class LanguageRoutedClassifiers:
    """SafetyClassifiers' judging methods, each text answered by the classifiers of its detected language."""

    def __init__(self, english: SafetyClassifiers, multilingual: SafetyClassifiers) -> None:
        self.english = english
        self.multilingual = multilingual

    @classmethod
    def load(cls, models_dir: Path | None = None) -> LanguageRoutedClassifiers:
        return cls(SafetyClassifiers.load(models_dir),
                   SafetyClassifiers.load(models_dir, artifact_dir=MULTILINGUAL_DIR))

    def for_text(self, text: str) -> SafetyClassifiers:
        return self.english if detect_language(text) in ENGLISH else self.multilingual

    @property
    def uses_contextual_model(self) -> bool:
        return self.english.uses_contextual_model

    def harm_scores(self, texts: list[str]) -> list[dict[str, list[float]]]:
        return [self.for_text(text).harm_scores([text])[0] for text in texts]

    def harm(self, texts: list[str], scope: str | None = None) -> list[dict[str, str]]:
        return [self.for_text(text).harm([text], scope)[0] for text in texts]

    def jailbreak(self, texts: list[str], scope: str | None = None) -> list[bool]:
        return [self.for_text(text).jailbreak([text], scope)[0] for text in texts]

    def indirect_attack(self, texts: list[str], scope: str | None = None) -> list[bool]:
        return [self.for_text(text).indirect_attack([text], scope)[0] for text in texts]

    def analyze(self, text: str, scope: str | None = None) -> tuple[dict[str, str], bool]:
        return self.for_text(text).analyze(text, scope)
