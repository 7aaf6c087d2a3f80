"""Which `api-version` values each surface accepts."""

from __future__ import annotations

from azurine.api.errors import api_version_not_supported, resource_not_found

GA_VERSIONS = frozenset({"2022-12-01", "2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21"})
PREVIEW_VERSIONS = frozenset({
    "2023-03-15-preview", "2023-06-01-preview", "2023-07-01-preview", "2023-08-01-preview",
    "2023-09-01-preview", "2023-12-01-preview", "2024-02-15-preview", "2024-03-01-preview",
    "2024-04-01-preview", "2024-05-01-preview", "2024-07-01-preview", "2024-08-01-preview",
    "2024-09-01-preview", "2024-10-01-preview", "2024-12-01-preview", "2025-01-01-preview",
    "2025-02-01-preview", "2025-03-01-preview", "2025-04-01-preview",
})
CLASSIC_VERSIONS = GA_VERSIONS | PREVIEW_VERSIONS
V1_VERSIONS = frozenset({"v1", "preview"})
# the dated `/openai/responses`: the previews since 2025-03-01-preview, which added the Responses API
RESPONSES_VERSIONS = frozenset({"2025-03-01-preview", "2025-04-01-preview"})


def _check_dated(api_version: str | None, known: frozenset[str]) -> str:
    """A dated route requires one of its versions: missing is 404, any other is 400."""
    if api_version is None or api_version == "":
        raise resource_not_found()
    if api_version not in known:
        raise api_version_not_supported()
    return api_version


def check_classic(api_version: str | None) -> str:
    """The classic surface requires a known dated version."""
    return _check_dated(api_version, CLASSIC_VERSIONS)


def check_responses(api_version: str | None) -> str:
    """The dated Responses API requires one of the previews that have it."""
    return _check_dated(api_version, RESPONSES_VERSIONS)


def check_v1(api_version: str | None) -> str:
    """On `/openai/v1` the version is optional and only `v1` or `preview`."""
    if api_version is None:
        return "v1"
    if api_version not in V1_VERSIONS:
        raise api_version_not_supported()
    return api_version
