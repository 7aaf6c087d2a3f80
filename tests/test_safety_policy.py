"""RAI policies resolved for the data plane, and annotations shaped as Azure's API versions expect them."""

from __future__ import annotations

from azurine.safety.evaluation import Prediction, evaluate
from azurine.safety.policy import blocklists_as_array, resolve
from azurine.safety.screen import Screening


def test_the_default_policy_blocks_harm_from_medium_and_shields_the_prompt() -> None:
    policy = resolve("Microsoft.DefaultV2")
    assert set(policy.prompt) == {"hate", "sexual", "violence", "self_harm", "jailbreak"}
    assert set(policy.completion) == {"hate", "sexual", "violence", "self_harm", "protected_material_text",
                                      "protected_material_code"}
    hate = policy.prompt["hate"]
    assert hate.blocking and not hate.fires(severity="low") and hate.fires(severity="medium")
    assert policy.prompt["jailbreak"].fires(detected=True) and not policy.prompt["jailbreak"].fires(detected=False)
    assert policy.mode == "Default" and not policy.asynchronous


def test_a_custom_policy_overrides_its_base_filter_by_filter() -> None:
    policy = resolve("strict", {
        "basePolicyName": "Microsoft.DefaultV2", "mode": "Asynchronous_filter",
        "contentFilters": [
            {"name": "Hate", "source": "Prompt", "enabled": True, "blocking": True, "severityThreshold": "Low"},
            {"name": "Violence", "source": "Completion", "enabled": True, "blocking": False,
             "severityThreshold": "High"},
            {"name": "Jailbreak", "source": "Prompt", "enabled": False, "blocking": True},
            {"name": "Profanity", "source": "Prompt", "enabled": True, "blocking": True},
        ],
        "customBlocklists": [{"blocklistName": "words", "blocking": True, "source": "Completion"}],
    })
    assert policy.asynchronous
    assert policy.prompt["hate"].fires(severity="low")
    assert not policy.completion["violence"].blocking and not policy.completion["violence"].fires(severity="medium")
    assert "jailbreak" not in policy.prompt and "profanity" in policy.prompt
    assert policy.prompt["sexual"].fires(severity="medium")  # untouched: the base policy's setting
    assert [r.name for r in policy.completion_blocklists] == ["words"] and not policy.prompt_blocklists


def test_blocklists_are_an_object_from_2024_10_01_preview_and_an_array_before() -> None:
    screening = Screening(results={"hate": {"filtered": False, "severity": "safe"}},
                          blocklists=[("words", True)])
    assert screening.filtered
    assert screening.annotations(True)["custom_blocklists"] == {"details": [{"filtered": True, "id": "words"}],
                                                                "filtered": True}
    assert screening.annotations(True, legacy_blocklists=True)["custom_blocklists"] == [
        {"filtered": True, "id": "words"}]
    assert "custom_blocklists" not in screening.annotations(False)
    assert blocklists_as_array("2024-06-01") and blocklists_as_array("2024-09-01-preview")
    assert not blocklists_as_array("2024-10-01-preview") and not blocklists_as_array("2024-10-21")
    assert not blocklists_as_array("v1") and not blocklists_as_array("preview")


def test_evaluation_counts_precision_recall_and_benign_false_positives() -> None:
    rows = [
        {"text": "a", "labels": {"hate": "high", "sexual": "safe", "violence": "safe", "self_harm": "safe"}},
        {"text": "b", "labels": {"hate": "low", "sexual": "safe", "violence": "safe", "self_harm": "safe"}},
        {"text": "c", "group": "code", "labels": {"hate": "safe", "sexual": "safe", "violence": "safe",
                                                  "self_harm": "safe", "jailbreak": False}},
        {"text": "d", "labels": {"jailbreak": True}},
    ]
    guesses = {"a": "medium", "b": "medium", "c": "safe", "d": "safe"}

    def predict(batch: list[dict]) -> list[Prediction]:
        return [Prediction({"hate": guesses[r["text"]], "sexual": "safe", "violence": "safe", "self_harm": "safe"},
                           {"jailbreak": r["text"] == "d", "indirect_attack": False}) for r in batch]

    report = evaluate(rows, predict, "medium")
    hate = report.categories["hate"]
    assert (hate.tp, hate.fp, hate.fn, hate.tn) == (1, 1, 0, 1)
    assert hate.precision == 0.5 and hate.recall == 1.0 and abs(hate.f1 - 2 / 3) < 1e-9
    assert report.confusion["hate"]["low"]["medium"] == 1
    assert report.categories["jailbreak"].f1 == 1.0
    assert report.false_positive_rate == 0.0 and report.benign.tn == 1
