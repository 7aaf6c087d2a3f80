"""`azurine group create|show|list|delete`: resource groups over ARM, as `az group`. An account is created only
in a group that exists; the default account's group, `azurine`, is made on first start."""

from __future__ import annotations

from typing import Annotated

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
    parse_tags,
    show,
)

RESOURCES_VERSION = "2024-11-01"
app = typer.Typer(help="Resource groups, as `az group`.", no_args_is_help=True)
GroupName = Annotated[str, typer.Option("--name", "-n", help="The resource group's name.")]
COLUMNS: list[Column] = [("name", lambda g: g["name"]), ("location", lambda g: g["location"]),
           ("state", lambda g: g["properties"]["provisioningState"])]


def _path(subscription: str, name: str | None = None) -> str:
    where = f"/subscriptions/{subscription}/resourcegroups"
    return f"{where}/{name}?api-version={RESOURCES_VERSION}" if name else f"{where}?api-version={RESOURCES_VERSION}"


@app.command("create")
def group_create(
    name: GroupName,
    location: Annotated[str, typer.Option("--location", "-l", help="The group's location, e.g. eastus.")],
    tags: Annotated[list[str] | None, typer.Option(help="A tag as key[=value]; repeat for more.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Create a resource group, or set the tags of the one there."""
    body: dict[str, object] = {"location": location}
    parsed = parse_tags(tags)
    if parsed is not None:
        body["tags"] = parsed
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("PUT", _path(subscription, name), body), output, COLUMNS)


@app.command("show")
def group_show(
    name: GroupName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """One resource group."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("GET", _path(subscription, name)), output, COLUMNS)


@app.command("list")
def group_list(
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The subscription's resource groups."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.call("GET", _path(subscription))["value"], output, COLUMNS)


@app.command("delete")
def group_delete(
    name: GroupName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None,
) -> None:
    """Delete a resource group and every account in it."""
    if not yes and not typer.confirm(f"Delete resource group {name} and every account in it?"):
        raise typer.Exit(1)
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        client.call("DELETE", _path(subscription, name))
