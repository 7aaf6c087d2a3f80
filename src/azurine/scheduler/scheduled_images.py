"""Image engines as the scheduler runs them, each call metered in one place (`CallMeter`): what it read of the prompt
and the image's price units.

A local pipeline computes on a compute thread of its own, its calls taken in turn by class (provisioned, standard,
batch) and between deployments, as the speech engines' are; an image is one step, bounded by the deployment's steps
and resolution. An upstream image server's calls wait at that server's gate, shared with every other deployment on it.
"""

from __future__ import annotations

from azurine.engines.image_upstream import ImageUpstreamEngine
from azurine.engines.images import BlockingPainter, GeneratedImages, ImageAsk
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.metering import CallMeter
from azurine.scheduler.scheduled_speech import _NoText
from azurine.scheduler.upstream import UpstreamGate
from azurine.scheduler.work import WorkOrder


class ScheduledPainter(_NoText):
    def __init__(self, engine: BlockingPainter) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._compute = Scheduler(engine.spec.name)

    async def generate(self, ask: ImageAsk, order: WorkOrder) -> GeneratedImages:
        return await self._compute.call(order, lambda: self._engine.generate_blocking(ask))

    async def close(self) -> None:
        self._compute.close()


class ScheduledImageUpstream(_NoText):
    def __init__(self, engine: ImageUpstreamEngine, gate: UpstreamGate) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._gate = gate

    async def generate(self, ask: ImageAsk, order: WorkOrder) -> GeneratedImages:
        # the call starts only once admitted: a request that waits has sent nothing upstream yet
        async with self._gate.admitted(order):
            meter = CallMeter(order)
            meter.start()
            try:
                result = await self._engine.generate(ask, order)
                meter.observe(result)
                return result
            finally:
                meter.end()

    async def close(self) -> None:
        await self._engine.close()
