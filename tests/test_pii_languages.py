"""PII in Azure's other content-filter languages: patterns everywhere, PERSON where a spaCy model is installed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from azurine.safety.pii import LANGUAGES, NER_CHUNK_CHARS, OTHER, PiiDetector, _chunks, language_key

CARD = "4111 1111 1111 1111"

# Per language: a natural sentence, and the (type, text) spans it holds. The person's name is listed where the
# language has an NER model; elsewhere the same sentence must yield no PERSON at all.
SENTENCES: dict[str, tuple[str, str, set[tuple[str, str]]]] = {
    "de": ("Hallo, ich bin Anna Schmidt. Schreiben Sie mir an anna.schmidt@example.de oder rufen Sie mich unter "
           "030 12345678 an. Meine IBAN lautet DE89 3704 0044 0532 0130 00 und meine Kreditkarte ist "
           f"{CARD}.", "Anna Schmidt",
           {("EMAIL_ADDRESS", "anna.schmidt@example.de"), ("PHONE_NUMBER", "030 12345678"),
            ("IBAN_CODE", "DE89 3704 0044 0532 0130 00"), ("CREDIT_CARD", CARD)}),
    "fr": ("Bonjour, je suis Marie Dubois. Écrivez-moi à marie.dubois@exemple.fr ou appelez-moi au "
           "01 23 45 67 89. Mon IBAN est FR14 2004 1010 0505 0001 3M02 606 et ma carte bancaire est "
           f"{CARD}.", "Marie Dubois",
           {("EMAIL_ADDRESS", "marie.dubois@exemple.fr"), ("PHONE_NUMBER", "01 23 45 67 89"),
            ("IBAN_CODE", "FR14 2004 1010 0505 0001 3M02 606"), ("CREDIT_CARD", CARD)}),
    "es": ("Hola, soy Carlos García. Escríbeme a carlos.garcia@ejemplo.es o llámame al 612 345 678. Mi IBAN es "
           f"ES91 2100 0418 4502 0005 1332 y mi tarjeta de crédito es {CARD}.", "Carlos García",
           {("EMAIL_ADDRESS", "carlos.garcia@ejemplo.es"), ("PHONE_NUMBER", "612 345 678"),
            ("IBAN_CODE", "ES91 2100 0418 4502 0005 1332"), ("CREDIT_CARD", CARD)}),
    "it": ("Ciao, sono Giulia Rossi. Scrivimi a giulia.rossi@esempio.it o chiamami al 06 1234 5678. Il mio IBAN è "
           f"IT60 X054 2811 1010 0000 0123 456 e la mia carta di credito è {CARD}.", "Giulia Rossi",
           {("EMAIL_ADDRESS", "giulia.rossi@esempio.it"), ("PHONE_NUMBER", "06 1234 5678"),
            ("IBAN_CODE", "IT60 X054 2811 1010 0000 0123 456"), ("CREDIT_CARD", CARD)}),
    "pt": ("Olá, sou João Silva. Escreva-me para joao.silva@exemplo.pt ou ligue para 912 345 678. O meu IBAN é "
           f"PT50 0002 0123 1234 5678 9015 4 e o meu cartão de crédito é {CARD}.", "João Silva",
           {("EMAIL_ADDRESS", "joao.silva@exemplo.pt"), ("PHONE_NUMBER", "912 345 678"),
            ("IBAN_CODE", "PT50 0002 0123 1234 5678 9015 4"), ("CREDIT_CARD", CARD)}),
    # no spaces around the entities, as Japanese and Chinese are written
    "ja": ("こんにちは、山田太郎です。メールはtaro.yamada@example.jpに、電話は03-1234-5678にお願いします。"
           "振込先のIBANはDE89370400440532013000、クレジットカードは4111111111111111です。", "山田太郎",
           {("EMAIL_ADDRESS", "taro.yamada@example.jp"), ("PHONE_NUMBER", "03-1234-5678"),
            ("IBAN_CODE", "DE89370400440532013000"), ("CREDIT_CARD", "4111111111111111")}),
    "zh": ("你好，我是张伟。请发邮件到zhang.wei@example.cn或者打电话13800138000。我的IBAN是"
           "DE89370400440532013000，信用卡号是4111111111111111。", "张伟",
           {("EMAIL_ADDRESS", "zhang.wei@example.cn"), ("PHONE_NUMBER", "13800138000"),
            ("IBAN_CODE", "DE89370400440532013000"), ("CREDIT_CARD", "4111111111111111")}),
}

# Code and numbers that are no one's data, per language.
ORDINARY = {
    "de": "Die Schleife läuft 123456789 Mal auf Port 8080 mit Python 3.11.7; siehe Commit 5010fcbd3 in main.py. "
          "Bestellung 2024-001234, Rechnung Nr. 4711, PLZ 10115, Build 20240917.",
    # (no "2024-001234" here: French reads Canada's numbers, and that is one there, as it is in English)
    "fr": "La boucle tourne 123456789 fois sur le port 8080 avec Python 3.11.7 ; voir le commit 5010fcbd3 dans "
          "main.py. Commande 2024/17, facture 4711.",
    "es": "El bucle se ejecuta 123456789 veces en el puerto 8080 con Python 3.11.7; véase el commit 5010fcbd3 "
          "en main.py. Pedido 2024-001234, factura 4711.",
    "it": "Il ciclo gira 123456789 volte sulla porta 8080 con Python 3.11.7; vedi il commit 5010fcbd3 in main.py. "
          "Ordine 2024-001234, fattura 4711.",
    "pt": "O ciclo corre 123456789 vezes na porta 8080 com Python 3.11.7; veja o commit 5010fcbd3 em main.py. "
          "Pedido 2024-001234, fatura 4711.",
    "ja": "ループはポート8080でPython 3.11.7を使って123456789回実行されます。main.pyのコミット5010fcbd3を参照。",
    "zh": "循环在端口8080上用Python 3.11.7运行123456789次；请参阅main.py中的提交5010fcbd3。",
}


@pytest.fixture(scope="module")
def pii() -> PiiDetector:
    return PiiDetector.load()


def _spans(pii: PiiDetector, text: str, language: str | None) -> set[tuple[str, str]]:
    return {(e.type, text[e.start:e.end]) for e in pii.find(text, language=language)}


def test_every_azure_language_has_a_profile() -> None:
    assert set(SENTENCES) == set(LANGUAGES) == {"de", "fr", "es", "it", "pt", "ja", "zh"}


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_email_phone_iban_card_and_person_where_a_model_exists(pii, language) -> None:
    text, person, expected = SENTENCES[language]
    model = LANGUAGES[language].ner_model
    if model is not None:
        import spacy  # here, not at collection: every test worker would pay its 2 s import

        assert spacy.util.is_package(model), f"{model} is a dependency in pyproject.toml but is not installed"
        expected = expected | {("PERSON", person)}
    assert pii.has_ner(language) is (model is not None)
    assert _spans(pii, text, language) == expected


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_redaction_in_each_language(pii, language) -> None:
    text, person, expected = SENTENCES[language]
    redacted = pii.redact(text, language=language)
    for entity_type, span in expected:
        assert span not in redacted and f"[{entity_type}]" in redacted
    assert (person in redacted) is (LANGUAGES[language].ner_model is None)


@pytest.mark.parametrize("language", sorted(ORDINARY))
def test_ordinary_numbers_and_code_are_not_pii_in_any_language(pii, language) -> None:
    assert pii.find(ORDINARY[language], language=language) == []
    assert pii.find(" \n ", language=language) == []


@pytest.mark.parametrize(("language", "text", "expected"), [
    ("de", "Meine Steuer-ID ist 86095742719, bitte nicht weitergeben.", {("DE_TAX_ID", "86095742719")}),
    ("es", "Mi DNI es 12345678Z y el NIE de mi esposa es X1234567L.",
     {("ES_NIF", "12345678Z"), ("ES_NIE", "X1234567L")}),
    ("it", "Il mio codice fiscale è RSSMRA85T10A562S.", {("IT_FISCAL_CODE", "RSSMRA85T10A562S")}),
])
def test_national_ids_are_found_when_their_check_digit_holds(pii, language, text, expected) -> None:
    assert _spans(pii, text, language) == expected
    wrong = text
    for _, span in expected:  # the same numbers with the last character changed fail their check
        wrong = wrong.replace(span, span[:-1] + ("3" if span[-1].isdigit() and span[-1] != "3" else "A"))
    assert pii.find(wrong, language=language) == []


def test_fullwidth_digits_in_japanese_are_read_and_spans_point_into_the_original(pii) -> None:
    text = "お電話は０３－１２３４－５６７８、メールはｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐまで。"
    assert _spans(pii, text, "ja") == {("PHONE_NUMBER", "０３－１２３４－５６７８"),
                                       ("EMAIL_ADDRESS", "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ")}


def test_language_codes_are_normalised_and_unknown_languages_get_the_patterns(pii) -> None:
    assert [language_key(code) for code in (None, "", "en", "EN", "en-GB", "pt-BR", "zh_Hant", "ja", "ru")] == [
        "en", "en", "en", "en", "en", "pt", "zh", "ja", OTHER]
    text = "Привет, я Иван Петров. Пишите на ivan@example.ru или звоните +7 912 345-67-89, карта 4111 1111 1111 1111."
    assert _spans(pii, text, "ru") == {("EMAIL_ADDRESS", "ivan@example.ru"), ("PHONE_NUMBER", "+7 912 345-67-89"),
                                       ("CREDIT_CARD", CARD)}
    assert pii.has_ner("ru") is False
    assert _spans(pii, SENTENCES["de"][0], "pt-BR") >= {("EMAIL_ADDRESS", "anna.schmidt@example.de")}


def test_english_is_unchanged_by_the_language_parameter(pii) -> None:
    text = "Contact Maria Garcia at maria@contoso.com, SSN 536-90-4399, from 10.20.30.40."
    assert pii.find(text) == pii.find(text, language="en") == pii.find(text, language=None)
    assert pii.redact(text, language="en") == pii.redact(text) == (
        "Contact [PERSON] at [EMAIL_ADDRESS], SSN [US_SSN], from [IP_ADDRESS].")
    assert "US_SSN" not in {e.type for e in pii.find(text, language="de")}  # a US id is English's alone


def test_ner_reads_long_text_in_bounded_pieces(pii) -> None:
    filler = "La réunion a commencé à l'heure et chacun a présenté son travail de la semaine. "
    text = filler * (2 * NER_CHUNK_CHARS // len(filler) + 1) + "Ensuite, Marie Dubois a conclu la séance."
    people = [e for e in pii.find(text, language="fr") if e.type == "PERSON"]
    assert [text[e.start:e.end] for e in people] == ["Marie Dubois"]
    cjk = "山田太郎です。" * 5000
    pieces = list(_chunks(cjk))
    assert "".join(piece for _, piece in pieces) == cjk and len(pieces) > 1
    assert all(len(piece.encode()) <= 49149 and cjk.startswith(piece, offset) for offset, piece in pieces)


def test_each_language_is_built_once_for_concurrent_callers(pii) -> None:
    fresh = PiiDetector(pii._analyzer, pii._anonymizer)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(fresh._analyzers("de"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6 and all(analyzers is seen[0] for analyzers in seen)


def test_loads_every_language_without_network(monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("PII detection tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    fresh = PiiDetector._build()  # not the shared instance: its models are loaded anew here
    fresh.warm(SENTENCES)
    for language, (text, _, expected) in SENTENCES.items():
        assert _spans(fresh, text, language) >= expected
    assert fresh.find("Write to jane.doe@example.org") != []


def test_the_detector_loads_without_pytorch_or_transformers() -> None:
    """Presidio would import both (6.4 s of the 7.7 s of CPU its import took); nothing Azurine asks of it needs
    them, and once it is loaded they import as usual."""
    check = ("import importlib.util, json, sys; from azurine.safety.pii import PiiDetector; "
             "found = PiiDetector.load().find('Mail jane.doe@example.com or call Jane Doe.'); "
             "print(json.dumps([sorted({f.type for f in found}), "
             "[m in sys.modules for m in ('torch', 'transformers')], importlib.util.find_spec('torch') is not None]))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [["EMAIL_ADDRESS", "PERSON"], [False, False], True]
