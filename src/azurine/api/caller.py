"""The caller a data-plane request becomes once the opening stages have let it in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from azurine.api.context import batch_line, resolve_account, services
from azurine.api.encryption_stage import check_key
from azurine.api.identity_stage import account_resource_id, identify
from azurine.api.network_stage import check_network, shown_address
from azurine.api.surface import Surface
from azurine.storage.state import AccountRecord
from azurine.telemetry.request_metrics import observation


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, once the opening stages have let it in."""

    account: AccountRecord
    version: str  # the api-version it is answered under
    surface: Surface
    kind: Literal["online", "batch"]  # a batch line comes from this process's batch worker, never from a socket

    @property
    def online(self) -> bool:
        return self.kind == "online"


async def admit_caller(request: Request, surface: Surface) -> Caller:
    """api-version → account → network → encryption → identity. A batch line was authorised when its batch was
    created, on the account its worker addresses; its network is this process."""
    version = surface.check_version(request.query_params.get("api-version"))
    account = await resolve_account(request)
    caller = Caller(account, version, surface, "batch" if batch_line(request) else "online")
    svc = services(request)
    seen = observation(request.scope)
    if seen is not None and caller.online:  # a batch line is the batch's work, not a call of its own
        seen.account_id, seen.region = account.id, account.location
        seen.resource_id = account_resource_id(account)
        seen.caller_ip = shown_address(request, svc.network)
    check_network(request, account, svc.network_rules, svc.network)
    if caller.online:
        await check_key(request, account)
        await identify(request, account, surface.bearer_keys, svc.store, svc.issuers, svc.access,
                       svc.verified_tokens)
    return caller
