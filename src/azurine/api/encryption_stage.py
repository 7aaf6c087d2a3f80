"""The encryption stage of every data-plane request: an account whose customer-managed key cannot be used now
(disabled, deleted, access withdrawn, its vault unreachable) is refused before anything else is done for it.

Azure documents no error body for this case on the data plane; Azurine answers 403 with the code
`KeyVaultKeyNotAccessible` and a message that names the key and the reason. Accounts on the service key pass
without a lookup; for the others the answer is what memory holds of their data key, looked up again once
that expires (`AZURINE_KEY_CACHE_SECONDS`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from azurine.api.errors import AzureError
from azurine.storage.data_keys import DataKey, DataKeys
from azurine.storage.envelope import EnvelopeSealer
from azurine.storage.key_providers import CUSTOMER_MANAGED, KeyUnavailable
from azurine.storage.state import AccountRecord

KEY_NOT_ACCESSIBLE = "KeyVaultKeyNotAccessible"


def key_not_accessible(error: KeyUnavailable) -> AzureError:
    return AzureError(403, KEY_NOT_ACCESSIBLE,
                      f"The customer-managed key of this resource cannot be used: {error}. Its data cannot be read "
                      "or written, and its requests are refused, until access to the key is restored.")


def data_keys(app: Starlette) -> DataKeys | None:
    services = getattr(app.state, "services", None)
    sealer = getattr(getattr(services, "files", None), "sealer", None)
    return sealer.keys if isinstance(sealer, EnvelopeSealer) else None


def customer_managed(account: AccountRecord) -> bool:
    encryption = account.properties.get("encryption")
    return isinstance(encryption, dict) and encryption.get("keySource") == CUSTOMER_MANAGED


async def check_key(request: Request, account: AccountRecord) -> None:
    """Refuse, with 403, a request to an account whose customer-managed key is not accessible."""
    if not customer_managed(account):
        return
    keys = data_keys(request.app)
    if keys is None:
        return
    known = keys.peek(account.id)
    if isinstance(known, DataKey):
        return
    if isinstance(known, KeyUnavailable):
        raise key_not_accessible(known)
    try:
        await run_in_threadpool(keys.get, account.id)
    except KeyUnavailable as error:
        raise key_not_accessible(error) from None
