"""Text to image in the server's process: a diffusers pipeline from a directory the operator gives, on the CPU.

No text-to-image weights install from the package index, so the weights are the operator's: any pipeline
`DiffusionPipeline.from_pretrained` reads from a directory (its `model_index.json`), a Stable Diffusion checkpoint
for one, loaded from that directory only. The work per image is the deployment's, never the caller's: the pipeline
renders with its longer side at the deployment's `resolution` (in multiples of 8, the request's aspect kept) in its
`steps` denoising steps (twice as many for `quality: hd`), and the picture is then scaled to the size asked for, so a
small pipeline answers a 1792x1024 request with an upscaled image. `style` sets the guidance: `vivid` follows the
prompt harder than `natural`.

The engine computes on the thread that calls it; the scheduler runs its calls in turn on a compute thread of its own
(`scheduler/scheduled_images.py`), one image a step.
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from azurine.catalog import ModelSpec
from azurine.engines.base import EngineUnavailable
from azurine.engines.images import GeneratedImages, ImageAsk, LocalBounds, image_units
from azurine.quota.estimate import text_tokens

log = logging.getLogger("azurine")

# the most a deployment may ask of one image; what a 2-core CPU draws in minutes at Stable Diffusion 1.5's size
MAX_STEPS = 100
MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
DEFAULT_BOUNDS = LocalBounds(steps=30, resolution=512)
GUIDANCE = {"vivid": 7.5, "natural": 5.0}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx")


def bounds_of(spec: ModelSpec, options: dict[str, Any] | None = None) -> LocalBounds:
    """The deployment's bounds where it set them, else the catalog's, each held within the engine's limits."""
    options = options or {}
    steps = options.get("steps", spec.extra.get("steps", DEFAULT_BOUNDS.steps))
    resolution = options.get("resolution", spec.extra.get("resolution", DEFAULT_BOUNDS.resolution))
    return LocalBounds(steps=min(MAX_STEPS, max(1, int(steps))),  # type: ignore[call-overload]
                       resolution=min(MAX_RESOLUTION, max(MIN_RESOLUTION, int(resolution))))  # type: ignore[call-overload]


def render_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The size the pipeline draws: the longer side at `resolution`, the aspect of `width`x`height`, both sides in
    multiples of 8 (what a Stable Diffusion pipeline accepts)."""
    longer = max(width, height)

    def side(length: int) -> int:
        return max(8, round(resolution * length / longer / 8) * 8)

    return side(width), side(height)


class DiffusersEngine:
    def __init__(self, spec: ModelSpec, model_dir: Path | None) -> None:
        self.spec = spec
        self._dir = model_dir
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                if self._dir is None or not (self._dir / "model_index.json").is_file():
                    raise EngineUnavailable(
                        f"The weights for {self.spec.name} are not there: its deployment needs a diffusers pipeline's "
                        "directory (`azurine deployments create --model-path`) or an upstream server.")
                import torch
                from diffusers import DiffusionPipeline
                from diffusers.utils import logging as diffusers_logging
                from transformers.utils import logging as transformers_logging

                diffusers_logging.disable_progress_bar()
                transformers_logging.disable_progress_bar()
                try:
                    pipeline = DiffusionPipeline.from_pretrained(str(self._dir), local_files_only=True,
                                                                 dtype=torch.float32)
                except (OSError, ValueError, TypeError) as error:
                    log.warning("the pipeline in %s does not load: %r", self._dir, error)
                    raise EngineUnavailable(f"The weights for {self.spec.name} do not load.") from error
                pipeline.set_progress_bar_config(disable=True)
                self._pipeline = pipeline
            return self._pipeline

    # residency (`scheduler/residency`): the weights' files, which load in float32 about as stored

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def footprint(self, priorities: Collection[int]) -> int:
        if self._dir is None:
            return 0
        try:
            return sum(path.stat().st_size for path in self._dir.rglob("*")
                       if path.is_file() and path.suffix in WEIGHT_SUFFIXES)
        except OSError:
            return 0

    def unload(self) -> None:
        with self._lock:
            self._pipeline = None

    def generate_blocking(self, ask: ImageAsk) -> GeneratedImages:
        from PIL import Image

        pipeline = self._load()
        bounds = ask.bounds or bounds_of(self.spec)
        width, height = render_size(ask.width, ask.height, bounds.resolution)
        steps = min(MAX_STEPS, bounds.steps * (2 if ask.quality == "hd" else 1))
        wanted = {"prompt": ask.prompt, "num_inference_steps": steps, "width": width, "height": height,
                  "guidance_scale": GUIDANCE[ask.style], "output_type": "pil"}
        accepted = inspect.signature(pipeline.__call__).parameters
        out = pipeline(**{k: v for k, v in wanted.items() if k in accepted})
        flagged = bool((getattr(out, "nsfw_content_detected", None) or [False])[0])
        image = out.images[0].convert("RGB")
        if image.size != (ask.width, ask.height):
            image = image.resize((ask.width, ask.height), Image.Resampling.LANCZOS)
        encoded = io.BytesIO()
        image.save(encoded, format="PNG")
        return GeneratedImages(png=encoded.getvalue(), revised_prompt=ask.prompt,
                               prompt_tokens=self._prompt_tokens(pipeline, ask.prompt),
                               completion_tokens=image_units(ask.size, ask.quality), flagged=flagged)

    @staticmethod
    def _prompt_tokens(pipeline: Any, prompt: str) -> int:
        """The prompt's tokens as the pipeline's text encoder reads them (at most its length: the rest is cut)."""
        tokenizer = getattr(pipeline, "tokenizer", None)
        if tokenizer is None:
            return text_tokens(prompt)
        return len(tokenizer(prompt, truncation=True).input_ids)
