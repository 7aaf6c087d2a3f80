"""A small client for Azurine's ARM routes (`Microsoft.CognitiveServices`), over plain HTTP(S).

It talks only HTTP, so it manages a remote Azurine as well as a local one.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote

import httpx

API_VERSION = "2025-09-01"
PROVIDER = "Microsoft.CognitiveServices"
DEFAULT_ENDPOINT = "http://localhost:8080"
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
MANAGEMENT_RESOURCE = "https://management.azure.com/"

Resource = dict[str, Any]


class Keys(TypedDict):
    key1: str
    key2: str


class ArmError(Exception):
    """An answer in ARM's error envelope, `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"({code}) {message}")
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    """No HTTP answer came back: the endpoint is down, wrong, or its certificate is not trusted."""


def _error_of(response: httpx.Response) -> ArmError:
    try:
        error = response.json().get("error") or {}
        return ArmError(response.status_code, str(error["code"]), str(error.get("message", "")))
    except (ValueError, AttributeError, KeyError, TypeError):
        # not ARM's envelope: a proxy or some other server answered
        text = " ".join(response.text.split())[:200] or response.reason_phrase
        return ArmError(response.status_code, f"HTTP{response.status_code}", text)


class ArmClient:
    """One subscription on one Azurine endpoint, with a bearer token for the management plane."""

    def __init__(self, endpoint: str, subscription: str, token: str, ca_bundle: Path | None = None,
                 timeout: float = 120) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.subscription = subscription
        self._http = httpx.Client(base_url=self.endpoint, verify=verify, timeout=httpx.Timeout(timeout, connect=10),
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ArmClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # paths

    def _provider(self) -> str:
        return f"/subscriptions/{_segment(self.subscription)}/providers/{PROVIDER}"

    def _accounts(self, group: str) -> str:
        return f"/subscriptions/{_segment(self.subscription)}/resourceGroups/{_segment(group)}/providers/{PROVIDER}" \
               "/accounts"

    def _account(self, group: str, account: str) -> str:
        return f"{self._accounts(group)}/{_segment(account)}"

    def call(self, method: str, path: str, body: Resource | None = None) -> Any:
        """Any ARM call on this endpoint; a path that names its own api-version keeps it."""
        return self._request(method, path, body)

    def _request(self, method: str, path: str, body: Resource | None = None) -> Any:
        try:
            # a nextLink already names its api-version
            params = None if "api-version=" in path else {"api-version": API_VERSION}
            response = self._http.request(method, path, params=params, json=body)
        except (httpx.TransportError, httpx.InvalidURL) as error:
            reason = str(error) or type(error).__name__
            if "CERTIFICATE_VERIFY_FAILED" in reason:
                reason += "; trust the server's certificate with --ca-bundle"
            raise Unreachable(f"Cannot reach Azurine at {self.endpoint}: {reason}") from error
        if response.status_code >= 400:
            raise _error_of(response)
        operation = response.headers.get("Azure-AsyncOperation")
        if response.status_code == 202 and operation:
            self._wait(operation)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise ArmError(response.status_code, "InvalidResponse",
                           f"{self.endpoint} answered {method} {path} with something other than JSON; "
                           "is it an Azurine endpoint?") from error

    def _wait(self, operation: str) -> None:
        """Follow an accepted (202) operation to its end, as az does unless told --no-wait."""
        deadline = time.monotonic() + self.timeout
        while True:
            status: Resource = self._request("GET", operation) or {}
            state = status.get("status")
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled"):
                error = status.get("error") or {}
                raise ArmError(200, str(error.get("code") or f"Operation{state}"),
                               str(error.get("message") or f"The operation {operation} ended {state}."))
            if state is None:
                raise ArmError(200, "InvalidResponse", f"The operation {operation} answered without a status.")
            if time.monotonic() > deadline:
                raise ArmError(200, "OperationTimedOut", f"The operation {operation} is still {state}.")
            time.sleep(1)

    def _list(self, path: str) -> list[Resource]:
        """Every page of an ARM list, following `nextLink`."""
        items: list[Resource] = []
        page: Resource | None = self._request("GET", path)
        while page is not None:
            items.extend(page.get("value") or [])
            next_link = page.get("nextLink")
            page = self._request("GET", next_link) if next_link else None
        return items

    # accounts

    def create_account(self, group: str, name: str, *, kind: str, sku: str, location: str,
                       custom_domain: str | None = None, tags: dict[str, str] | None = None) -> Resource:
        body: Resource = {"kind": kind, "sku": {"name": sku}, "location": location, "properties": {}}
        if custom_domain:
            body["properties"]["customSubDomainName"] = custom_domain
        if tags is not None:
            body["tags"] = tags
        account: Resource = self._request("PUT", self._account(group, name), body)
        return account

    def get_account(self, group: str, name: str) -> Resource:
        account: Resource = self._request("GET", self._account(group, name))
        return account

    def list_accounts(self, group: str | None = None) -> list[Resource]:
        return self._list(self._accounts(group) if group else f"{self._provider()}/accounts")

    def delete_account(self, group: str, name: str) -> None:
        self._request("DELETE", self._account(group, name))

    def list_keys(self, group: str, name: str) -> Keys:
        keys: Keys = self._request("POST", f"{self._account(group, name)}/listKeys")
        return keys

    def regenerate_key(self, group: str, name: str, key_name: str) -> Keys:
        keys: Keys = self._request("POST", f"{self._account(group, name)}/regenerateKey", {"keyName": key_name})
        return keys

    def list_account_models(self, group: str, name: str) -> list[Resource]:
        return self._list(f"{self._account(group, name)}/models")

    # deployments

    def _deployment(self, group: str, account: str, name: str) -> str:
        return f"{self._account(group, account)}/deployments/{_segment(name)}"

    def create_deployment(self, group: str, account: str, name: str, *, model_name: str, model_version: str,
                          model_format: str, sku_name: str, sku_capacity: int,
                          rai_policy: str | None = None) -> Resource:
        properties: Resource = {"model": {"format": model_format, "name": model_name, "version": model_version}}
        if rai_policy:
            properties["raiPolicyName"] = rai_policy
        body = {"sku": {"name": sku_name, "capacity": sku_capacity}, "properties": properties}
        deployment: Resource = self._request("PUT", self._deployment(group, account, name), body)
        return deployment

    def get_deployment(self, group: str, account: str, name: str) -> Resource:
        deployment: Resource = self._request("GET", self._deployment(group, account, name))
        return deployment

    def list_deployments(self, group: str, account: str) -> list[Resource]:
        return self._list(f"{self._account(group, account)}/deployments")

    def delete_deployment(self, group: str, account: str, name: str) -> None:
        self._request("DELETE", self._deployment(group, account, name))

    # subscription and location

    def list_usages(self, location: str) -> list[Resource]:
        return self._list(f"{self._provider()}/locations/{_segment(location)}/usages")

    def list_location_models(self, location: str) -> list[Resource]:
        return self._list(f"{self._provider()}/locations/{_segment(location)}/models")

    # RAI policies

    def _policy(self, group: str, account: str, name: str) -> str:
        return f"{self._account(group, account)}/raiPolicies/{_segment(name)}"

    def put_rai_policy(self, group: str, account: str, name: str, body: Resource) -> Resource:
        policy: Resource = self._request("PUT", self._policy(group, account, name), body)
        return policy

    def get_rai_policy(self, group: str, account: str, name: str) -> Resource:
        policy: Resource = self._request("GET", self._policy(group, account, name))
        return policy

    def list_rai_policies(self, group: str, account: str) -> list[Resource]:
        return self._list(f"{self._account(group, account)}/raiPolicies")

    def delete_rai_policy(self, group: str, account: str, name: str) -> None:
        self._request("DELETE", self._policy(group, account, name))


def _segment(value: str) -> str:
    # a name with "/" or "?" must stay one path segment, not address another resource
    return quote(value, safe="")
