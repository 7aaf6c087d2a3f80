"""Provisioned spillover, as Azure defines it: a provisioned deployment names a standard deployment of the same
account (`properties.spilloverDeploymentName`, or a request's `x-ms-spillover-deployment` header) that serves the
requests it would otherwise refuse with 429 for being at its throughput.

The spillover deployment serves the same model and version, is a Standard, DataZoneStandard or GlobalStandard
deployment, and processes data no more widely than the provisioned one: a ProvisionedManaged deployment spills only
to a Standard one, a DataZoneProvisionedManaged one to Standard or DataZoneStandard, a GlobalProvisionedManaged one
to any of the three. These rules are checked when ARM writes the property, and again when a request spills (the
target may have changed since).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from azurine.fleet.regions import residency
from azurine.quota.capacity import PROVISIONED
from azurine.storage.state import DeploymentRecord

PROPERTY = "spilloverDeploymentName"
REQUEST_HEADER = "x-ms-spillover-deployment"
# the answer's: where the request was sent, the deployment that served it, and the status that made it spill
FROM_HEADER = "x-ms-spillover-from-deployment"
DEPLOYMENT_HEADER = "x-ms-deployment-name"
ERROR_HEADER = "x-ms-spillover-error"
TARGET_SKUS = ("Standard", "DataZoneStandard", "GlobalStandard")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a deployment name, as ARM takes it
WHERE = ("the account's region", "the account's data zone", "any region")


def check_name(value: object) -> str | None:
    """Why `value` is no deployment name, or None."""
    if not isinstance(value, str) or not NAME.match(value):
        return (f"The spillover deployment name '{str(value)[:70]}' is not a deployment name: 1 to 64 letters, "
                "digits, '_', '.' and '-', starting with a letter or digit.")
    return None


@dataclass(frozen=True)
class Source:
    """The provisioned deployment that spills, as written or about to be."""

    name: str
    sku_name: str
    model_name: str
    model_version: str

    @classmethod
    def of(cls, deployment: DeploymentRecord) -> Source:
        return cls(deployment.name, deployment.sku_name, deployment.model_name, deployment.model_version)


def problem(source: Source, name: str, target: DeploymentRecord | None) -> str | None:
    """Why `target` (the deployment named `name` in `source`'s account) cannot take `source`'s spillover, or None."""
    if source.sku_name not in PROVISIONED:
        return (f"The deployment '{source.name}' is a {source.sku_name} deployment: only provisioned deployments "
                "(ProvisionedManaged, GlobalProvisionedManaged, DataZoneProvisionedManaged) spill over.")
    if name.lower() == source.name.lower():
        return f"The deployment '{source.name}' cannot be its own spillover deployment."
    if target is None:
        return f"The spillover deployment '{name}' was not found in this account."
    if target.sku_name not in TARGET_SKUS:
        return (f"The spillover deployment '{target.name}' is a {target.sku_name} deployment: spillover goes to a "
                f"{', '.join(TARGET_SKUS[:-1])} or {TARGET_SKUS[-1]} deployment.")
    if (target.model_name.lower(), target.model_version) != (source.model_name.lower(), source.model_version):
        return (f"The spillover deployment '{target.name}' serves {target.model_name} {target.model_version}, not "
                f"{source.model_name} {source.model_version}: it must serve the same model and version.")
    if residency(target.sku_name) > residency(source.sku_name):
        return (f"The spillover deployment '{target.name}' is {target.sku_name}, whose requests may run in "
                f"{WHERE[residency(target.sku_name)]}, wider than a {source.sku_name} deployment's "
                f"({WHERE[residency(source.sku_name)]}): its data processing must not be wider than the provisioned "
                "deployment's.")
    return None
