"""What `images/generations` accepts: DALL-E 3's request, with the types and limits of the 2024-10-21 spec, and the
errors Azure's DALL-E answers with.

A field of the wrong JSON type is refused as every body is (`param` names it); a value DALL-E 3 does not take is
refused by name as Azure refuses it: 400 `invalidPayload`, "Invalid payload: Value for property … is invalid.", with
the values it takes. Fields outside the spec are ignored, as on the other routes.
"""

from __future__ import annotations

from typing import Any

from pydantic import StrictStr

from azurine.api.errors import AzureError
from azurine.api.inference.protocol import Absent, Int, _Body
from azurine.engines.images import SIZES, ImageAsk, LocalBounds

MAX_PROMPT_CHARS = 4000
QUALITIES = ("standard", "hd")
STYLES = ("vivid", "natural")
RESPONSE_FORMATS = ("url", "b64_json")

REJECTED_PROMPT = ("Your request was rejected as a result of our safety system. Your prompt may contain text that is "
                   "not allowed by our safety system.")
FILTERED_IMAGE = "Generated image was filtered as a result of our safety system."


class ImageGenerationRequest(_Body):
    model: StrictStr | None = None  # the deployment, on the v1 surface
    prompt: StrictStr
    n: Absent[Int] = None
    size: Absent[StrictStr] = None
    quality: Absent[StrictStr] = None
    style: Absent[StrictStr] = None
    response_format: Absent[StrictStr] = None
    user: Absent[StrictStr] = None


def invalid_payload(field: str, detail: str) -> AzureError:
    return AzureError(400, "invalidPayload", f"Invalid payload: Value for property {field} is invalid. {detail}",
                      param=field, error_type="invalid_request_error")


def _one_of(body: ImageGenerationRequest, field: str, allowed: tuple[str, ...]) -> str:
    value = getattr(body, field)
    if value is None:
        return allowed[0]
    if value not in allowed:
        raise invalid_payload(field, f"'{value[:64]}' is not one of {', '.join(repr(v) for v in allowed)}.")
    return value


def image_ask(body: ImageGenerationRequest, bounds: LocalBounds | None) -> tuple[ImageAsk, str]:
    """What to draw, and how the answer carries it (`url` or `b64_json`)."""
    if not body.prompt.strip():
        raise invalid_payload("prompt", "It must not be empty.")
    if len(body.prompt) > MAX_PROMPT_CHARS:
        raise invalid_payload("prompt", f"It is {len(body.prompt):,} characters long; the maximum is "
                                        f"{MAX_PROMPT_CHARS:,}.")
    if body.n is not None and body.n != 1:
        raise invalid_payload("n", "dall-e-3 makes one image a request: n must be 1. Make parallel requests for more.")
    size = _one_of(body, "size", SIZES)
    quality = _one_of(body, "quality", QUALITIES)
    style = _one_of(body, "style", STYLES)
    response_format = _one_of(body, "response_format", RESPONSE_FORMATS)
    return ImageAsk(prompt=body.prompt, size=size, quality=quality, style=style,  # type: ignore[arg-type]
                    user=body.user, bounds=bounds), response_format


def rejected_prompt(annotations: dict[str, Any]) -> AzureError:
    """A prompt the content filter blocks, in the words and shape of Azure's DALL-E answer."""
    return AzureError(400, "content_policy_violation", REJECTED_PROMPT, extra={
        "type": "invalid_request_error",
        "inner_error": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": annotations}})


def filtered_image(annotations: dict[str, Any], revised_prompt: str) -> AzureError:
    """An image the filter withholds: what it was drawn from was filtered, or the pipeline's own checker flagged it."""
    return AzureError(400, "contentFilter", FILTERED_IMAGE, extra={
        "type": "invalid_request_error",
        "inner_error": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": annotations,
                        "revised_prompt": revised_prompt}})
