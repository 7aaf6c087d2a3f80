"""The content filter of one request: its prompts screened against the deployment's RAI policy, their
annotations, and the check of each answer, streamed through `safety.streaming` in the policy's mode. Every blocking
hit is counted and recorded (`FilterLog`), and each answer's screening is told once, when the answer ends, to whoever
counts the filter's volumes (`ContentGuard.answered`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.concurrency import run_in_threadpool

from azurine.engines.base import Event, Finished
from azurine.safety.blocklists import BlocklistMatcher
from azurine.safety.policy import PII, Policy, blocklists_as_array
from azurine.safety.screen import Detectors, Screening
from azurine.safety.streaming import WINDOW_CHARS, AnswerCheck, guarded
from azurine.storage.content import ContentSealer, seal_text
from azurine.storage.state import AccountRecord, FilterEventRow, StateStore
from azurine.telemetry.metrics import CONTENT_FILTERED

log = logging.getLogger("azurine")
RECORD_CONTENT_TAG = "azurine-record-filtered-content"
Answered = Callable[[Screening], None]  # told the screening of a whole answer


@dataclass(frozen=True)
class PromptText:
    text: str  # everything the model reads on this prompt
    attacks: str = ""  # what the user wrote: for prompt shields
    documents: str = ""  # tool output and documents: for indirect attacks
    param: str = "messages"  # where the text came from, for errors about it


def _texts(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(getattr(part, "text", None) or "" for part in content)


def chat_prompt_text(messages: list[Any]) -> PromptText:
    everything = "\n".join(_texts(m.content) for m in messages)
    attacks = "\n".join(_texts(m.content) for m in messages if m.role == "user")
    documents = "\n".join(_texts(m.content) for m in messages if m.role in ("tool", "function"))
    return PromptText(everything, attacks, documents)


class PromptBlocked(Exception):
    """A prompt tripped a blocking filter; `annotations` say which, as Azure's `content_filter_result`, and
    `screenings` hold what was found on every prompt of the request."""

    def __init__(self, annotations: dict[str, Any], screenings: list[Screening]) -> None:
        super().__init__("the prompt was filtered")
        self.annotations = annotations
        self.screenings = screenings


@dataclass(frozen=True)
class FilterLog:
    """Where blocking hits are kept: the account's filter events, content sealed as all stored content is."""

    store: StateStore
    sealer: ContentSealer

    async def record(self, account: AccountRecord, deployment: str, source: str, screening: Screening,
                     content: str) -> None:
        """Count and keep every blocking hit; the content only where the account opted in."""
        keep = content if account.tags.get(RECORD_CONTENT_TAG, "").lower() == "true" else None
        events = [FilterEventRow(time.time(), account.id, deployment, source, category, severity, keep)
                  for category, severity in screening.reasons]
        events += [FilterEventRow(time.time(), account.id, deployment, source, f"blocklist:{name}", "detected", keep)
                   for name, filtered in screening.blocklists if filtered]
        for event in events:
            CONTENT_FILTERED.labels(deployment, source, event.category, screening.language or "und").inc()

        def store() -> None:
            sealed = seal_text(self.sealer, account.id, keep) if keep is not None else None
            self.store.add_filter_events([replace(event, content=sealed) for event in events])

        try:
            await run_in_threadpool(store)
        except Exception:  # the answer must not fail because its audit record could not be written
            log.exception("could not record %d content filter events", len(events))


@dataclass
class ContentGuard:
    """The content filter of one request: its prompts' annotations, and the check of each answer."""

    detectors: Detectors
    filter_log: FilterLog
    account: AccountRecord
    policy: Policy
    deployment: str
    api_version: str
    prompt_screenings: list[Screening]
    completion_blocklists: BlocklistMatcher | None
    window_chars: int = WINDOW_CHARS
    answered: Answered | None = None  # told each answer's screening once, when the answer has ended
    _legacy: bool = field(init=False)

    def __post_init__(self) -> None:
        self._legacy = blocklists_as_array(self.api_version)

    def _annotations(self, screening: Screening, source: str) -> dict[str, Any]:
        return screening.annotations(bool(self.policy.blocklists(source)), self._legacy)

    def prompt_filter_results(self) -> list[dict[str, Any]]:
        return [{"content_filter_results": self._annotations(s, "Prompt"), "prompt_index": i}
                for i, s in enumerate(self.prompt_screenings)]

    @property
    def checks_answers(self) -> bool:
        return bool(self.policy.completion or self.policy.completion_blocklists)

    @property
    def redacts(self) -> bool:
        rule = self.policy.completion.get(PII)
        return rule is not None and rule.redact

    async def _screen(self, text: str) -> Screening:
        screening = await run_in_threadpool(self.detectors.screen, self.policy, "Completion", text,
                                            blocklists=self.completion_blocklists, scope=self.account.id)
        if screening.filtered:
            await self.filter_log.record(self.account, self.deployment, "completion", screening, text)
        return screening

    def _check(self, screening: Screening) -> AnswerCheck:
        return AnswerCheck(self._annotations(screening, "Completion"), screening.filtered, screening.redacted)

    async def check_answer(self, text: str) -> AnswerCheck:
        """The annotations of a whole answer, whether it is filtered, and its redacted text if any."""
        if not self.checks_answers:
            return AnswerCheck({}, False)
        screening = await self._screen(text)
        if self.answered is not None:
            self.answered(screening)
        return self._check(screening)

    def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[Any]:
        """An answer's events with checks between them, as the policy's mode wants them."""
        if not self.checks_answers:
            return events
        answer = _StreamedAnswer(self.answered)

        async def check(text: str) -> AnswerCheck:
            screening = await self._screen(text)
            answer.checked(screening)
            return self._check(screening)

        return answer.through(guarded(events, check, asynchronous=self.policy.asynchronous, redacts=self.redacts,
                                      window_chars=self.window_chars))


@dataclass
class _StreamedAnswer:
    """The screening of one answer checked as it streams. Each check reads the answer so far, so the last one is the
    whole answer's; it is told once, when the answer ends: finished, stopped by a blocking hit, or left unread."""

    answered: Answered | None
    last: Screening | None = None
    told: bool = False

    def checked(self, screening: Screening) -> None:
        self.last = screening
        if screening.filtered:  # nothing of the answer is checked after a blocking hit
            self.end()

    def end(self) -> None:
        if self.last is not None and not self.told and self.answered is not None:
            self.told = True
            self.answered(self.last)

    async def through(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            # closed with this one, in this task: a reader that stops at a blocking hit leaves both suspended
            async with aclosing(items) as checked:  # type: ignore[type-var]
                async for item in checked:
                    if isinstance(item, Finished):  # its text was checked before the end came through
                        self.end()
                    yield item
        finally:
            self.end()


async def screen_prompts(detectors: Detectors, filter_log: FilterLog, account: AccountRecord, policy: Policy,
                         deployment: str, api_version: str, prompts: list[PromptText],
                         prompt_lists: BlocklistMatcher | None,
                         completion_lists: BlocklistMatcher | None, answered: Answered | None = None) -> ContentGuard:
    """Screen the prompts against `policy`, together; raise `PromptBlocked` if a blocking filter fires, else the
    guard that checks the answers (and tells `answered` each one's screening)."""
    screenings = await asyncio.gather(*(
        run_in_threadpool(detectors.screen, policy, "Prompt", p.text, attacks=p.attacks, documents=p.documents,
                          blocklists=prompt_lists, scope=account.id)
        for p in prompts))
    guard = ContentGuard(detectors, filter_log, account, policy, deployment, api_version, list(screenings),
                         completion_lists, answered=answered)
    for prompt, screening in zip(prompts, screenings, strict=True):
        if screening.filtered:
            await filter_log.record(account, deployment, "prompt", screening, prompt.text)
            raise PromptBlocked(guard._annotations(screening, "Prompt"), guard.prompt_screenings)
    return guard
