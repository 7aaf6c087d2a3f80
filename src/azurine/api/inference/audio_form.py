"""The multipart form of a speech-to-text request: the audio file and its text fields, read within Azure's 25 MB.

A body that says it is larger is refused before any of it is read; one that grows past the limit as it arrives
(sent without a length, or lying about it) is cut off there. The answer is the 413 Azure's Whisper sends.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from azurine.api.errors import AzureError, bad_request

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # 26,214,400: Azure OpenAI's limit on a Whisper request's file
FORM_OVERHEAD = 64 * 1024  # the boundaries and the text fields around the file
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_FIELDS = 32


@dataclass(frozen=True)
class AudioForm:
    audio: bytes
    filename: str
    fields: dict[str, list[str]]  # each text field's values, in order (`timestamp_granularities[]` repeats)

    def value(self, name: str) -> str | None:
        """A field given once; given again, its last value counts, as form parsers commonly read them."""
        values = self.fields.get(name)
        return values[-1] if values else None


def too_large(size: int) -> AzureError:
    """Azure's own answer, strings "null" and all."""
    return AzureError(413, "null", f"Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({size} bytes read)",
                      param="null", error_type="server_error")


async def _bounded(request: Request) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_AUDIO_BYTES + FORM_OVERHEAD:
            raise too_large(seen)
        yield chunk


async def read_audio_form(request: Request) -> AudioForm:
    declared = request.headers.get("content-length", "")
    if WHOLE_NUMBER.fullmatch(declared) and int(declared) > MAX_AUDIO_BYTES + FORM_OVERHEAD:
        raise too_large(int(declared))
    content_type = request.headers.get("content-type") or ""
    if not content_type.lower().startswith("multipart/form-data"):
        raise bad_request(f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data: "
                          "send the audio as the form's part 'file'.", None, "invalid_request_error")
    parser = MultiPartParser(request.headers, _bounded(request), max_files=1, max_fields=MAX_FIELDS)
    # kept in memory, as it is decoded from memory: spooled to a temporary file it would reach the disk unsealed
    parser.spool_max_size = MAX_AUDIO_BYTES + FORM_OVERHEAD
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise bad_request(f"The multipart/form-data body could not be read: {error.message}", None,
                          "invalid_request_error") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request("Missing required parameter: 'file'. Send the audio as the multipart/form-data part "
                              "'file', with a filename.", "file", "missing_required_parameter")
        if upload.size is not None and upload.size > MAX_AUDIO_BYTES:
            raise too_large(upload.size)
        audio = await upload.read(MAX_AUDIO_BYTES + 1)
        fields: dict[str, list[str]] = {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(name, []).append(value)
        filename = upload.filename or "file"
    finally:
        await form.close()
    if len(audio) > MAX_AUDIO_BYTES:
        raise too_large(len(audio))
    return AudioForm(audio=audio, filename=filename, fields=fields)
