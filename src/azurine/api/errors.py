"""Azure's error envelope: `{"error": {"code": "<string>", "message": …}}` and the answers that use it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for "
    "an active subscription and use a correct regional API endpoint for your resource."
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
    "minutes, please wait a moment and try again."
)
OPERATION_NAMES = {"chat": "chatCompletion", "completion": "completions", "embeddings": "embeddings",
                   "transcription": "audioTranscription", "translation": "audioTranslation", "speech": "audioSpeech",
                   "image_generation": "imageGenerations"}


class AzureError(Exception):
    """An answer in Azure's error envelope; only the fields given are sent, as Azure does."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 error_type: str | None = None, include_openai_fields: bool = False,
                 innererror: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.param, self.error_type = param, error_type
        self.include_openai_fields = include_openai_fields or param is not None or error_type is not None
        self.innererror = innererror
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.include_openai_fields:
            error["param"] = self.param
            error["type"] = self.error_type
        if self.innererror is not None:
            error["innererror"] = self.innererror
        return {"error": {**error, **self.extra}}


def resource_not_found() -> AzureError:
    return AzureError(404, "404", "Resource not found")


def api_version_not_supported() -> AzureError:
    return AzureError(400, "BadRequest", "API version not supported")


def invalid_key() -> AzureError:
    return AzureError(401, "401", INVALID_KEY)


def deployment_not_found() -> AzureError:
    return AzureError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)


def operation_not_supported(capability: str, deployment: str) -> AzureError:
    return AzureError(
        400, "OperationNotSupported",
        f"The {OPERATION_NAMES[capability]} operation does not work with the specified model, {deployment}. "
        "Please choose different model and try again. You can learn more about which models can be used with "
        "each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.",
    )


def bad_request(message: str, param: str | None = None, code: str = "BadRequest") -> AzureError:
    return AzureError(400, code, message, param=param, error_type="invalid_request_error",
                      include_openai_fields=True)


def error_response(error: AzureError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _branch(part: str) -> bool:
    """A union branch pydantic names in a location ("str", "list[...]", "function-after[...]", a model's class
    name); users never wrote those, and the API's own field names are lower case."""
    return "[" in part or part in ("str", "int", "float", "bool", "list", "dict") or part[:1].isupper()


def _param(loc: tuple[Any, ...]) -> str | None:
    return _render([p for p in loc if not (isinstance(p, str) and _branch(p))])


def _render(parts: list[Any]) -> str | None:
    rendered = ""
    for part in parts:
        rendered += f"[{part}]" if isinstance(part, int) else (f".{part}" if rendered else str(part))
    return rendered or None


def _is_role(part: str, value: Any) -> bool:
    """Whether `part`, last in a location, is the role tag of a message whose own check failed (a part's type
    there is rather a missing field named like the type: `{"type": "text"}`)."""
    return isinstance(value, dict) and part == value.get("role")


def _param_in(body: Any, loc: tuple[Any, ...]) -> str | None:
    """The path of the error in what the client sent: pydantic's location less the union branches and the
    discriminator tags it tried (the "user" of a user message), found by walking the body along the location."""
    kept: list[Any] = []
    value = body
    for i, part in enumerate(loc):
        following = loc[i + 1] if i + 1 < len(loc) else None
        if isinstance(part, int):
            if isinstance(value, list) and 0 <= part < len(value):
                kept.append(part)
                value = value[part]
        elif isinstance(value, dict) and part in value and following != part:
            kept.append(part)
            value = value[part]
        elif isinstance(value, dict) and part in value:
            continue  # a tag that is also the name of the field it selects: {"type": "text", "text": …}
        elif following is None and not _branch(part) and not _is_role(part, value):
            kept.append(part)  # a field that is missing; other parts not in the body are tags pydantic tried
    return _render(kept)


def _locate(error: dict[str, Any], body: Any) -> str | None:
    loc = tuple(p for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))
    param = _param_in(body, loc) if isinstance(body, dict | list) else _param(loc)
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
        param = f"{param}.{tag}" if param and tag else (param or tag or None)
    return param


def _most_telling(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the errors about the first field in error, the deepest, and at equal depth one that is not a mere
    type mismatch: pydantic lists every branch of a union, and the branch that went furthest into the value is
    the one the client meant (`[{"type": "text"}]` lacks a `text`, rather than not being a string)."""
    if not errors:
        return {"loc": (), "msg": "Invalid request", "type": ""}
    field = errors[0].get("loc", ())[:1]
    same_field = [e for e in errors if e.get("loc", ())[:1] == field]
    return max(same_field, key=lambda e: (len(e.get("loc", ())), not str(e.get("type", "")).endswith("_type")))


def validation_error(exc: RequestValidationError) -> AzureError:
    first = _most_telling(list(exc.errors()))
    if first.get("type") == "json_invalid":
        return bad_request("We could not parse the JSON body of your request. (HINT: This likely means you "
                           "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                           "but what was sent was not valid JSON.)", None, "BadRequest")
    param = _locate(first, exc.body)
    if first.get("type") == "missing":
        return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    message = first.get("msg", "Invalid value")
    if first.get("type") == "unsupported_parameter":
        return bad_request(message, param, "unsupported_parameter")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return bad_request(f"Invalid value for '{param}': {message}.".replace("..", "."), param, "invalid_value")


async def azure_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AzureError)
    return error_response(exc)


async def validation_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith("/subscriptions/"):  # the management plane answers as ARM does
        version = request.query_params.get("api-version", "")
        if exc.status_code == 405:
            return error_response(AzureError(405, "MethodNotAllowed",
                                             f"The requested method '{request.method}' is not allowed here."))
        return error_response(AzureError(
            404, "InvalidResourceType", "The resource type could not be found in the namespace "
            f"'Microsoft.CognitiveServices' for api version '{version}'."))
    if exc.status_code == 405:
        return error_response(AzureError(405, "405", "Method not allowed"))
    return error_response(resource_not_found())


async def unexpected_error_handler(_: Request, exc: Exception) -> Response:
    # never a traceback on the wire; the server log has it
    return error_response(AzureError(500, "InternalServerError",
                                     "The server had an error while processing your request. Sorry about that!"))
