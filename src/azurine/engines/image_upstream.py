"""Images drawn elsewhere, by an OpenAI-compatible image server: `POST {upstream}/images/generations`.

The image is asked for as `b64_json`, whatever the caller asked, so that Azurine holds it and serves it by its own
signed link (an upstream's URL may be one only Azurine can reach). A server that answers with a URL anyway has the
image fetched from there. Either way the image must be a PNG, JPEG or WebP within `MAX_IMAGE_BYTES`; it is passed on
as PNG. How many requests are in flight to the server, and which goes next, the scheduler's gate decides before a
request gets here.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from typing import Any

import httpx

from azurine.catalog import ModelSpec
from azurine.engines.base import EngineError, EngineUnavailable, Order
from azurine.engines.images import PNG_SIGNATURE, GeneratedImages, ImageAsk, image_units
from azurine.engines.openai_upstream import CALLERS_OWN, error_of, text_field
from azurine.quota.estimate import text_tokens

log = logging.getLogger("azurine.upstream")
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 4096 * 4096


class ImageUpstreamEngine:
    def __init__(self, spec: ModelSpec, base_url: str, model: str | None, api_key: str | None) -> None:
        self.spec = spec
        self._model = model or spec.name
        self._base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=TIMEOUT)

    async def generate(self, ask: ImageAsk, order: Order) -> GeneratedImages:
        body: dict[str, Any] = {"model": self._model, "prompt": ask.prompt, "n": 1, "size": ask.size,
                                "quality": ask.quality, "style": ask.style, "response_format": "b64_json"}
        if ask.user:
            body["user"] = ask.user
        try:
            response = await self._client.post("images/generations", json=body)
            if response.status_code != 200:
                self._raise_for(response)
            item = self._first_image(response)
            png = await self._image_of(item)
        except httpx.TransportError as error:
            log.warning("upstream %s could not be reached: %r", self._base_url, error)
            raise EngineUnavailable("The upstream image server could not be reached.") from error
        revised = item.get("revised_prompt")
        return GeneratedImages(png=png, revised_prompt=revised if isinstance(revised, str) and revised else ask.prompt,
                               prompt_tokens=text_tokens(ask.prompt), completion_tokens=image_units(ask.size,
                                                                                                    ask.quality))

    def _raise_for(self, response: httpx.Response) -> None:
        error = error_of(response)
        if response.status_code in CALLERS_OWN:
            raise EngineError(text_field(error, "message")
                              or f"The upstream image server refused the request ({response.status_code}).",
                              code=text_field(error, "code") or "invalid_request_error",
                              param=text_field(error, "param"))
        # the server's own trouble, or the operator's, in words that can name its hosts and keys: the operator's log
        # has them, the caller a status
        log.warning("upstream %s answered %s: %s", self._base_url, response.status_code, response.text[:2000])
        raise EngineUnavailable(f"The upstream image server answered {response.status_code}.")

    def _first_image(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            log.warning("upstream %s answered no image: %s", self._base_url, response.text[:500])
            raise EngineUnavailable("The upstream image server answered no image.")
        return data[0]

    async def _image_of(self, item: dict[str, Any]) -> bytes:
        encoded, url = item.get("b64_json"), item.get("url")
        if isinstance(encoded, str) and encoded:
            if len(encoded) > MAX_IMAGE_BYTES * 4 // 3 + 4:
                raise EngineUnavailable("The upstream image server answered an image too large to pass on.")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise EngineUnavailable("The upstream image server answered an image that does not decode.") from None
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            raw = await self._fetch(url)
        else:
            raise EngineUnavailable("The upstream image server answered no image.")
        return as_png(raw)

    async def _fetch(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as answer:
            if answer.status_code != 200:
                raise EngineUnavailable(f"The upstream image server's image link answered {answer.status_code}.")
            chunks, size = [], 0
            async for chunk in answer.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise EngineUnavailable("The upstream image server answered an image too large to pass on.")
                chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        await self._client.aclose()


def as_png(raw: bytes) -> bytes:
    """The image as PNG: a PNG as it came, once it reads as one; a JPEG or WebP converted. Anything else, or an image
    of more than `MAX_PIXELS`, is refused before it is decoded whole."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "WEBP")) as image:
            if image.width * image.height > MAX_PIXELS:
                raise EngineUnavailable("The upstream image server answered an image too large to pass on.")
            image.load()
            if image.format == "PNG" and raw.startswith(PNG_SIGNATURE):
                return raw
            converted = io.BytesIO()
            image.convert("RGB").save(converted, format="PNG")
            return converted.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise EngineUnavailable("The upstream image server answered something that is not an image.") from None
