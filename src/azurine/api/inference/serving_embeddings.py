"""Embeddings: strings or token arrays in, float or base64 vectors out."""

from __future__ import annotations

import base64

import numpy as np
from starlette.responses import Response

from azurine.api.context import Target
from azurine.api.errors import bad_request
from azurine.api.inference.protocol import EmbeddingsRequest
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import AzureJSONResponse


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def check_dimensions(body: EmbeddingsRequest, target: Target) -> None:
    if body.dimensions is not None and not target.model.extra.get("dimensions_configurable", False):
        # models with a fixed output size refuse the parameter, as text-embedding-ada-002 does on Azure
        raise bad_request("This model does not support specifying dimensions.", "dimensions", "invalid_value")


async def serve_embeddings(target: Target, body: EmbeddingsRequest, ticket: Ticket) -> Response:
    result = await target.engine.embed(body.inputs(), ticket.order())
    encoding = body.encoding_format or "float"
    return AzureJSONResponse({
        "data": [{"embedding": _encode(v, encoding), "index": i, "object": "embedding"}
                 for i, v in enumerate(result.vectors)],
        "model": target.model.response_model,
        "object": "list",
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    })
