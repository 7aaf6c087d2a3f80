"""The metering stage: what a request really used, settled once its last engine call is over.

Admission charges an estimate and hands the request a `Ticket`. Each engine call made for it runs under the
scheduler, whose `CallMeter` (`scheduler/metering.py`) reports the call's tokens (and seconds of audio) into the
ticket; the ticket settles when the last holder lets go (`ticket.py`), on whichever thread that is, and the settlement
here records the usage in the ledger, counts it, and corrects a provisioned deployment's utilization by the actual
cost, as Azure does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from azurine.api.caller import Caller
from azurine.api.context import Services, Target
from azurine.api.inference.ticket import Usage
from azurine.catalog import ModelSpec
from azurine.quota.limiter import Limiter, LimiterUnavailable, Throughput
from azurine.telemetry.metrics import SETTLED_TOKENS
from azurine.telemetry.request_metrics import Observation
from azurine.telemetry.request_metrics import record_usage as record_usage_metrics

log = logging.getLogger("azurine")


def weighted(model: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
    """Tokens as provisioned throughput counts them: output weighs what the catalog says."""
    return prompt_tokens + model.ptu_output_weight * completion_tokens


def settlement(svc: Services, caller: Caller, target: Target, throughput: Throughput | None,
               seen: Observation | None) -> Callable[[Usage], None]:
    """What settles the request's ticket. A batch line's usage is recorded by its worker, once, when its result is
    stored (a line run again after a crash is billed once)."""
    return partial(_settle, svc, asyncio.get_running_loop(), target.deployment.id, throughput, target.model,
                   caller.online, seen)


def _settle(svc: Services, loop: asyncio.AbstractEventLoop, key: str, throughput: Throughput | None,
            model: ModelSpec, record_usage: bool, seen: Observation | None, usage: Usage) -> None:
    """Runs on whichever thread let go of the ticket last."""
    if record_usage:
        svc.ledger.record(usage.account_id, usage.deployment, usage.prompt_tokens, usage.completion_tokens,
                          usage.estimate.total, audio_seconds=usage.audio_seconds,
                          # where it ran, as x-ms-region said: a model server's region, else this gateway's
                          region=(seen.processing_region if seen is not None else "") or svc.settings.region)
    if seen is not None:
        record_usage_metrics(svc.metrics, seen, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    SETTLED_TOKENS.labels(usage.deployment, "prompt").inc(usage.prompt_tokens)
    SETTLED_TOKENS.labels(usage.deployment, "completion").inc(usage.completion_tokens)
    if throughput is None:
        return
    # Azure corrects provisioned utilization by the difference between the actual and the estimated cost
    delta = (weighted(model, usage.prompt_tokens, usage.completion_tokens)
             - weighted(model, usage.estimate.prompt, usage.estimate.completion))
    if loop.is_closed():
        return
    asyncio.run_coroutine_threadsafe(_correct(svc.limiter, key, throughput, delta), loop)


async def _correct(limiter: Limiter, key: str, throughput: Throughput, delta: float) -> None:
    try:
        await limiter.settle_provisioned(key, throughput, delta)
    except LimiterUnavailable:
        log.warning("could not correct the utilization of %s by %.0f: the limiter store is unreachable", key, delta)


