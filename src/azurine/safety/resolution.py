"""An account's RAI policy and custom blocklists as screening reads them: resolved once and kept for a moment
(`StateCache`), each blocklist compiled once per version (`CompiledBlocklists`), never on a request's path
when it can be helped."""

from __future__ import annotations

from azurine.safety.blocklists import BlocklistItem, BlocklistMatcher, BlocklistSet
from azurine.safety.compiled_blocklists import CompiledBlocklists
from azurine.safety.policy import BUILT_IN_PROPERTIES, Policy, resolve
from azurine.storage.cache import StateCache
from azurine.storage.state import AccountRecord, ChildRecord, StateStore


async def account_policy(store: StateStore, cache: StateCache, account: AccountRecord, name: str) -> Policy:
    key = ("rai-policy", account.id, name)
    if name in BUILT_IN_PROPERTIES:
        return cache.read_through(key, lambda: resolve(name))  # type: ignore[return-value]

    def stored() -> Policy:
        record = store.child(account.id, "raiPolicies", name)
        # a deployment whose policy was deleted falls back to the default, as Azure's portal shows it
        return resolve(name, record.properties) if record is not None else resolve("Microsoft.DefaultV2")

    return await cache.read_through_in_thread(key, stored)  # type: ignore[return-value]


async def account_blocklists(store: StateStore, cache: StateCache, compiled: CompiledBlocklists,
                             account: AccountRecord, names: tuple[str, ...]) -> BlocklistMatcher | None:
    """The policy's lists as compiled for their current versions: a lookup of each list's etag (kept for a
    moment), and a compile only for a version that was never compiled in this process."""
    if not names:
        return None

    def current() -> BlocklistSet:
        return BlocklistSet(compiled_blocklist(store, compiled, account.id, record)
                            for record in (store.child(account.id, "raiBlocklists", name) for name in names)
                            if record is not None)

    return await cache.read_through_in_thread(("rai-blocklists", account.id, names),  # type: ignore[return-value]
                                              current)


def compiled_blocklist(store: StateStore, compiled: CompiledBlocklists, account_id: str,
                       record: ChildRecord) -> BlocklistMatcher:
    """The list `record` (a raiBlocklists row) at its etag, compiled from its items if not yet (in a thread)."""
    def items() -> list[BlocklistItem]:
        return [BlocklistItem.from_json(item.properties)
                for item in store.children(account_id, "raiBlocklistItems", record.name)]

    return compiled.get(account_id, record.name, record.etag, items)
