"""What identifying a data-plane caller costs per request: an api-key, a token of Azurine's own issuer (ES256),
and a token of an external OpenID issuer (RS256, keys cached after the first request), each with the RBAC
decision that follows a token.

    .venv/bin/python benchmarks/auth_overhead.py [--runs 20000]

The identity stage runs as the server runs it (`api.identity_stage.identify` on a Starlette request, warm
caches: signing keys, JWKS, role assignments, tokens already verified), in this process, one call after
another; the table gives the mean, p50 and p99 per call, and each path as a ratio of the api-key path. A
client sends one token for up to an hour, so its signature is checked once: the last row is that first
request, each of 500 new tokens seen once.

Target (issue: identity): under 0.2 ms for either a key or a token on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from starlette.requests import Request

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from azurine.api.errors import AzureError  # noqa: E402
from azurine.api.identity_stage import account_resource_id, identify  # noqa: E402
from azurine.identity.access import AccessControl  # noqa: E402
from azurine.identity.issuers import OidcIssuers, directory_of  # noqa: E402
from azurine.identity.tokens import BUILT_IN_DIRECTORY, COGNITIVE_AUDIENCES, issue_token  # noqa: E402
from azurine.storage.access import AccessStore  # noqa: E402
from azurine.storage.database import make_engine, migrate  # noqa: E402
from azurine.storage.state import StateStore  # noqa: E402
from test_token_issuers import Provider  # noqa: E402

OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"


def request(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/openai/deployments/chat/chat/completions",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "query_string": b"",
                    "state": {}})


async def timed(runs: int, call) -> list[float]:
    for _ in range(200):
        await call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    console = Console(width=110)
    data = Path(tempfile.mkdtemp(prefix="azurine-auth-"))
    engine = make_engine(f"sqlite:///{data / 'azurine.db'}")
    migrate(engine)
    store = StateStore(engine)
    account = store.create_account("bench", location="local", subscription_id="sub", resource_group="rg")
    access = AccessControl(AccessStore(engine), ttl_s=3600)  # warm: one read, then the cache
    provider = Provider()
    provider.add_key("k1")
    issuers = OidcIssuers([provider.issuer])
    principal = str(uuid.uuid4())
    for directory in (BUILT_IN_DIRECTORY, directory_of(provider.issuer)):  # one object id in each directory
        AccessStore(engine).put_assignment(str(uuid.uuid4()), account_resource_id(account), OPENAI_USER, principal,
                                           "User", "bench", directory)
    own, _ = issue_token(store, audience=COGNITIVE_AUDIENCES[0], object_id=principal)
    external = provider.token("k1", oid=principal, exp=int(time.time()) + 7200)

    async def call(headers: dict[str, str], refused: bool = False) -> None:
        try:
            await identify(request(headers), account, False, store, issuers, access)
        except AzureError:
            if not refused:
                raise

    fresh = [issue_token(store, audience=COGNITIVE_AUDIENCES[0], object_id=principal)[0] for _ in range(500)]

    async def first_use() -> list[float]:
        times = []
        for token in fresh:
            started = time.perf_counter()
            await call({"authorization": f"Bearer {token}"})
            times.append(time.perf_counter() - started)
        return times

    async def run_all() -> dict[str, list[float]]:
        return {
            "api-key": await timed(args.runs, lambda: call({"api-key": account.key1})),
            "wrong key (refused)": await timed(args.runs, lambda: call({"api-key": "0" * 32}, refused=True)),
            "token, Azurine's issuer (ES256) + RBAC": await timed(args.runs, lambda: call(
                {"authorization": f"Bearer {own}"})),
            "token, OpenID issuer (RS256) + RBAC": await timed(args.runs, lambda: call(
                {"authorization": f"Bearer {external}"})),
            "token first seen: signature checked (500 tokens)": await first_use(),
        }

    try:
        results = asyncio.run(run_all())
    finally:
        provider.server.shutdown()
    base = float(np.mean(results["api-key"]))
    table = Table(title=f"data-plane identity per request, {args.runs} calls each (µs)")
    for column in ("caller", "mean", "p50", "p99", "÷ api-key", "target"):
        table.add_column(column)
    for label, times in results.items():
        values = np.array(times) * 1e6
        table.add_row(label, f"{values.mean():.1f}", f"{np.percentile(values, 50):.1f}",
                      f"{np.percentile(values, 99):.1f}", f"{values.mean() / (base * 1e6):.2f}",
                      "< 200" if "refused" not in label else "")
    console.print(table)


if __name__ == "__main__":
    main()
