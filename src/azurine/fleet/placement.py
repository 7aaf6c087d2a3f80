"""Where the deployment stage hands a request's engine to the fleet, and where the place it ran is told.

Only a deployment that names no placement of its own is the fleet's: one with an `upstream_url`, the operator's
`model_path` or a fine-tuned model's adapter runs where it says, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request

from azurine.api.middleware import REGION_SCOPE_KEY, ServedRegion
from azurine.catalog import ModelSpec
from azurine.engines.base import Engine
from azurine.fleet.member import Place
from azurine.fleet.service import Fleet
from azurine.storage.state import AccountRecord, DeploymentRecord
from azurine.telemetry.request_metrics import observation

FLEET_STATE = "fleet"


def fleet_of(request: Request) -> Fleet | None:
    found = getattr(request.app.state, FLEET_STATE, None)
    return found if isinstance(found, Fleet) else None


def placed(request: Request, account: AccountRecord, deployment: DeploymentRecord, model: ModelSpec, engine: Engine,
           adapted: bool, models_dir: Path) -> Engine:
    """The engine the request runs on: `engine` itself, or the fleet's routing of the model when a server of the
    account's subscription serves it."""
    fleet = fleet_of(request)
    if fleet is None or deployment.upstream_url or deployment.model_path or adapted:
        return engine
    scope = request.scope

    def ran_at(place: Place) -> None:
        _told(scope, place)

    def installed() -> bool:  # asked only where the fleet serves the model and the gateway's region is allowed
        return model.path_in(models_dir).exists()

    routed = fleet.route(account.subscription_id, account.location, deployment.sku_name, model, engine, installed,
                         ran_at)
    return routed if routed is not None else engine


def _told(scope: Any, place: Place) -> None:
    served = scope.get("state", {}).get(REGION_SCOPE_KEY)
    if isinstance(served, ServedRegion):
        served.shown = place.shown_region
    seen = observation(scope)
    if seen is not None:
        seen.processing_region = place.region
