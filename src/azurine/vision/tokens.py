"""What an image counts for in tokens, as Azure counts it for GPT-4o and GPT-4 Turbo with Vision.

`low` detail is 85 tokens whatever the size. `high` (and `auto`, which Azure may treat as either; Azurine counts it
as `high`) scales the image down to fit a 2048 x 2048 square, then down again until its shorter side is at most 768,
and counts 170 tokens for each 512 x 512 tile that covers it, plus the 85. A 1024 x 1024 image is 765 tokens, a
2048 x 4096 one 1105. Images are never scaled up: a 500 x 500 image is one tile, 255 tokens.
"""

from __future__ import annotations

import math
from typing import Any

BASE_TOKENS = 85
TILE_TOKENS = 170
TILE = 512
FIT = 2048
SHORT_SIDE = 768
# the most a high-detail image can count: 768 x 2048 after scaling, 2 x 4 tiles
MOST_TOKENS = BASE_TOKENS + TILE_TOKENS * 8


def image_tokens(width: int, height: int, detail: str | None) -> int:
    if detail == "low":
        return BASE_TOKENS
    if width < 1 or height < 1:
        return MOST_TOKENS
    scale = min(1.0, FIT / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, SHORT_SIDE / min(width, height))
    width, height = width * scale, height * scale
    # a side computed as 768.0000001 is still 768 pixels: round before counting tiles
    tiles = math.ceil(round(width, 6) / TILE) * math.ceil(round(height, 6) / TILE)
    return BASE_TOKENS + TILE_TOKENS * tiles


def unmeasured_tokens(detail: str | None) -> int:
    """What an image not (yet) measured is counted for: all a high-detail one can be."""
    return BASE_TOKENS if detail == "low" else MOST_TOKENS


def without_images(content: Any) -> Any:
    """A message's content as estimates from characters read it: an image part counts by `image_tokens`, not by
    the characters of its URL (a data URL's base64 would count thousands of tokens)."""
    if not isinstance(content, list):
        return content
    return [{"type": "image_url"} if isinstance(p, dict) and p.get("type") == "image_url" else p for p in content]
