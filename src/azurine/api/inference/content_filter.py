"""The content-filter stage of the pipeline: the deployment's RAI policy on the prompt, then on each answer
(`azurine.safety.guard`). A prompt that trips a blocking filter is refused with Azure's 400 `content_filter`; an
answer is checked as it is produced, and a filtered one ends with `finish_reason: content_filter`. What the filter
screened counts in Azure Monitor's content-safety volumes: the prompts here, each answer once the guard has its
whole screening.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from azurine.api.caller import Caller
from azurine.api.context import Target, services
from azurine.api.errors import AzureError
from azurine.engines.base import ContextLengthExceeded
from azurine.safety.guard import ContentGuard, FilterLog, PromptBlocked, PromptText
from azurine.safety.guard import screen_prompts as screen
from azurine.safety.resolution import account_blocklists, account_policy
from azurine.safety.screen import Screening
from azurine.telemetry.request_metrics import observation, record_screening

BLOCKED_PROMPT = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read our "
    "documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


def blocked_prompt(annotations: dict[str, Any]) -> AzureError:
    return AzureError(400, "content_filter", BLOCKED_PROMPT, param="prompt", error_type=None,
                      include_openai_fields=True, extra={"status": 400},
                      innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": annotations})


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


async def screen_prompts(request: Request, caller: Caller, target: Target, prompts: list[PromptText],
                         refusal: Callable[[dict[str, Any]], AzureError] = blocked_prompt) -> ContentGuard:
    """Check the prompts against the deployment's policy; refuse with `refusal`'s 400 (Azure's `content_filter`
    unless the operation words it otherwise, as DALL-E does) if a blocking filter fires."""
    refuse_oversized(target, prompts)
    svc, account = services(request), caller.account
    policy = await account_policy(svc.store, svc.cache, account,
                                  target.deployment.rai_policy_name or "Microsoft.DefaultV2")
    prompt_lists, completion_lists = [
        await account_blocklists(svc.store, svc.cache, svc.blocklists, account, tuple(r.name for r in lists))
        for lists in (policy.prompt_blocklists, policy.completion_blocklists)]
    seen = observation(request.scope)
    if seen is not None:
        seen.screen_started = time.monotonic()

    def answered(screening: Screening) -> None:
        record_screening(svc.metrics, seen, "Completion", [screening])

    try:
        guard = await screen(svc.safety, FilterLog(svc.store, svc.files.sealer), account, policy,
                             target.deployment.name, caller.version, prompts, prompt_lists, completion_lists,
                             answered)
    except PromptBlocked as blocked:
        record_screening(svc.metrics, seen, "Prompt", blocked.screenings)
        raise refusal(blocked.annotations) from None
    finally:
        if seen is not None:
            seen.screen_ended = time.monotonic()
    record_screening(svc.metrics, seen, "Prompt", guard.prompt_screenings)
    return guard
