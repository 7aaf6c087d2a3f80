"""Content-filter detectors: profanity, PII, protected material and custom blocklists, all local and offline."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from azurine.safety.blocklists import Blocklist, BlocklistItem, BlocklistMatcher
from azurine.safety.pii import PiiDetector, PiiEntity
from azurine.safety.profanity import ProfanityDetector
from azurine.safety.protected_material import PACKAGED_CORPUS, ProtectedMaterialIndex

ORDINARY_PROMPTS = [
    "How do I kill a zombie process in Linux?",
    "Write a bash script that kills all child processes on exit.",
    "Please kill the dev server on port 8080 and restart it.",
    "Why does my transaction abort when two workers update the same row?",
    "Execute the migration and then abort if any test fails.",
    "Kill the parent process, then execute the cleanup hook, then abort the job.",
    "The daemon hangs; should I send SIGKILL or SIGTERM first?",
    "How do I terminate a thread safely in Java?",
    "Why did my pod die with OOMKilled?",
    "How do I dump a PostgreSQL database to a file?",
    "What is a master and slave replication setup in MySQL?",
    "Refactor this function so it does not blow up on empty input.",
    "Fix this Python error: TypeError: 'NoneType' object is not subscriptable.",
    "What the hell is going on with this stack trace?",
    "Explain penetration testing to a new security engineer.",
    "What are the symptoms of a bacterial infection of the bladder?",
    "How is breast cancer screened with mammography?",
    "The patient presented with rectal bleeding and abdominal pain.",
    "What dose of ibuprofen is safe for an adult with a fever?",
    "How do STDs spread through sex?",
    "Who won the Battle of Hastings and why did Harold die?",
    "Summarize the execution of Louis XVI during the French Revolution.",
    "How many people died in the bombing of Dresden?",
    "Explain the Holocaust to a high-school history class.",
    "Who killed Julius Caesar, and what happened to the assassins?",
]

WORK_TEXT = (
    "The deployment pipeline builds the container image, runs the unit tests, pushes the artifact to the "
    "registry and then rolls out the new version to the staging cluster after a manual approval. "
)


@pytest.fixture(scope="module")
def profanity() -> ProfanityDetector:
    return ProfanityDetector.load()


@pytest.fixture(scope="module")
def pii() -> PiiDetector:
    return PiiDetector.load()


@pytest.fixture(scope="module")
def corpus() -> ProtectedMaterialIndex:
    return ProtectedMaterialIndex.from_directory(PACKAGED_CORPUS)


# Profanity


def test_profanity_flags_crude_insults(profanity) -> None:
    insults = ["You are a stupid fucking idiot.", "Shut up, you worthless piece of shit."]
    assert profanity.detect(insults) == [True, True]


def test_profanity_leaves_ordinary_work_prompts_alone(profanity) -> None:
    flagged = [p for p, hit in zip(ORDINARY_PROMPTS, profanity.detect(ORDINARY_PROMPTS), strict=True) if hit]
    assert flagged == []


def test_profanity_finds_an_insult_inside_a_long_completion(profanity) -> None:
    completion = WORK_TEXT * 10 + "Honestly, you are a stupid fucking idiot. " + WORK_TEXT * 10
    assert profanity.detect([completion, WORK_TEXT * 20]) == [True, False]


def test_profanity_scores_are_probabilities_and_blank_text_scores_zero(profanity) -> None:
    scores = profanity.scores(["", "   ", "fuck you asshole", "Please review my pull request."])
    assert scores[:2] == [0.0, 0.0]
    assert scores[2] > 0.99
    assert 0.0 <= scores[3] < 0.5


# PII


def test_pii_finds_email_phone_card_and_person_with_spans(pii) -> None:
    text = "Please email Jane Doe at jane.doe@example.org or call 415-555-0132; her Visa is 4111 1111 1111 1111."
    found = {(e.type, text[e.start:e.end]) for e in pii.find(text)}
    assert found == {
        ("PERSON", "Jane Doe"),
        ("EMAIL_ADDRESS", "jane.doe@example.org"),
        ("PHONE_NUMBER", "415-555-0132"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
    }
    email = next(e for e in pii.find(text) if e.type == "EMAIL_ADDRESS")
    assert (email.start, email.end) == (text.index("jane.doe"), text.index(" or call"))
    assert 0.0 < email.score <= 1.0


def test_pii_redact_replaces_each_span_with_its_type(pii) -> None:
    text = "Contact Maria Garcia at maria@contoso.com, SSN 536-90-4399, from 10.20.30.40."
    assert pii.redact(text) == "Contact [PERSON] at [EMAIL_ADDRESS], SSN [US_SSN], from [IP_ADDRESS]."


def test_pii_redact_uses_given_entities(pii) -> None:
    text = "write to bob@example.com"
    only = [PiiEntity("EMAIL_ADDRESS", 9, 24, 1.0)]
    assert pii.redact(text, only) == "write to [EMAIL_ADDRESS]"
    assert pii.redact(text, []) == text


def test_pii_ignores_ordinary_numbers_and_code(pii) -> None:
    text = "The loop runs 123456789 times on port 8080 with Python 3.11.7; see commit 5010fcbd3 in main.py."
    assert pii.find(text) == []
    assert pii.find("   ") == []


def test_pii_is_loaded_once_for_concurrent_callers(pii) -> None:
    seen: list[PiiDetector] = []
    threads = [threading.Thread(target=lambda: seen.append(PiiDetector.load())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(d is pii for d in seen)


# Protected material


def _work_text(name: str) -> str:
    return (PACKAGED_CORPUS / "text" / name).read_text(encoding="utf-8")


def test_protected_text_detects_a_verbatim_passage_inside_other_text(corpus) -> None:
    passage = _work_text("melville_moby_dick.txt")
    completion = "Here is the opening you asked for:\n\n" + passage + "\n\nI hope this helps with your essay."
    match = corpus.check_text(completion)
    assert match is not None
    assert match.work.source == "text/melville_moby_dick.txt"
    assert match.work.license == "Public domain"
    assert match.words >= 150
    assert completion[match.start:match.end].startswith("Call me Ishmael")


def test_protected_text_detects_a_reformatted_passage(corpus) -> None:
    passage = _work_text("dickens_tale_of_two_cities.txt")
    reformatted = re.sub(r"[,;.\-]+", " ", passage).upper().replace("\n", " ")
    reformatted = re.sub(r"(\w+ \w+ \w+ \w+ \w+ \w+ \w+)", r"\1\n", reformatted)
    match = corpus.check_text(WORK_TEXT + reformatted + WORK_TEXT)
    assert match is not None and match.work.source == "text/dickens_tale_of_two_cities.txt"


def test_protected_text_detects_song_lyrics(corpus) -> None:
    lyrics = _work_text("norworth_take_me_out_to_the_ball_game.txt")
    chorus = lyrics[lyrics.index("Take me out"):lyrics.index("Katie Casey saw")]
    match = corpus.check_text("Sing along!\n" + chorus.replace("\n", " / "))
    assert match is not None and "Ball Game" in match.work.title


def test_protected_text_ignores_short_quotes_and_unrelated_text(corpus) -> None:
    assert corpus.check_text("As Dickens put it, it was the best of times, it was the worst of times.") is None
    assert corpus.check_text("Call me Ishmael. Some years ago, never mind how long precisely, I sailed.") is None
    assert corpus.check_text(WORK_TEXT * 20) is None
    assert corpus.check_text("") is None


def test_protected_code_detects_copied_code_with_citation_despite_whitespace(corpus) -> None:
    code = (PACKAGED_CORPUS / "code" / "cpython_bisect.py").read_text(encoding="utf-8")
    squashed = re.sub(r"\n\s*\n", "\n", code).replace("    ", "  ").replace(", ", ",")
    match = corpus.check_code("Sure, here is an implementation:\n\n```python\n" + squashed + "```\n")
    assert match is not None
    url = "https://github.com/python/cpython/blob/v3.11.7/Lib/bisect.py"
    assert match.citation == {"URL": url, "license": "PSF-2.0"}
    assert match.lines >= 8


def test_protected_code_detects_copied_code_with_renamed_identifiers_and_no_comments(corpus) -> None:
    code = (PACKAGED_CORPUS / "code" / "vercel_ms.js").read_text(encoding="utf-8")
    start = code.index("function parse(str)")
    excerpt = re.sub(r"\bstr\b", "input", code[start:start + 1200])
    excerpt = re.sub(r"/\*\*.*?\*/", "", excerpt, flags=re.S)
    match = corpus.check_code(excerpt)
    assert match is not None
    assert match.citation == {"URL": "https://github.com/vercel/ms/blob/2.1.3/index.js", "license": "MIT"}


def test_protected_code_ignores_short_snippets_and_unrelated_code(corpus) -> None:
    code = (PACKAGED_CORPUS / "code" / "cpython_textwrap_dedent.py").read_text(encoding="utf-8")
    assert corpus.check_code("\n".join(code.splitlines()[:6])) is None
    own_source = Path(__file__).read_text(encoding="utf-8")
    assert corpus.check_code(own_source) is None
    assert corpus.check_code(WORK_TEXT * 20) is None


def test_protected_material_check_of_a_1000_word_completion_is_fast(corpus) -> None:
    words = (WORK_TEXT * 40).split()[:1000]
    completion = " ".join(words[:700]) + "\n" + _work_text("austen_pride_and_prejudice.txt")
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        assert corpus.check_text(completion) is not None
        corpus.check_code(completion)
        best = min(best, time.perf_counter() - started)
    assert best < 0.010  # both checks together; each is about 1-2 ms here


def test_protected_material_from_a_custom_directory(tmp_path) -> None:
    (tmp_path / "poems").mkdir()
    poem = " ".join(f"line{i} of the secret verse number {i} sung slowly" for i in range(12))
    (tmp_path / "poems" / "verse.txt").write_text(poem, encoding="utf-8")
    go = """package mix

// Mix folds the values into one checksum, skipping negative ones.
func Mix(values []int, seed int) int {
	total := seed
	for index, value := range values {
		if value < 0 {
			continue // negative values are padding
		}
		total = total*31 + value ^ index
		if total > 1<<20 {
			total %= 1 << 20
		}
	}
	return total
}
"""
    (tmp_path / "mix.go").write_text(go, encoding="utf-8")
    (tmp_path / "mix.go.json").write_text(json.dumps(
        {"title": "mix", "url": "https://example.com/mix.go", "license": "BSD-3-Clause"}), encoding="utf-8")
    (tmp_path / "notes.md").write_text(poem, encoding="utf-8")  # neither text nor code: not indexed
    index = ProtectedMaterialIndex.from_directory(tmp_path)
    assert sorted(w.source for w in index.works) == ["mix.go", "poems/verse.txt"]
    text = index.check_text("intro words here " + poem.upper())
    assert text is not None and text.work.title == "verse.txt" and text.work.url is None
    copied = re.sub(r"//[^\n]*", "", go).replace("\t", "  ").replace("total", "acc").replace(" = ", "=")
    code = index.check_code("```go\n" + copied + "```")
    assert code is not None and code.citation == {"URL": "https://example.com/mix.go", "license": "BSD-3-Clause"}


def test_protected_material_default_corpus_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AZURINE_PROTECTED_CORPUS", raising=False)
    assert len(ProtectedMaterialIndex.default().works) >= 8
    (tmp_path / "only.txt").write_text("just one small work", encoding="utf-8")
    monkeypatch.setenv("AZURINE_PROTECTED_CORPUS", str(tmp_path))
    assert [w.source for w in ProtectedMaterialIndex.default().works] == ["only.txt"]


def test_packaged_corpus_is_small_and_only_free_material(corpus) -> None:
    size = sum(p.stat().st_size for p in PACKAGED_CORPUS.rglob("*") if p.is_file())
    assert size < 100_000
    assert {w.license for w in corpus.works} <= {"Public domain", "PSF-2.0", "MIT"}
    assert all(w.url and w.url.startswith("https://") for w in corpus.works)


# Blocklists


def _list(name: str, *patterns: str, regex: bool = False) -> Blocklist:
    return Blocklist(name, tuple(BlocklistItem(p, regex) for p in patterns))


def test_blocklist_exact_terms_match_whole_words_case_insensitively() -> None:
    matcher = BlocklistMatcher([_list("food", "pizza", "ice cream")])
    assert matcher.match("I love Pizza!") == ["food"]
    assert matcher.match("pizza") == ["food"]
    assert matcher.match("Some ICE\n  CREAM please") == ["food"]
    assert matcher.match("What pizzazz.") == []
    assert matcher.match("deep-dish pizzas") == []
    assert matcher.match("pizza_oven") == []


def test_blocklist_regex_items_match() -> None:
    matcher = BlocklistMatcher([_list("ids", r"\bEMP-\d{4}\b", r"(\w)\1\1", regex=True)])
    assert matcher.match("ticket for emp-1234 is open") == ["ids"]
    assert matcher.match("zzz") == ["ids"]
    assert matcher.match("EMP-12 and abc") == []


def test_blocklist_items_come_from_management_json() -> None:
    items = [BlocklistItem.from_json({"pattern": "secret", "isRegex": False}),
             BlocklistItem.from_json({"pattern": "proj-[a-z]+", "isRegex": True})]
    matcher = BlocklistMatcher([Blocklist("internal", tuple(items))])
    assert matcher.match("about PROJ-falcon") == ["internal"]
    assert matcher.match("the secret plan") == ["internal"]


def test_blocklist_several_lists_report_several_names_in_order() -> None:
    matcher = BlocklistMatcher([_list("food", "pizza"), _list("drink", "cola"), _list("codes", r"x-\d+", regex=True),
                                _list("other", "nothing")])
    assert matcher.match("pizza, COLA and X-42") == ["food", "drink", "codes"]
    assert matcher.match("cola") == ["drink"]


def test_blocklist_catastrophic_regex_does_not_hang() -> None:
    matcher = BlocklistMatcher([_list("evil", r"(a|aa)+$", regex=True), _list("food", "pizza")])
    started = time.perf_counter()
    assert matcher.match("a" * 60 + "! and pizza") == ["food"]
    assert time.perf_counter() - started < 2.0


def test_blocklist_many_terms_match_quickly() -> None:
    terms = [f"term{i}x" for i in range(10_000)]
    matcher = BlocklistMatcher([_list("big", *terms)])
    text = " ".join(WORK_TEXT for _ in range(20)) + " TERM9999X."
    started = time.perf_counter()
    assert matcher.match(text) == ["big"]
    assert time.perf_counter() - started < 0.05


def test_blocklist_rejects_items_beyond_azure_limits_and_invalid_regexes() -> None:
    with pytest.raises(ValueError):
        BlocklistItem("x" * 1001)
    with pytest.raises(ValueError):
        BlocklistItem("   ")
    with pytest.raises(ValueError):
        Blocklist("huge", tuple(BlocklistItem(f"t{i}") for i in range(10_001)))
    with pytest.raises(ValueError):
        BlocklistMatcher([_list("broken", "(unclosed", regex=True)])
