"""The content-filter stage of the pipeline: the deployment's RAI policy on the prompt, then on each answer.

A prompt that trips a blocking filter is refused with Azure's 400 `content_filter`. An answer is checked
as it is produced: in the policy's Default mode text is held back in windows and released only once
checked, each window with its annotations; in Asynchronous_filter mode text flows at once and annotation
chunks follow. A filtered answer ends with `finish_reason: content_filter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from azurine.api.context import Services, Target, services
from azurine.api.errors import AzureError
from azurine.engines.base import ContextLengthExceeded, Delta, Event, Finished
from azurine.safety.blocklists import BlocklistItem, BlocklistMatcher, BlocklistSet
from azurine.safety.policy import BUILT_IN_PROPERTIES, PII, Policy, blocklists_as_array, resolve
from azurine.safety.screen import Screening
from azurine.storage.content import seal_text
from azurine.storage.state import AccountRecord, ChildRecord, FilterEventRow
from azurine.telemetry.metrics import CONTENT_FILTERED

log = logging.getLogger("azurine")
# characters of answer held back per check in Default mode; the first token is checked on its own so
# that holding back costs the time to first token one check, not a window
WINDOW_CHARS = 80
BLOCKED_PROMPT = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read our "
    "documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


@dataclass(frozen=True)
class PromptText:
    text: str  # everything the model reads on this prompt
    attacks: str = ""  # what the user wrote: for prompt shields
    documents: str = ""  # tool output and documents: for indirect attacks
    param: str = "messages"  # where the text came from, for errors about it


@dataclass(frozen=True)
class AnswerCheck:
    annotations: dict[str, Any]
    filtered: bool
    redacted: str | None = None  # the answer as released, where the policy redacts PII and some was found

    def shown(self, text: str) -> str:
        return text if self.redacted is None else self.redacted


@dataclass
class Checked:
    """Answer text released after its check (Default mode)."""

    delta: Delta
    annotations: dict[str, Any]


@dataclass
class Annotated:
    """Annotations for answer text already sent (Asynchronous_filter mode)."""

    annotations: dict[str, Any]
    check_offset: int
    start_offset: int
    end_offset: int
    filtered: bool = False


@dataclass
class Filtered:
    """The answer stops here: the text since the last release tripped a blocking filter (Default mode)."""

    annotations: dict[str, Any]


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


@dataclass
class ContentGuard:
    """The content filter of one request: its prompts' annotations, and the check of each answer."""

    svc: Services
    account: AccountRecord
    policy: Policy
    deployment: str
    api_version: str
    prompt_screenings: list[Screening]
    completion_blocklists: BlocklistMatcher | None
    window_chars: int = WINDOW_CHARS
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

    async def check_answer(self, text: str) -> AnswerCheck:
        """The annotations of a whole answer, whether it is filtered, and its redacted text if any."""
        if not self.checks_answers:
            return AnswerCheck({}, False)
        screening = await run_in_threadpool(self.svc.safety.screen, self.policy, "Completion", text,
                                            blocklists=self.completion_blocklists, scope=self.account.id)
        if screening.filtered:
            await _record(self.svc, self.account, self.deployment, "completion", screening, text)
        return AnswerCheck(self._annotations(screening, "Completion"), screening.filtered, screening.redacted)

    def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[Any]:
        """An answer's events with checks between them, as the policy's mode wants them."""
        if not self.checks_answers:
            return events
        if self.policy.asynchronous:  # text already sent cannot be redacted: PII is annotated there
            return self._annotated(events)
        return self._redacting(events) if self.redacts else self._held_back(events)

    async def _held_back(self, events: AsyncIterator[Event]) -> AsyncIterator[Any]:
        answer, held, first = "", [], True
        async for item in events:
            if isinstance(item, Finished) or not (item.text or item.logprobs):
                if held:  # the end of the answer, or tool calls: release what is held, checked
                    answer += "".join(d.text for d in held)
                    check = await self.check_answer(answer)
                    if check.filtered:
                        yield Filtered(check.annotations)
                        return
                    yield Checked(_merged(held), check.annotations)
                    held = []
                yield item
                continue
            held.append(item)
            if first or sum(len(d.text) for d in held) >= self.window_chars:
                answer += "".join(d.text for d in held)
                check = await self.check_answer(answer)
                if check.filtered:
                    yield Filtered(check.annotations)
                    return
                yield Checked(_merged(held), check.annotations)
                held, first = [], False

    async def _redacting(self, events: AsyncIterator[Event]) -> AsyncIterator[Any]:
        """Default mode with PII redaction: the answer so far is checked and redacted as a whole, and what is
        released stops REDACTION_TAIL characters short of its end, at a space, so that PII still being written
        (an e-mail address half generated) is never released before it can be recognised."""
        answer, checked, released, shown = "", 0, 0, ""
        async for item in events:
            text = isinstance(item, Delta) and bool(item.text or item.logprobs)
            if text:
                answer += item.text  # type: ignore[union-attr]
                if len(answer) - checked < self.window_chars:
                    continue
            if len(answer) > checked or (not text and released < len(shown)):
                check = await self.check_answer(answer)
                if check.filtered:
                    yield Filtered(check.annotations)
                    return
                shown, checked = check.shown(answer), len(answer)
                end = len(shown) if not text else _release_point(shown, released)
                if end > released:  # logprobs describe the tokens before redaction: they are not sent
                    yield Checked(Delta(text=shown[released:end]), check.annotations)
                    released = end
            if not text:
                yield item

    async def _annotated(self, events: AsyncIterator[Event]) -> AsyncIterator[Any]:
        answer, checked = "", 0
        async for item in events:
            if isinstance(item, Delta):
                answer += item.text
                yield item
                if len(answer) - checked < self.window_chars:
                    continue
            if len(answer) > checked:
                check = await self.check_answer(answer)
                yield Annotated(check.annotations, len(answer), checked, len(answer), check.filtered)
                checked = len(answer)
                if check.filtered:
                    return
            if isinstance(item, Finished):
                yield item


REDACTION_TAIL = 48


def _release_point(shown: str, released: int) -> int:
    """Where released text may end: at the last whitespace at least REDACTION_TAIL characters before the end."""
    limit = len(shown) - REDACTION_TAIL
    if limit <= released:
        return released
    cut = max(shown.rfind(" ", released, limit), shown.rfind("\n", released, limit))
    return cut + 1 if cut >= 0 else released


def _merged(deltas: list[Delta]) -> Delta:
    return Delta(text="".join(d.text for d in deltas), logprobs=[lp for d in deltas for lp in d.logprobs])


RECORD_CONTENT_TAG = "azurine-record-filtered-content"


async def _record(svc: Services, account: AccountRecord, deployment: str, source: str, screening: Screening,
                  content: str) -> None:
    """Count and keep every blocking hit; the content only where the account opted in, and then sealed as every
    piece of stored customer content is."""
    keep = content if account.tags.get(RECORD_CONTENT_TAG, "").lower() == "true" else None
    events = [FilterEventRow(time.time(), account.id, deployment, source, category, severity, keep)
              for category, severity in screening.reasons]
    events += [FilterEventRow(time.time(), account.id, deployment, source, f"blocklist:{name}", "detected", keep)
               for name, filtered in screening.blocklists if filtered]
    for event in events:
        CONTENT_FILTERED.labels(deployment, source, event.category, screening.language or "und").inc()

    def store() -> None:
        sealed = seal_text(svc.files.sealer, account.id, keep) if keep is not None else None
        svc.store.add_filter_events([replace(event, content=sealed) for event in events])

    try:
        await run_in_threadpool(store)
    except Exception:  # the answer must not fail because its audit record could not be written
        log.exception("could not record %d content filter events", len(events))


def blocked_prompt(annotations: dict[str, Any]) -> AzureError:
    return AzureError(400, "content_filter", BLOCKED_PROMPT, param="prompt", error_type=None,
                      include_openai_fields=True, extra={"status": 400},
                      innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": annotations})


# the pipeline stage ----------------------------------------------------------------------------------

async def _policy(svc: Services, account: AccountRecord, name: str) -> Policy:
    key = ("rai-policy", account.id, name)
    policy = svc.cache.peek(key)
    if policy is None:
        if name in BUILT_IN_PROPERTIES:
            policy = resolve(name)
        else:
            record = await run_in_threadpool(svc.store.child, account.id, "raiPolicies", name)
            # a deployment whose policy was deleted falls back to the default, as Azure's portal shows it
            policy = resolve(name, record.properties) if record is not None else resolve("Microsoft.DefaultV2")
        svc.cache.put(key, policy)
    return policy  # type: ignore[return-value]


async def _blocklists(svc: Services, account: AccountRecord, names: tuple[str, ...]) -> BlocklistMatcher | None:
    """The policy's lists as compiled for their current versions: a lookup of each list's etag (kept for a
    moment), and a compile only for a version that was never compiled in this process."""
    if not names:
        return None
    key = ("rai-blocklists", account.id, names)
    matcher = svc.cache.peek(key)
    if matcher is None:
        def current() -> BlocklistSet:
            return BlocklistSet(compiled_blocklist(svc, account.id, record)
                                for record in (svc.store.child(account.id, "raiBlocklists", name) for name in names)
                                if record is not None)

        matcher = await run_in_threadpool(current)
        svc.cache.put(key, matcher)
    return matcher  # type: ignore[return-value]


def compiled_blocklist(svc: Services, account_id: str, record: ChildRecord) -> BlocklistMatcher:
    """The list `record` (a raiBlocklists row) at its etag, compiled from its items if not yet (in a thread)."""
    def items() -> list[BlocklistItem]:
        return [BlocklistItem.from_json(item.properties)
                for item in svc.store.children(account_id, "raiBlocklistItems", record.name)]

    return svc.blocklists.get(account_id, record.name, record.etag, items)


def refuse_oversized(target: Target, prompts: list[PromptText]) -> None:
    """A prompt with more words than the model has tokens of context cannot fit (the tokenizers served make no
    fewer tokens than words): refused for its length, as the engine would, before the filters spend time on it."""
    for prompt in prompts:
        words = len(prompt.text.split())
        if words >= target.model.context_length:
            what = "messages" if prompt.param == "messages" else "prompt"
            raise ContextLengthExceeded(
                f"This model's maximum context length is {target.model.context_length} tokens. However, your "
                f"{what} resulted in at least {words} tokens. Please reduce the length of the {what}.", prompt.param)


async def screen_prompts(request: Request, account: AccountRecord, target: Target, prompts: list[PromptText],
                         api_version: str) -> ContentGuard:
    """Check the prompts against the deployment's policy; refuse with 400 if a blocking filter fires."""
    refuse_oversized(target, prompts)
    svc = services(request)
    policy = await _policy(svc, account, target.deployment.rai_policy_name or "Microsoft.DefaultV2")
    prompt_lists = await _blocklists(svc, account, tuple(r.name for r in policy.prompt_blocklists))
    completion_lists = await _blocklists(svc, account, tuple(r.name for r in policy.completion_blocklists))
    screenings = await asyncio.gather(*(
        run_in_threadpool(svc.safety.screen, policy, "Prompt", p.text, attacks=p.attacks, documents=p.documents,
                          blocklists=prompt_lists, scope=account.id)
        for p in prompts))
    guard = ContentGuard(svc, account, policy, target.deployment.name, api_version, list(screenings),
                         completion_lists)
    for prompt, screening in zip(prompts, screenings, strict=True):
        if screening.filtered:
            await _record(svc, account, target.deployment.name, "prompt", screening, prompt.text)
            raise blocked_prompt(guard._annotations(screening, "Prompt"))
    return guard
