"""The language of a screened text: told for Azure's eight filter languages, offline, and never guessed from
nothing."""

from __future__ import annotations

import socket

import pytest

from azurine.safety import language as language_module
from azurine.safety.language import FILTER_LANGUAGES, detect_language

PROMPTS = {
    "en": "Could you summarise the attached meeting notes in three bullet points?",
    "de": "Kannst du mir erklären, wie eine Hashtabelle intern funktioniert?",
    "ja": "Pythonで辞書を値でソートする方法を教えてください。",
    "es": "Escribe un correo para pedir una reunión con el equipo de ventas el jueves.",
    "fr": "Quelle est la différence entre une liste et un tuple en Python ?",
    "it": "Come posso preparare un buon sugo al pomodoro in poco tempo?",
    "pt": "Pode me explicar a diferença entre juros simples e compostos?",
    "zh": "请帮我写一封邮件，提醒团队明天上午十点开会。",
}


@pytest.mark.parametrize("language", FILTER_LANGUAGES)
def test_each_filter_language_is_told(language: str) -> None:
    assert detect_language(PROMPTS[language]) == language


def test_text_without_letters_has_no_language() -> None:
    assert detect_language("") is None
    assert detect_language("  12345 -- 67 ") is None


def test_detection_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("language detection tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(language_module, "_detector", None)  # loaded afresh, under the patch
    assert detect_language("Bonjour, comment allez-vous aujourd'hui ?") == "fr"
