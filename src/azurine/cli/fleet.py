"""`azurine fleet server create|show|list|delete`: the model servers of a subscription (`Azurine.Fleet/modelServers`)
over ARM, so that a remote Azurine's registry is managed as a local one's. The registry is the operator's: the
built-in administrator's token (the default, minted from `--data-dir`) or an Owner's at the subscription."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from azurine.cli.arm_client import DEFAULT_ENDPOINT, DEFAULT_SUBSCRIPTION
from azurine.cli.manage import (
    CaBundle,
    Column,
    DataDir,
    Endpoint,
    Output,
    OutputFormat,
    Subscription,
    Token,
    arm,
    dig,
    show,
)

FLEET_VERSION = "2025-06-01"
app = typer.Typer(help="The model servers deployments run on, by region and data zone.", no_args_is_help=True)
server_app = typer.Typer(help="Model servers (Azurine.Fleet/modelServers).", no_args_is_help=True)
app.add_typer(server_app, name="server")
ServerName = Annotated[str, typer.Option("--name", "-n", help="The model server's name.")]
COLUMNS: list[Column] = [
    ("Name", dig("name")), ("Kind", dig("properties.kind")), ("Region", dig("properties.region")),
    ("DataZone", dig("properties.dataZone")), ("Capacity", dig("properties.capacity")),
    ("BaseUrl", dig("properties.baseUrl")), ("Circuit", dig("properties.health.circuit")),
]


def _path(subscription: str, name: str | None = None) -> str:
    where = f"/subscriptions/{subscription}/providers/Azurine.Fleet/modelServers"
    return f"{where}/{name}?api-version={FLEET_VERSION}" if name else f"{where}?api-version={FLEET_VERSION}"


def _models(values: list[str]) -> list[dict[str, Any]]:
    """`NAME`, `NAME=SERVED_NAME`, and either with `:PTUS`: the catalog's name, the one the server knows the model by,
    and the PTUs of it the server carries (what provisioned deployments may reserve there)."""
    models = []
    for value in values:
        named, colon, ptus = value.rpartition(":")
        if not colon or not ptus.isdigit():  # no PTUs given (a served name may hold a colon itself)
            named, ptus = value, ""
        name, _, served = named.partition("=")
        models.append({"name": name, **({"servedName": served} if served else {}),
                       **({"ptus": int(ptus)} if ptus else {})})
    return models


@server_app.command("create")
def server_create(
    name: ServerName,
    base_url: Annotated[str, typer.Option(help="The server's OpenAI-compatible base URL, e.g. http://host:8000/v1.")],
    region: Annotated[str, typer.Option("--region", "-l", help="The Azure region it stands for, e.g. westeurope.")],
    model: Annotated[list[str], typer.Option(
        help="A model it serves, NAME or NAME=SERVED_NAME, with :PTUS for the PTUs of it the server carries; repeat "
             "for more.")],
    kind: Annotated[str, typer.Option(help="vLLM, llama-server or OpenAI-compatible.")] = "vLLM",
    capacity: Annotated[int, typer.Option(help="Sequences it runs at once.")] = 8,
    priority: Annotated[bool, typer.Option(help="It orders its queue by vLLM's priority field.")] = False,
    data_zone: Annotated[str | None, typer.Option(help="US or EU; checked against the region.")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="A file holding the server's key (sealed at rest).")] = None,
    probe_path: Annotated[str | None, typer.Option(help="The health probe's path, e.g. /health.")] = None,
    probe_interval: Annotated[int | None, typer.Option(help="Seconds between probes (10).")] = None,
    probe_timeout: Annotated[int | None, typer.Option(help="Seconds a probe may take (2).")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Register a model server, or replace the one of that name."""
    properties: dict[str, Any] = {"baseUrl": base_url, "kind": kind, "region": region, "models": _models(model),
                                  "capacity": capacity, "priority": priority}
    if data_zone is not None:
        properties["dataZone"] = data_zone
    if api_key_file is not None:
        properties["apiKey"] = api_key_file.read_text().strip()
    probe = {k: v for k, v in (("path", probe_path), ("intervalSeconds", probe_interval),
                               ("timeoutSeconds", probe_timeout)) if v is not None}
    if probe:
        properties["healthProbe"] = probe
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("PUT", _path(subscription, name), {"properties": properties}), output, COLUMNS)


@server_app.command("show")
def server_show(
    name: ServerName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """One model server, with its health as the answering replica sees it."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("GET", _path(subscription, name)), output, COLUMNS)


@server_app.command("list")
def server_list(
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The subscription's model servers."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("GET", _path(subscription))["value"], output, COLUMNS)


@server_app.command("delete")
def server_delete(
    name: ServerName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None,
) -> None:
    """Remove a model server; requests in flight on it finish there."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        client.call("DELETE", _path(subscription, name))


MAX_APPLIED = 256  # servers in one file: a subscription's most


@server_app.command("apply")
def server_apply(
    file: Annotated[Path, typer.Option(help="A JSON list of {name, properties}, as ARM takes a server's body.")],
    api_keys_dir: Annotated[Path | None, typer.Option(
        help="A directory with a file per server name holding its key (a mounted secret).")] = None,
    prune: Annotated[bool, typer.Option(help="Remove the subscription's servers the file does not list.")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Make the subscription's registry what the file says: the registry as configuration (the Helm chart's)."""
    try:
        servers = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot read {file}: {error}", param_hint="--file") from None
    if not isinstance(servers, list) or len(servers) > MAX_APPLIED or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("properties"), dict)
            for s in servers):
        raise typer.BadParameter(f"the file holds a list of at most {MAX_APPLIED} {{name, properties}} objects",
                                 param_hint="--file")
    applied = []
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        for server in servers:
            properties = dict(server["properties"])
            key = api_keys_dir / server["name"] if api_keys_dir is not None else None
            if key is not None and key.is_file():
                properties["apiKey"] = key.read_text().strip()
            applied.append(client.call("PUT", _path(subscription, server["name"]), {"properties": properties}))
        if prune:
            wanted = {s["name"].lower() for s in servers}
            for present in client.call("GET", _path(subscription))["value"]:
                if present["name"].lower() not in wanted:
                    client.call("DELETE", _path(subscription, present["name"]))
    show(applied, output, COLUMNS)
