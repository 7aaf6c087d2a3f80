"""What crosses the interface of the image engines: what to draw, and the images drawn.

A local engine computes on the thread that calls it; the scheduler runs its calls in turn on a compute thread of the
model's own (`scheduler/scheduled_images.py`) and serves the asynchronous side (`ImageGenerator`). An upstream engine
is asynchronous itself and waits at its server's gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from azurine.catalog import ModelSpec
from azurine.engines.base import Order

Quality = Literal["standard", "hd"]
Style = Literal["vivid", "natural"]
SIZES = ("1024x1024", "1792x1024", "1024x1792")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_units(size: str, quality: str) -> int:
    """What one image costs in units of a standard square one, as Azure prices DALL-E 3 ($0.04, $0.08, $0.12)."""
    return (2 if size != "1024x1024" else 1) + (1 if quality == "hd" else 0)


@dataclass(frozen=True)
class LocalBounds:
    """How much work a local engine may do for one image: the deployment's, never the caller's."""

    steps: int  # denoising steps of a standard image; an hd one takes twice as many, within `MAX_STEPS`
    resolution: int  # the longer side it renders, in pixels, before the image is scaled to the size asked


@dataclass(frozen=True)
class ImageAsk:
    prompt: str
    size: str  # one of SIZES, "WIDTHxHEIGHT"
    quality: Quality = "standard"
    style: Style = "vivid"
    user: str | None = None
    bounds: LocalBounds | None = None  # a local engine's; an upstream server bounds its own work

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])


@dataclass(frozen=True)
class GeneratedImages:
    """One image (DALL-E 3 makes one a request) and what it used, which the scheduler's meter counts: the prompt's
    tokens in, and the image's price units out (`image_units`)."""

    png: bytes
    revised_prompt: str  # the prompt the image was drawn from, rewritten where the model rewrites it
    prompt_tokens: int
    completion_tokens: int
    # the pipeline's own safety checker found the image unsafe (a Stable Diffusion checkpoint carries one)
    flagged: bool = False


class BlockingPainter(Protocol):
    spec: ModelSpec

    def generate_blocking(self, ask: ImageAsk) -> GeneratedImages:
        """Draw the image, on the calling thread."""
        ...


@runtime_checkable
class ImageGenerator(Protocol):
    async def generate(self, ask: ImageAsk, order: Order) -> GeneratedImages: ...
