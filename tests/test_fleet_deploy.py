"""The deployment artefacts hold together without a cluster: the Helm chart's templates, rendered by the small subset
of Go templates they use, are Kubernetes manifests of the right shape whose probes, ports, selectors, secrets and
commands name things that exist; the Dockerfile starts a command the CLI has."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from azurine.api.app import metrics_app
from azurine.api.management.metadata import router as metadata_router
from azurine.cli.main import app as cli_app

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "azurine"
RELEASE = "prod"
ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
CONTROL = re.compile(r"^\{\{-?\s*(if|else|end)\b\s*(.*?)\s*-?\}\}$")
COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)


def lookup(values: dict[str, Any], path: str) -> Any:
    found: Any = {"Values": values, "Release": {"Name": RELEASE, "Namespace": "default"},
                  "Chart": yaml.safe_load((CHART / "Chart.yaml").read_text())}
    for part in path.strip(".").split("."):
        found = {k[0].upper() + k[1:]: v for k, v in found.items()}[part[0].upper() + part[1:]] \
            if path.startswith(".Chart") else found[part]
    return found


def evaluate(expression: str, values: dict[str, Any]) -> Any:
    """A pipeline of the forms the chart uses: a value, `include "azurine.fullname" .`, `toJson`, `quote`."""
    first, *pipes = [part.strip() for part in expression.split("|")]
    if first == 'include "azurine.fullname" .':
        value: Any = f"{RELEASE}-azurine"
    elif first.startswith("toJson "):
        value = json.dumps(lookup(values, first.removeprefix("toJson ")), separators=(",", ":"))
    elif first.startswith("."):
        value = lookup(values, first)
    else:
        raise AssertionError(f"a template action the chart's renderer does not know: {expression}")
    for pipe in pipes:
        if pipe != "quote":
            raise AssertionError(f"a pipe the chart's renderer does not know: {pipe}")
        value = json.dumps(str(value))
    return value


def shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def render(template: str, values: dict[str, Any]) -> str:
    lines, branches = [], []
    for line in COMMENT.sub("", template).splitlines():
        control = CONTROL.match(line.strip())
        if control:
            word, condition = control.groups()
            if word == "if":
                branches.append(bool(evaluate(condition, values)))
            elif word == "else":
                branches[-1] = not branches[-1]
            else:
                branches.pop()
            continue
        if all(branches):
            lines.append(ACTION.sub(lambda action: shown(evaluate(action.group(1), values)), line))
    assert not branches, "an if without its end"
    return "\n".join(lines)


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def manifests(values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for template in sorted((CHART / "templates").glob("*.yaml")):
        for document in yaml.safe_load_all(render(template.read_text(), values)):
            if document:
                yield document


def by_kind(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for manifest in manifests(values):
        found[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
    return found


METADATA = {"type": "object", "required": ["name", "labels"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
CONTAINER = {"type": "object", "required": ["name", "image"],
             "properties": {"name": {"type": "string"}, "image": {"type": "string"},
                            "args": {"type": "array", "items": {"type": "string"}},
                            "ports": {"type": "array", "items": {"type": "object",
                                                                 "required": ["name", "containerPort"],
                                                                 "properties": {"containerPort": {"type": "integer"}}}},
                            "env": {"type": "array", "items": {"type": "object", "required": ["name"]}}}}
POD = {"type": "object", "required": ["metadata", "spec"],
       "properties": {"spec": {"type": "object", "required": ["containers"],
                               "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER}}}}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Deployment": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
                   "properties": {"apiVersion": {"const": "apps/v1"}, "metadata": METADATA,
                                  "spec": {"type": "object", "required": ["replicas", "selector", "template"],
                                           "properties": {"replicas": {"type": "integer", "minimum": 1},
                                                          "template": POD}}}},
    "Service": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
                "properties": {"apiVersion": {"const": "v1"}, "metadata": METADATA,
                               "spec": {"type": "object", "required": ["selector", "ports"]}}},
    "PodDisruptionBudget": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
                            "properties": {"apiVersion": {"const": "policy/v1"}, "metadata": METADATA,
                                           "spec": {"type": "object", "required": ["minAvailable", "selector"]}}},
    "ConfigMap": {"type": "object", "required": ["apiVersion", "metadata", "data"],
                  "properties": {"apiVersion": {"const": "v1"}, "metadata": METADATA,
                                 "data": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "Job": {"type": "object", "required": ["apiVersion", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "batch/v1"}, "metadata": METADATA,
                           "spec": {"type": "object", "required": ["template"], "properties": {"template": POD}}}},
}


def options_of(*path: str) -> set[str]:
    command: Any = typer.main.get_command(cli_app)
    for name in path:  # typer carries its own copy of Click: a group is known by its subcommands
        command = command.commands[name]
    return {option for param in command.params for option in [*param.opts, *param.secondary_opts]}


def check_args(args: list[str], *command: str) -> None:
    assert args[:len(command)] == list(command)
    known = options_of(*command)
    given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    assert given <= known, f"{' '.join(command)} has no {given - known}"


def test_the_chart_files_are_yaml_of_the_right_shape() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "azurine" and chart["version"]
    values = default_values()
    assert values["gateway"]["replicas"] >= 2 and values["podDisruptionBudget"]["minAvailable"] >= 1


@pytest.mark.parametrize("claim", ["", "models"])
def test_every_template_renders_to_a_valid_manifest(claim: str) -> None:
    values = default_values()
    values["models"]["existingClaim"] = claim
    found = list(manifests(values))
    assert {m["kind"] for m in found} == set(SCHEMAS)
    for manifest in found:
        jsonschema.validate(manifest, SCHEMAS[manifest["kind"]])
        if manifest["kind"] == "Deployment":
            spec = manifest["spec"]
            assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
            volume = spec["template"]["spec"]["volumes"][0]
            assert ("persistentVolumeClaim" in volume) is bool(claim)


def test_the_gateways_probes_ask_real_endpoints_on_their_own_ports() -> None:
    values = default_values()
    gateway = by_kind(values)[f"Deployment/{RELEASE}-azurine-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    api_paths = {route.path for route in metadata_router.routes}  # type: ignore[attr-defined]
    metrics_paths = {route.path for route in metrics_app().routes}  # type: ignore[attr-defined]
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert readiness["port"] == "http" and readiness["path"].split("?")[0] in api_paths
    assert liveness["port"] == "metrics" and liveness["path"] in metrics_paths
    args = container["args"]
    assert args[args.index("--port") + 1] == str(ports["http"])
    assert args[args.index("--metrics-listen") + 1].endswith(f":{ports['metrics']}")
    check_args(args, "serve")
    assert args[args.index("--role") + 1] == "gateway"


def test_the_worker_runs_the_worker_role() -> None:
    worker = by_kind(default_values())[f"Deployment/{RELEASE}-azurine-worker"]
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    check_args(args, "serve")
    assert args[args.index("--role") + 1] == "worker"


def test_the_service_and_the_disruption_budget_select_the_gateways() -> None:
    found = by_kind(default_values())
    pod = found[f"Deployment/{RELEASE}-azurine-gateway"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    budget = found[f"PodDisruptionBudget/{RELEASE}-azurine-gateway"]["spec"]
    assert budget["selector"]["matchLabels"] == labels
    assert budget["minAvailable"] < found[f"Deployment/{RELEASE}-azurine-gateway"]["spec"]["replicas"]
    service = found[f"Service/{RELEASE}-azurine"]["spec"]
    assert service["selector"] == labels
    assert service["ports"][0]["targetPort"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}


def test_database_redis_and_the_service_key_come_from_the_operators_secrets() -> None:
    values = default_values()
    for name in ("gateway", "worker"):
        container = by_kind(values)[f"Deployment/{RELEASE}-azurine-{name}"]["spec"]["template"]["spec"][
            "containers"][0]
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert secrets == {
            "AZURINE_DATABASE_URL": {"name": values["database"]["existingSecret"], "key": values["database"]["key"]},
            "AZURINE_REDIS_URL": {"name": values["redis"]["existingSecret"], "key": values["redis"]["key"]},
            "AZURINE_SERVICE_KEY": {"name": values["serviceKey"]["existingSecret"],
                                    "key": values["serviceKey"]["key"]}}


def test_the_model_server_registry_is_configuration_the_cli_applies() -> None:
    values = default_values()
    values["fleet"]["servers"] = [{"name": "vllm-weu", "properties": {
        "baseUrl": "http://vllm.weu:8000/v1", "kind": "vLLM", "region": "westeurope", "capacity": 64,
        "models": [{"name": "Qwen2.5-Coder-0.5B-Instruct", "servedName": "Qwen/Qwen2.5-Coder-0.5B-Instruct"}]}}]
    values["fleet"]["apiKeysSecret"] = "fleet-keys"
    found = by_kind(values)
    config = found[f"ConfigMap/{RELEASE}-azurine-fleet"]
    assert json.loads(config["data"]["servers.json"]) == values["fleet"]["servers"]
    job = found[f"Job/{RELEASE}-azurine-fleet-apply"]
    assert "post-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    check_args(args, "fleet", "server", "apply")
    assert f"--endpoint=http://{RELEASE}-azurine:8080" in args and "--prune" in args
    assert {"secret": {"secretName": "fleet-keys"}, "name": "keys"} in pod["volumes"]


def test_the_dockerfile_starts_a_gateway_the_cli_knows() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("#", " "))]
    final = [i for i in instructions if i[0] in ("ENTRYPOINT", "CMD", "USER", "EXPOSE")]
    entry = json.loads(next(i[1] for i in final if i[0] == "ENTRYPOINT"))
    command = json.loads(next(i[1] for i in final if i[0] == "CMD"))
    assert entry == ["azurine"]
    check_args(command, "serve")
    assert next(i[1] for i in final if i[0] == "USER") != "0"
    values = default_values()
    exposed = {int(p) for p in next(i[1] for i in final if i[0] == "EXPOSE").split()}
    assert exposed == {values["gateway"]["port"], values["gateway"]["metricsPort"]}
