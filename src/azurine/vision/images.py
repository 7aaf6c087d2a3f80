"""An image as a caller sends it: a data URL read, or downloaded bytes, checked and measured.

Azure takes PNG, JPEG, GIF (not animated) and WEBP, up to 20 MB each. A data URL must say it holds base64; its size
is known from its length before anything is decoded. The kind of image is read from its first bytes, whatever the
URL or the server claimed. Its size in pixels is read from its header by Pillow where Pillow is installed (nothing
is decoded: a small file that claims a huge picture costs nothing here); without Pillow an image counts as the
largest (`tokens.unmeasured_tokens`).
"""

from __future__ import annotations

import binascii
import io
import re
from dataclasses import dataclass

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # Azure OpenAI's limit on one input image
FORMATS = ("png", "jpeg", "gif", "webp")
UNSUPPORTED = ("You uploaded an unsupported image. Please make sure your image is below 20 MB in size and is of one "
               "the following formats: ['png', 'jpeg', 'gif', 'webp'].")
DATA_URL = re.compile(r"data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*),", re.IGNORECASE)
BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class ImageError(ValueError):
    """An image Azurine cannot take; the message is the caller's to read."""


@dataclass(frozen=True)
class ImageFacts:
    format: str  # one of FORMATS
    width: int | None  # None: not measured (Pillow is not installed)
    height: int | None


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def data_url_bytes(url: str) -> bytes:
    """The image a `data:image/…;base64,…` URL holds, within MAX_IMAGE_BYTES."""
    head = DATA_URL.match(url)
    if head is None:
        raise ImageError("Invalid image data URL: it must read data:image/<type>;base64,<data>.")
    if not head.group("type").lower().startswith("image/"):
        raise ImageError(f"Invalid image data URL: its media type is {head.group('type')[:50]!r}, not an image.")
    if "base64" not in (p.strip().lower() for p in head.group("params").split(";")):
        raise ImageError("Invalid image data URL: only base64 data is read (data:image/<type>;base64,<data>).")
    payload = url[head.end():].encode("ascii", errors="replace")
    # what the payload decodes to, known before decoding it
    if len(payload) // 4 * 3 - payload[-2:].count(b"=") > MAX_IMAGE_BYTES:
        raise ImageError(f"Invalid image: it is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB. " + UNSUPPORTED)
    if len(payload) % 4 or not BASE64_CHARS.fullmatch(payload):
        raise ImageError("Invalid image data URL: its data is not valid base64.")
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except binascii.Error:
        raise ImageError("Invalid image data URL: its data is not valid base64.") from None


def sniffed(data: bytes) -> str | None:
    """The image format its first bytes say, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def measured(data: bytes) -> ImageFacts:
    """What the image is and how large, or ImageError if it is none that Azure takes."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"Invalid image: it is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB. " + UNSUPPORTED)
    kind = sniffed(data)
    if kind is None:
        raise ImageError(UNSUPPORTED)
    try:
        from PIL import Image
    except ImportError:
        return ImageFacts(kind, None, None)
    try:
        with Image.open(io.BytesIO(data), formats=[kind.upper()]) as image:
            width, height = image.size
            animated = bool(getattr(image, "is_animated", False)) and kind == "gif"
    except Exception:  # any failure of Pillow's parsers on a caller's bytes is an unreadable image
        raise ImageError(UNSUPPORTED) from None
    if animated:
        raise ImageError("Invalid image: animated GIFs are not supported. " + UNSUPPORTED)
    if width < 1 or height < 1:
        raise ImageError(UNSUPPORTED)
    return ImageFacts(kind, width, height)
