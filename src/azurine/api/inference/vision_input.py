"""The vision stage of a chat request (and of a Responses request, as the chat it is served as): its images read,
measured and, where the settings say so, downloaded.

It runs in two steps around quota. Before admission (`read_images`), with no network: the number of images, each data
URL decoded and checked (base64, 20 MB, PNG/JPEG/GIF/WEBP, not animated) and measured, so that the estimate counts it
as Azure counts it; each `http(s)://` URL judged by `AZURINE_IMAGE_URL_FETCH` (`off`: refused; `upstream`: passed as
given to an upstream deployment's server; `on`: to be downloaded) and counted, unmeasured, at the most its detail can
cost. After admission (`Images.download`): the URLs to download are fetched (`vision.fetch`), checked and measured
like data URLs and sent on inline, so that a caller over its rate limit cannot make the server download anything.

An image part reaches the engine as the caller wrote it, `detail` included, its URL replaced only by the data URL of
what Azurine downloaded.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.protocol import ChatCompletionRequest, ImageUrl
from azurine.config import ImageSettings
from azurine.vision.fetch import FetchFailed, fetch_image
from azurine.vision.images import ImageError, ImageFacts, data_url_bytes, is_data_url, measured

MAX_IMAGES = 10  # Azure's limit on the images of one chat request
MAX_REQUEST_IMAGE_BYTES = 50 * 1024 * 1024  # all of a request's images together, as OpenAI bounds them


def _invalid(message: str, param: str) -> AzureError:
    return bad_request(message, param, "invalid_value")


@dataclass
class Images:
    """A request's images once read: what each given URL became (the URL sent on, and its size where known), and
    the URLs still to download."""

    settings: ImageSettings
    read: dict[str, tuple[str, ImageFacts | None]] = field(default_factory=dict)
    to_download: dict[str, str] = field(default_factory=dict)  # URL → the param of its first part
    total_bytes: int = 0

    async def download(self) -> None:
        """Fetch the URLs to download, at once; the first failure is the request's 400."""
        if not self.to_download:
            return
        try:  # the first failure cancels the other downloads
            async with asyncio.TaskGroup() as group:
                tasks = {url: group.create_task(self._downloaded(url, param))
                         for url, param in self.to_download.items()}
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        for url, task in tasks.items():
            data, facts = task.result()
            self.total_bytes += len(data)
            if self.total_bytes > MAX_REQUEST_IMAGE_BYTES:
                raise _invalid(f"The request's images hold more than {MAX_REQUEST_IMAGE_BYTES // (1024 * 1024)} MB "
                               "together.", self.to_download[url])
            self.read[url] = (f"data:image/{facts.format};base64,{base64.b64encode(data).decode('ascii')}", facts)
        self.to_download.clear()

    async def _downloaded(self, url: str, param: str) -> tuple[bytes, ImageFacts]:
        try:
            data = await fetch_image(url, self.settings.addresses)
            return data, await run_in_threadpool(measured, data)
        except (FetchFailed, ImageError) as error:
            raise _invalid(str(error), param) from None

    def apply(self, body: ChatCompletionRequest) -> None:
        """Put what was read onto the request's image parts: the URL to send and the size that counts."""
        for _, part in body.image_parts():
            sent, facts = self.read.get(part.url, (part.url, None))
            part.url = sent
            part._size = (facts.width, facts.height) if facts and facts.width and facts.height else None


def _check_url(part: ImageUrl, param: str, settings: ImageSettings, served_upstream: bool) -> bool:
    """Whether the URL is to be downloaded (else it goes on as given), or the 400 that refuses it."""
    scheme = part.url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise _invalid("Invalid image URL: give an http or https URL, or the image itself as a data URL "
                       "(data:image/png;base64,…).", param)
    if settings.url_fetch == "on":
        return True
    if settings.url_fetch == "upstream" and served_upstream:
        return False
    raise _invalid("Image URLs are not downloaded for this deployment: send the image itself as a data URL "
                   "(data:image/png;base64,…).", param)


def _read_data_urls(urls: dict[str, str]) -> dict[str, tuple[int, ImageFacts]]:
    out = {}
    for url, param in urls.items():
        try:
            data = data_url_bytes(url)
            out[url] = (len(data), measured(data))
        except ImageError as error:
            raise _invalid(str(error), param) from None
    return out


async def read_images(body: ChatCompletionRequest, settings: ImageSettings, served_upstream: bool) -> Images:
    """Everything about the request's images that needs no network, checked; the request's parts then count them."""
    images = Images(settings)
    parts = body.image_parts()
    if not parts:
        return images
    if len(parts) > MAX_IMAGES:
        raise _invalid(f"Too many images in request: at most {MAX_IMAGES} are read, and it holds {len(parts)}.",
                       "messages")
    data_urls: dict[str, str] = {}
    for param, part in parts:
        if is_data_url(part.url):
            data_urls.setdefault(part.url, param)
        elif _check_url(part, param, settings, served_upstream):
            images.to_download.setdefault(part.url, param)
    # a 20 MB image is some 27 MB of base64: decoded off the event loop
    for url, (size, facts) in (await run_in_threadpool(_read_data_urls, data_urls)).items():
        images.total_bytes += size
        if images.total_bytes > MAX_REQUEST_IMAGE_BYTES:
            raise _invalid(f"The request's images hold more than {MAX_REQUEST_IMAGE_BYTES // (1024 * 1024)} MB "
                           "together.", data_urls[url])
        images.read[url] = (url, facts)
    images.apply(body)
    return images


__all__ = ["MAX_IMAGES", "Images", "read_images"]
