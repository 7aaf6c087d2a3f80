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
OPERATION_NAMES = {"chat": "chatCompletion", "completion": "completions", "embeddings": "embeddings"}


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


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    # pydantic names the branch of a union it tried ("str", "list[...]", "function-after[...]"); users never wrote those
    parts = [p for p in parts if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "list", "dict")))]
    rendered = ""
    for part in parts:
        rendered += f"[{part}]" if isinstance(part, int) else (f".{part}" if rendered else str(part))
    return rendered or None


def validation_error(exc: RequestValidationError) -> AzureError:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "Invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return bad_request("We could not parse the JSON body of your request. (HINT: This likely means you "
                           "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                           "but what was sent was not valid JSON.)", None, "BadRequest")
    param = _param(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    message = first.get("msg", "Invalid value")
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
