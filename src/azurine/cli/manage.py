"""`azurine account …`, `azurine usage …`, `azurine rai-policy …`: `az cognitiveservices`-shaped commands.

They call a running Azurine's ARM API over HTTP(S), so they manage a remote server as well as a local one.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from azurine import settings_table
from azurine.cli.arm_client import (
    DEFAULT_ENDPOINT,
    DEFAULT_SUBSCRIPTION,
    MANAGEMENT_RESOURCE,
    ArmClient,
    ArmError,
    Resource,
    Unreachable,
)
from azurine.config import Settings


class Output(StrEnum):
    json = "json"
    table = "table"


class Kind(StrEnum):
    OpenAI = "OpenAI"
    AIServices = "AIServices"


class KeyName(StrEnum):
    key1 = "key1"
    key2 = "key2"


CONNECTION = "Connection"
Endpoint = Annotated[str, typer.Option("--endpoint", envvar=settings_table.envvar("AZURINE_ENDPOINT"),
                                       rich_help_panel=CONNECTION, help="The Azurine server's base URL.")]
Subscription = Annotated[str, typer.Option("--subscription", envvar=settings_table.envvar("AZURINE_SUBSCRIPTION"),
                                           rich_help_panel=CONNECTION, help="The subscription id.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar=settings_table.envvar("AZURINE_TOKEN"), rich_help_panel=CONNECTION, show_default=False,
    help="A management-plane bearer token; without one, a token is minted from the database in --data-dir.")]
CaBundle = Annotated[Path | None, typer.Option(
    "--ca-bundle", envvar=settings_table.envvar("AZURINE_CA_BUNDLE"), exists=True, dir_okay=False,
    rich_help_panel=CONNECTION,
    help="A PEM file of certificates to trust for HTTPS, e.g. the server's self-signed certificate.")]
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", rich_help_panel=CONNECTION, show_default=False,
    help="The server's data directory, to mint a token when --token is absent (default: ./azurine-data).")]
OutputFormat = Annotated[Output, typer.Option("--output", "-o", help="json: the ARM resource; table: key fields.")]
AccountName = Annotated[str, typer.Option("--name", "-n", help="The account's name.")]
Group = Annotated[str, typer.Option("--resource-group", "-g", help="The resource group.")]
DeploymentName = Annotated[str, typer.Option("--deployment-name", help="The deployment's name.")]
PolicyName = Annotated[str, typer.Option("--policy-name", help="The RAI policy's name.")]

account_app = typer.Typer(help="Accounts, their keys and deployments, as `az cognitiveservices account`.",
                          no_args_is_help=True)
account_keys_app = typer.Typer(help="An account's keys, as `az cognitiveservices account keys`.",
                               no_args_is_help=True)
deployment_app = typer.Typer(help="An account's deployments.", no_args_is_help=True)
usage_app = typer.Typer(help="Quota usage in a location.", no_args_is_help=True)
rai_app = typer.Typer(help="An account's RAI (content filter) policies.", no_args_is_help=True)
account_app.add_typer(account_keys_app, name="keys")
account_app.add_typer(deployment_app, name="deployment")


def register_management(app: typer.Typer) -> None:
    app.add_typer(account_app, name="account")
    app.add_typer(usage_app, name="usage")
    app.add_typer(rai_app, name="rai-policy")


class NoToken(Exception):
    pass


def _local_token(data_dir: Path | None) -> str:
    """A token from the server's own database, as `azurine token get` mints it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from azurine.identity.tokens import issue_token
    from azurine.storage.database import make_engine, migrate
    from azurine.storage.state import StateStore

    settings = Settings.load(data_dir)
    url = make_url(settings.database_url)
    # minting into a fresh database would only give a token the server does not know
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        raise NoToken(f"No token: pass --token (or set AZURINE_TOKEN), or point --data-dir at the server's data "
                      f"directory; there is no database in {settings.data_dir}.")
    try:
        engine = make_engine(settings.database_url)
        migrate(engine)
        token, _ = issue_token(StateStore(engine), MANAGEMENT_RESOURCE)
    except SQLAlchemyError as error:
        raise NoToken(f"No token: cannot read the server's database to mint one: {str(error).splitlines()[0]}") \
            from error
    engine.dispose()
    return token


@contextmanager
def arm(endpoint: str, subscription: str, token: str | None, ca_bundle: Path | None,
        data_dir: Path | None) -> Iterator[ArmClient]:
    """A client for the command's body; ARM errors and unreachable endpoints become one line and exit 1."""
    try:
        client = ArmClient(endpoint, subscription, token or _local_token(data_dir), ca_bundle)
    except ssl.SSLError as error:
        raise typer.BadParameter(f"cannot load certificates from {ca_bundle}: {error}",
                                 param_hint="--ca-bundle") from error
    except NoToken as error:
        typer.echo(f"ERROR: {error}", err=True)
        raise typer.Exit(1) from None
    try:
        yield client
    except ArmError as error:
        typer.echo(f"ERROR: ({error.code}) {error.message}", err=True)
        raise typer.Exit(1) from None
    except Unreachable as error:
        typer.echo(f"ERROR: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()


# output

Column = tuple[str, Callable[[Resource], Any]]


def dig(path: str) -> Callable[[Resource], Any]:
    """A getter for a dotted path such as `properties.model.name`; missing fields read as empty."""
    def get(resource: Resource) -> Any:
        value: Any = resource
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return "" if value is None else value
    return get


def resource_group(resource: Resource) -> str:
    parts = str(resource.get("id", "")).split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else ""


ACCOUNT_COLUMNS: list[Column] = [
    ("Name", dig("name")), ("ResourceGroup", resource_group), ("Kind", dig("kind")), ("Location", dig("location")),
    ("Sku", dig("sku.name")), ("Endpoint", dig("properties.endpoint")),
    ("ProvisioningState", dig("properties.provisioningState")),
]
DEPLOYMENT_COLUMNS: list[Column] = [
    ("Name", dig("name")), ("Model", dig("properties.model.name")), ("Version", dig("properties.model.version")),
    ("Format", dig("properties.model.format")), ("Sku", dig("sku.name")), ("Capacity", dig("sku.capacity")),
    ("RaiPolicy", dig("properties.raiPolicyName")), ("ProvisioningState", dig("properties.provisioningState")),
]
KEY_COLUMNS: list[Column] = [("Key1", dig("key1")), ("Key2", dig("key2"))]
MODEL_COLUMNS: list[Column] = [
    ("Name", dig("name")), ("Version", dig("version")), ("Format", dig("format")),
    ("LifecycleStatus", dig("lifecycleStatus")), ("MaxCapacity", dig("maxCapacity")),
]
USAGE_COLUMNS: list[Column] = [
    ("Name", dig("name.value")), ("CurrentValue", dig("currentValue")), ("Limit", dig("limit")),
    ("Unit", dig("unit")),
]
POLICY_COLUMNS: list[Column] = [
    ("Name", dig("name")), ("Mode", dig("properties.mode")), ("BasePolicy", dig("properties.basePolicyName")),
    ("ContentFilters", lambda p: len(dig("properties.contentFilters")(p) or [])),
    ("CustomBlocklists", lambda p: len(dig("properties.customBlocklists")(p) or [])),
]


def show(result: Resource | list[Resource], output: Output, columns: list[Column]) -> None:
    if output is Output.json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(*(header for header, _ in columns))
    for row in result if isinstance(result, list) else [result]:
        # Text, not markup: a "[" in a name or message must print as itself
        table.add_row(*(Text(str(get(row))) for _, get in columns))
    # piped tables are read by scripts and grep, so they are not wrapped at 80 columns
    (Console() if sys.stdout.isatty() else Console(width=250)).print(table)


def parse_tags(values: list[str] | None) -> dict[str, str] | None:
    if values is None:
        return None
    tags: dict[str, str] = {}
    for value in values:
        key, _, tag = value.partition("=")
        if not key:
            raise typer.BadParameter(f"'{value}' is not key[=value]", param_hint="--tags")
        tags[key] = tag
    return tags


def read_policy(path: Path) -> Resource:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{path} is not a JSON file: {error}", param_hint="--policy-file") from error
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{path} holds no JSON object", param_hint="--policy-file")
    # the file may hold the whole resource or just its properties
    return body if "properties" in body else {"properties": body}


# accounts


@account_app.command("create")
def account_create(
    name: AccountName, resource_group: Group,
    location: Annotated[str, typer.Option("--location", "-l", help="The account's location, e.g. eastus.")],
    kind: Annotated[Kind, typer.Option(help="The account's kind.")] = Kind.OpenAI,
    sku: Annotated[str, typer.Option(help="The account's SKU.")] = "S0",
    custom_domain: Annotated[str | None, typer.Option(help="The custom subdomain name.")] = None,
    tags: Annotated[list[str] | None, typer.Option(help="A tag as key[=value]; repeat for more.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Create an account, or update it if it exists."""
    parsed_tags = parse_tags(tags)
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.create_account(resource_group, name, kind=kind.value, sku=sku, location=location,
                                   custom_domain=custom_domain, tags=parsed_tags), output, ACCOUNT_COLUMNS)


@account_app.command("list")
def account_list(
    resource_group: Annotated[str | None, typer.Option("--resource-group", "-g",
                                                       help="Only this resource group.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The subscription's accounts, or one resource group's."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.list_accounts(resource_group), output, ACCOUNT_COLUMNS)


@account_app.command("show")
def account_show(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """One account."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.get_account(resource_group, name), output, ACCOUNT_COLUMNS)


@account_app.command("delete")
def account_delete(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None,
) -> None:
    """Delete an account and its deployments."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        client.delete_account(resource_group, name)


@account_app.command("list-models")
def account_list_models(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The models the account can deploy, with their SKUs and capacities."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.list_account_models(resource_group, name), output, MODEL_COLUMNS)


@account_keys_app.command("list")
def keys_list(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The account's two keys."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(dict(client.list_keys(resource_group, name)), output, KEY_COLUMNS)


@account_keys_app.command("regenerate")
def keys_regenerate(
    name: AccountName, resource_group: Group,
    key_name: Annotated[KeyName, typer.Option(case_sensitive=False, help="The key to replace.")],
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Replace one key; the old one stops working at once."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        keys = client.regenerate_key(resource_group, name, key_name.value.capitalize())
        show(dict(keys), output, KEY_COLUMNS)


# deployments


@deployment_app.command("create")
def deployment_create(
    name: AccountName, resource_group: Group, deployment_name: DeploymentName,
    model_name: Annotated[str, typer.Option(help="The model, e.g. SmolLM2-135M-Instruct.")],
    model_version: Annotated[str, typer.Option(help="The model's version.")],
    model_format: Annotated[str, typer.Option(help="The model's format (publisher), e.g. HuggingFace.")],
    sku_name: Annotated[str, typer.Option(help="The deployment type, e.g. GlobalStandard.")] = "Standard",
    sku_capacity: Annotated[int, typer.Option(min=1, help="Capacity units (1,000 tokens a minute each).")] = 1,
    rai_policy_name: Annotated[str | None, typer.Option(help="The RAI policy (default: Microsoft.DefaultV2).",
                                                        show_default=False)] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Create a deployment, or update it if it exists; it answers requests at once."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.create_deployment(resource_group, name, deployment_name, model_name=model_name,
                                      model_version=model_version, model_format=model_format, sku_name=sku_name,
                                      sku_capacity=sku_capacity, rai_policy=rai_policy_name),
             output, DEPLOYMENT_COLUMNS)


@deployment_app.command("list")
def deployment_list(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The account's deployments."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.list_deployments(resource_group, name), output, DEPLOYMENT_COLUMNS)


@deployment_app.command("show")
def deployment_show(
    name: AccountName, resource_group: Group, deployment_name: DeploymentName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """One deployment."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.get_deployment(resource_group, name, deployment_name), output, DEPLOYMENT_COLUMNS)


@deployment_app.command("delete")
def deployment_delete(
    name: AccountName, resource_group: Group, deployment_name: DeploymentName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None,
) -> None:
    """Delete a deployment; its name stops answering at once."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        client.delete_deployment(resource_group, name, deployment_name)


# quota


@usage_app.command("list")
def usage_list(
    location: Annotated[str, typer.Option("--location", "-l", help="The location, e.g. eastus.")],
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Quota per deployment type and model: capacity in use (currentValue) and the limit."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.list_usages(location), output, USAGE_COLUMNS)


# RAI policies


@rai_app.command("create")
def rai_policy_create(
    name: AccountName, resource_group: Group, policy_name: PolicyName,
    policy_file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="A JSON file with the policy's "
                                              "body, {\"properties\": {\"mode\", \"contentFilters\", …}}.")],
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """Create an RAI policy, or replace it if it exists."""
    body = read_policy(policy_file)
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.put_rai_policy(resource_group, name, policy_name, body), output, POLICY_COLUMNS)


@rai_app.command("list")
def rai_policy_list(
    name: AccountName, resource_group: Group,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """The account's RAI policies."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.list_rai_policies(resource_group, name), output, POLICY_COLUMNS)


@rai_app.command("show")
def rai_policy_show(
    name: AccountName, resource_group: Group, policy_name: PolicyName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None, output: OutputFormat = Output.json,
) -> None:
    """One RAI policy."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        show(client.get_rai_policy(resource_group, name, policy_name), output, POLICY_COLUMNS)


@rai_app.command("delete")
def rai_policy_delete(
    name: AccountName, resource_group: Group, policy_name: PolicyName,
    endpoint: Endpoint = DEFAULT_ENDPOINT, subscription: Subscription = DEFAULT_SUBSCRIPTION, token: Token = None,
    ca_bundle: CaBundle = None, data_dir: DataDir = None,
) -> None:
    """Delete an RAI policy."""
    with arm(endpoint, subscription, token, ca_bundle, data_dir) as client:
        client.delete_rai_policy(resource_group, name, policy_name)
