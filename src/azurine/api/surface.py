"""The data plane's two surfaces: what differs between the dated routes and `/openai/v1`.

Azure's data plane answers on a dated surface (`/openai/…?api-version=YYYY-MM-DD`, the deployment in the path) and
on `/openai/v1/…` (the version optional, the deployment in the body's `model`, keys also as `Authorization:
Bearer`). An operation is written once, as a handler that takes a `Caller` (`azurine.api.caller`), and
`azurine.api.mounting` puts it on each surface: the surface decides only the opening stages and the few answers
that differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from azurine.api.versions import check_classic, check_responses, check_v1


@dataclass(frozen=True)
class Surface:
    name: Literal["dated", "v1"]
    prefix: str
    check_version: Callable[[str | None], str]
    bearer_keys: bool  # an account key may also come as `Authorization: Bearer <key>`
    deployment_in_path: bool  # `/deployments/{deployment_id}/…`; otherwise the body's `model` names it
    upload_status: int  # a file upload: 201 with a Location on the dated surface, 200 as OpenAI's on v1

    def path(self, operation_path: str) -> str:
        """`/chat/completions` → `/openai/deployments/{deployment_id}/chat/completions` or `/openai/v1/chat/…`;
        a path that names no deployment is the same under either prefix."""
        return self.prefix + operation_path.replace("{deployment}", "/deployments/{deployment_id}"
                                                    if self.deployment_in_path else "")


DATED = Surface("dated", "/openai", check_classic, bearer_keys=False, deployment_in_path=True, upload_status=201)
V1 = Surface("v1", "/openai/v1", check_v1, bearer_keys=True, deployment_in_path=False, upload_status=200)
# the dated Responses API exists only under the previews that added it, and its body names the deployment
DATED_RESPONSES = replace(DATED, check_version=check_responses, deployment_in_path=False)
BOTH = (DATED, V1)
