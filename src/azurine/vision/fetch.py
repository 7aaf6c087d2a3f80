"""An image downloaded from a caller's URL (`AZURINE_IMAGE_URL_FETCH=on`), within bounds, from permitted addresses.

Each hop (the URL, then each redirect, at most MAX_REDIRECTS) is resolved once, every address the name resolves to
is checked against the `AddressPolicy`, and the connection is made to a checked address: the URL's host goes only
into the Host header and TLS's server name, and the certificate is verified for it. A name that resolves to a public
address when checked and a private one a moment later (DNS rebinding) is therefore never connected to again, and a
redirect to a refused host is refused like the host itself. Nothing from the environment (proxies, .netrc) is used,
each hop has a client of its own (no connection is shared between two names on one address), content is read raw
(`Accept-Encoding: identity`, so no compressed response can inflate past the limit) and counted as it arrives: the
download stops at MAX_IMAGE_BYTES, and the whole of it, redirects included, at FETCH_SECONDS.

Why a download failed goes to the server log; the caller learns only that it failed, whether the name did not
resolve, resolved to a refused address or did not answer, so that URLs cannot be used to map the operator's network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

import httpx

from azurine.vision.addresses import AddressPolicy
from azurine.vision.images import MAX_IMAGE_BYTES, UNSUPPORTED

log = logging.getLogger("azurine.vision")

FETCH_SECONDS = 10.0
CONNECT_SECONDS = 5.0
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})
SHOWN_CHARS = 200

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchFailed(Exception):
    """The image could not be downloaded; the message is the caller's to read."""


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def fetch_image(url: str, policy: AddressPolicy, resolve: Resolver = resolve_host) -> bytes:
    shown = url if len(url) <= SHOWN_CHARS else url[:SHOWN_CHARS] + "…"
    try:
        async with asyncio.timeout(FETCH_SECONDS):
            return await _follow(url, policy, resolve, shown)
    except TimeoutError:
        raise FetchFailed(f"Timed out while downloading {shown}.") from None


async def _follow(url: str, policy: AddressPolicy, resolve: Resolver, shown: str) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        target = _target(url, shown)
        addresses = await _permitted(target, policy, resolve, shown)
        outcome = await _get(target, addresses, shown)
        if isinstance(outcome, bytes):
            return outcome
        url = str(target.join(outcome))
    raise FetchFailed(f"Error while downloading {shown}: it redirects more than {MAX_REDIRECTS} times.")


def _target(url: str, shown: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchFailed(f"Error while downloading {shown}: it is not a valid URL.") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise FetchFailed(f"Error while downloading {shown}: only http and https URLs are downloaded.")
    return target


def _unreachable(shown: str) -> FetchFailed:
    return FetchFailed(f"Error while downloading {shown}: its host cannot be reached from this server.")


async def _permitted(target: httpx.URL, policy: AddressPolicy, resolve: Resolver, shown: str) -> list[str]:
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        found = await resolve(host, port)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    except (OSError, UnicodeError, ValueError) as error:
        log.info("image URL host %r did not resolve: %r", host, error)
        raise _unreachable(shown) from None
    refused = [str(a) for a in addresses if not policy.permits(a)]
    if not addresses or refused:
        log.warning("image URL host %r refused: it resolves to %s, which AZURINE_IMAGE_URL_ALLOW_PRIVATE does not "
                    "permit", host, ", ".join(refused) or "nothing")
        raise _unreachable(shown)
    return [str(a) for a in addresses]


async def _get(target: httpx.URL, addresses: list[str], shown: str) -> bytes | str:
    """The image at `target`, fetched from the first of `addresses` that answers, or where it redirects to."""
    headers = {"Host": target.netloc.decode("ascii"), "Accept": "image/*", "Accept-Encoding": "identity",
               "User-Agent": "Azurine"}
    extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
    timeout = httpx.Timeout(FETCH_SECONDS, connect=CONNECT_SECONDS)
    for address in addresses:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout) as client:
            request = client.build_request("GET", target.copy_with(host=address), headers=headers,
                                           extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                log.info("image URL host %s at %s did not answer: %r", target.host, address, error)
                continue
            except httpx.HTTPError as error:
                log.info("image URL %s failed at %s: %r", shown, address, error)
                raise FetchFailed(f"Error while downloading {shown}.") from None
            try:
                return await _read(response, shown)
            except httpx.HTTPError as error:
                log.info("image URL %s failed while reading: %r", shown, error)
                raise FetchFailed(f"Error while downloading {shown}.") from None
            finally:
                await response.aclose()
    raise _unreachable(shown)


async def _read(response: httpx.Response, shown: str) -> bytes | str:
    if response.status_code in REDIRECTS and response.headers.get("location"):
        return response.headers["location"]
    if response.status_code != 200:
        raise FetchFailed(f"Error while downloading {shown}: the server answered {response.status_code}.")
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in CONTENT_TYPES:
        raise FetchFailed(f"Error while downloading {shown}: the server sent {kind[:60] or 'no content type'}, not "
                          "a PNG, JPEG, GIF or WEBP image.")
    too_large = FetchFailed(f"Error while downloading {shown}: the image is larger than "
                            f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB. {UNSUPPORTED}")
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_IMAGE_BYTES:
            raise too_large
    return bytes(body)
