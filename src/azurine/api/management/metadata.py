"""`GET /metadata/endpoints`: the cloud's endpoints, as ARM publishes them, so that `az cloud register
--endpoint-resource-manager` and the Azure SDKs discover the rest from the management URL alone.

Azurine is its own management plane and its own token issuer, so every endpoint it serves is the URL it was
reached at. Endpoints of services Azurine does not run are left out, as ARM leaves out what a cloud lacks."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.sse import AzureJSONResponse

router = APIRouter()
CLOUD_NAME = "Azurine"
# az asks tokens for the first, as ARM lists it first for Azure's public cloud (both are MANAGEMENT_AUDIENCES)
AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")


def endpoints(base: str) -> dict[str, object]:
    return {
        "name": CLOUD_NAME,
        "resourceManager": base,
        "portal": base,
        "authentication": {"loginEndpoint": base, "audiences": list(AUDIENCES), "tenant": "common",
                           "identityProvider": "AAD"},
        "suffixes": {},
    }


# az joins its endpoint and the path with a slash of its own: `https://host:port//metadata/endpoints`
@router.get("/metadata/endpoints")
@router.get("//metadata/endpoints", include_in_schema=False)
async def metadata_endpoints(request: Request) -> Response:
    """Any api-version: the document is the same in all of them, and a discovery call has no token to refuse."""
    return AzureJSONResponse(endpoints(str(request.base_url).rstrip("/") + "/"))
