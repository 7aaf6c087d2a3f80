"""The Files API: `/openai/files` (dated, api-version required) and `/openai/v1/files`, each operation written once.

Each handler is the pipeline, top to bottom, after the caller's stages (api-version → account → network →
encryption → identity): request → store → answer.
Errors use the authoring envelope of the dated spec (`invalidPayload`, `jsonlValidationFailed`, `notFound`,
`conflict`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from azurine.api.caller import Caller
from azurine.api.context import services
from azurine.api.errors import AzureError
from azurine.api.middleware import ACCOUNT_SCOPE_KEY
from azurine.api.mounting import mount
from azurine.api.sse import AzureJSONResponse
from azurine.files.batch_input import LineError, validate_batch_lines
from azurine.storage.files import FileInUse, FileRecord

router = APIRouter()

PURPOSES = ("fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch", "batch_output")
# batch_output files are written by the service, never uploaded
UPLOAD_PURPOSES = tuple(p for p in PURPOSES if p != "batch_output")

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # Azure OpenAI's limit for a batch input file
MULTIPART_OVERHEAD = 64 * 1024  # room for the form's boundaries and its purpose field
# ASCII digits, few enough for int(): str.isdigit also takes "²", which int() refuses with a ValueError
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_FILENAME = 1024
MAX_LIST_LIMIT = 10_000
LINE_ERRORS_IN_MESSAGE = 5
LINE_ERRORS_IN_DETAILS = 100


@dataclass(frozen=True)
class Upload:
    purpose: str
    filename: str
    data: bytes


# answers ----------------------------------------------------------------------------------------------------

def invalid_payload(message: str, target: str | None = None, status: int = 400) -> AzureError:
    return AzureError(status, "invalidPayload", message, extra={"target": target} if target else None)


def file_not_found(file_id: str) -> AzureError:
    return AzureError(404, "notFound", f"File with id '{file_id}' was not found.")


def file_in_use(error: FileInUse) -> AzureError:
    return AzureError(409, "conflict", f"File with id '{error.file_id}' cannot be deleted while batch "
                      f"'{error.batch_id}' (status '{error.status}') uses it as its input file. Delete it once the "
                      "batch has ended, or cancel the batch first.")


def file_object(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id, "object": "file", "bytes": record.bytes, "created_at": int(record.created_at),
        "filename": record.filename, "purpose": record.purpose, "status": record.status,
        "status_details": record.status_details,
    }


def file_url(request: Request, file_id: str, api_version: str) -> str:
    """Where the new file answers, with the `/accounts/{name}` prefix the request came in on."""
    account = request.scope.get("state", {}).get(ACCOUNT_SCOPE_KEY)
    prefix = f"/accounts/{account}" if account else ""
    return f"{str(request.base_url).rstrip('/')}{prefix}/openai/files/{file_id}?api-version={api_version}"


def line_errors(errors: list[LineError]) -> AzureError:
    shown = "; ".join(e.message for e in errors[:LINE_ERRORS_IN_MESSAGE])
    more = len(errors) - LINE_ERRORS_IN_MESSAGE
    counted = f"{len(errors)} {'error' if len(errors) == 1 else 'errors'}"
    message = (f"The batch input file cannot run as a batch ({counted}): {shown}"
               + (f"; and {more} more." if more > 0 else ""))
    details = [{"code": e.code, "message": e.message, "target": f"line {e.line}" if e.line else "file",
                "line": e.line} for e in errors[:LINE_ERRORS_IN_DETAILS]]
    return AzureError(400, "jsonlValidationFailed", message, innererror={"code": "invalidPayload"},
                      extra={"details": details})


# the request ------------------------------------------------------------------------------------------------

def plausible_id(file_id: str) -> bool:
    # a NUL or an id longer than any stored one cannot name a file; PostgreSQL would refuse to compare a NUL
    return 0 < len(file_id) <= 64 and "\x00" not in file_id


async def bounded_body(request: Request) -> AsyncGenerator[bytes, None]:
    """The body as it arrives, cut off once it outgrows any allowed upload, even one sent without a length."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            raise too_large(seen, at_least=True)
        yield chunk


async def read_upload(request: Request) -> Upload:
    """`purpose` and `file` from a multipart form, refused before reading when it says it is too big."""
    declared = request.headers.get("content-length", "")
    if WHOLE_NUMBER.fullmatch(declared) and int(declared) > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
        raise too_large(int(declared))
    if not (request.headers.get("content-type") or "").lower().startswith("multipart/form-data"):
        raise invalid_payload("An upload is a multipart/form-data body with the fields 'purpose' and 'file'.")
    parser = MultiPartParser(request.headers, bounded_body(request), max_files=1, max_fields=16)
    # the upload stays in memory, as it would once read: spooled to a temporary file it would reach disk unsealed
    parser.spool_max_size = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise invalid_payload(f"The multipart/form-data body could not be read: {error.message}") from None
    try:
        purpose, upload = form.get("purpose"), form.get("file")
        if not isinstance(purpose, str) or not purpose:
            raise invalid_payload("Missing required parameter: 'purpose'. Send a multipart/form-data body "
                                  "with the fields 'purpose' and 'file'.", "purpose")
        if not isinstance(upload, UploadFile):
            raise invalid_payload("Missing required parameter: 'file'. Send the file's content as the "
                                  "multipart/form-data part 'file', with a filename.", "file")
        if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
            raise too_large(upload.size)
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        filename = upload.filename or "file"
    finally:
        await form.close()
    if len(data) > MAX_UPLOAD_BYTES:
        raise too_large(len(data))
    if len(filename) > MAX_FILENAME or "\x00" in filename:
        raise invalid_payload(f"The filename must be at most {MAX_FILENAME} characters, without NUL.", "file")
    return Upload(purpose=purpose, filename=filename, data=data)


def too_large(size: int, at_least: bool = False) -> AzureError:
    size_text = f"over {size:,}" if at_least else f"{size:,}"
    return invalid_payload(f"The file is too large ({size_text} bytes). Files are limited to "
                           f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB ({MAX_UPLOAD_BYTES:,} bytes).", "file", status=413)


async def check_upload(upload: Upload, max_depth: int) -> None:
    """The purpose is one that can be uploaded; a batch input file has runnable requests on every line."""
    if upload.purpose not in UPLOAD_PURPOSES:
        raise invalid_payload(f"The purpose '{upload.purpose}' is not supported. Use one of: "
                              f"{', '.join(UPLOAD_PURPOSES)}.", "purpose")
    if upload.purpose == "batch":
        _, errors = await run_in_threadpool(validate_batch_lines, upload.data, max_depth)
        if errors:
            raise line_errors(errors)


@dataclass(frozen=True)
class ListQuery:
    purpose: str | None
    after: str | None
    limit: int
    order: str


def list_query(request: Request) -> ListQuery:
    params = request.query_params
    purpose = params.get("purpose")
    if purpose is not None and purpose not in PURPOSES:
        raise invalid_payload(f"The purpose '{purpose}' is not supported. Use one of: {', '.join(PURPOSES)}.",
                              "purpose")
    raw_limit = params.get("limit")
    limit = MAX_LIST_LIMIT
    if raw_limit is not None:
        if not WHOLE_NUMBER.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
            raise invalid_payload(f"The limit must be a whole number from 1 to {MAX_LIST_LIMIT:,}, "
                                  f"not '{raw_limit}'.", "limit")
        limit = int(raw_limit)
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid_payload(f"The order must be 'asc' or 'desc', not '{order}'.", "order")
    return ListQuery(purpose=purpose, after=params.get("after") or None, limit=limit, order=order)


# the operations ------------------------------------------------------------------------------------------------

async def upload_file(request: Request, caller: Caller) -> Response:
    upload = await read_upload(request)
    await check_upload(upload, services(request).settings.limits.max_json_depth)
    record = await run_in_threadpool(services(request).files.create, caller.account.id, upload.purpose,
                                     upload.filename, upload.data)
    status = caller.surface.upload_status
    location = {"Location": file_url(request, record.id, caller.version)} if status == 201 else None
    return AzureJSONResponse(file_object(record), status_code=status, headers=location)


async def list_files(request: Request, caller: Caller) -> Response:
    query = list_query(request)
    if query.after is not None and not plausible_id(query.after):
        rows: list[FileRecord] = []
    else:  # one more than asked says whether another page follows
        rows = await run_in_threadpool(services(request).files.list, caller.account.id, query.purpose,
                                       query.after, query.limit + 1, query.order)
    page = rows[:query.limit]
    return AzureJSONResponse({
        "object": "list", "data": [file_object(r) for r in page],
        "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
        "has_more": len(rows) > query.limit,
    })


def require_plausible_id(file_id: str) -> None:
    if not plausible_id(file_id):
        raise file_not_found(file_id)


async def get_file(file_id: str, request: Request, caller: Caller) -> Response:
    require_plausible_id(file_id)
    record = await run_in_threadpool(services(request).files.get, caller.account.id, file_id)
    if record is None:
        raise file_not_found(file_id)
    return AzureJSONResponse(file_object(record))


async def get_file_content(file_id: str, request: Request, caller: Caller) -> Response:
    require_plausible_id(file_id)
    data = await run_in_threadpool(services(request).files.content, caller.account.id, file_id)
    if data is None:
        raise file_not_found(file_id)
    return Response(data, media_type="application/octet-stream")


async def delete_file(file_id: str, request: Request, caller: Caller) -> Response:
    require_plausible_id(file_id)
    try:
        deleted = await run_in_threadpool(services(request).files.delete, caller.account.id, file_id)
    except FileInUse as in_use:
        raise file_in_use(in_use) from None
    if not deleted:
        raise file_not_found(file_id)
    return AzureJSONResponse({"object": "file", "deleted": True, "id": file_id})


mount(router, "POST", "/files", upload_file, "Files_Upload")
mount(router, "GET", "/files", list_files, "Files_List")
mount(router, "GET", "/files/{file_id}", get_file, "Files_Get")
mount(router, "DELETE", "/files/{file_id}", delete_file, "Files_Delete")
mount(router, "GET", "/files/{file_id}/content", get_file_content, "Files_GetContent")
