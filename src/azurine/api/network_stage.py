"""The network stage of every data-plane request: after the account is known, before its caller is."""

from __future__ import annotations

from starlette.requests import Request

from azurine.api.context import batch_line
from azurine.api.errors import AzureError
from azurine.network import NetworkSettings, RulesCache, Verdict
from azurine.network.rules import IPAddress
from azurine.storage.state import AccountRecord

PUBLIC_ACCESS_DISABLED = "Public access is disabled. Please configure private endpoint."
FIREWALL = "Access denied due to Virtual Network/Firewall rules."


def caller_address(request: Request, settings: NetworkSettings) -> IPAddress | None:
    """The client's address; behind trusted proxies, the one they vouch for."""
    peer = request.scope.get("client")
    return settings.trusted_proxies.client_address(peer[0] if peer else None,
                                                   request.headers.getlist("x-forwarded-for"))


def shown_address(request: Request, settings: NetworkSettings, unknown: str = "") -> str:
    """`caller_address` as logs write it."""
    address = caller_address(request, settings)
    return str(address) if address is not None else unknown


def check_network(request: Request, account: AccountRecord, rules_cache: RulesCache,
                  settings: NetworkSettings) -> None:
    """Refuse, as Azure does with 403, a request the account's public-access switch or firewall keeps out."""
    rules = rules_cache.rules(account.id, account.etag, account.properties)
    if rules.open or batch_line(request):  # a batch worker's lines are calls within this process, not traffic
        return
    verdict = rules.verdict(caller_address(request, settings),
                            private=settings.arrived_privately(request.scope.get("server")))
    if verdict is Verdict.PUBLIC_ACCESS_DISABLED:
        raise AzureError(403, "403", PUBLIC_ACCESS_DISABLED)
    if verdict is Verdict.FIREWALL:
        raise AzureError(403, "403", FIREWALL)
