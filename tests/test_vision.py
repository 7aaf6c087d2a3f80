"""Vision input: chat and Responses requests with images, served by an upstream vision model.

The upstream is a small HTTP server here that records what it received and answers in OpenAI's chat shape; images
to download come from test servers on two loopback addresses, 127.0.0.1 and 127.0.0.2, so that one can be allowed
(`AZURINE_IMAGE_URL_ALLOW_PRIVATE=127.0.0.2/32`) and the other not.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from azurine.engines.llama_vision import vision_weights
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from azurine.vision.addresses import AddressPolicy, is_public
from azurine.vision.fetch import FetchFailed, fetch_image
from azurine.vision.images import MAX_IMAGE_BYTES, ImageError, data_url_bytes, measured
from azurine.vision.tokens import image_tokens
from conftest import Server, start_server, stop

MODEL = "Qwen2.5-VL-3B-Instruct"
NOT_ALLOWED, ALLOWED = "127.0.0.1", "127.0.0.2"
TOKEN_LIMIT = 100 * 1000  # capacity 100


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


SQUARE = png(1024, 1024)  # 765 tokens in high detail
TALL = png(2048, 4096)  # 1105
SQUARE_URL = "data:image/png;base64," + base64.b64encode(SQUARE).decode()


def user(text: str, url: str, detail: str | None = None) -> list[dict[str, Any]]:
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": image}]}]


# the upstream -------------------------------------------------------------------------------------------------

class Upstream(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.received.append(body)
        texts = [p.get("text", "") for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
        usage = None if any("no usage" in t for t in texts) else {"prompt_tokens": 1234, "completion_tokens": 2,
                                                                    "total_tokens": 1236}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for chunk in ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "A red"}}]},
                          {"choices": [{"index": 0, "delta": {"content": " square."}, "finish_reason": "stop"}]},
                          {"choices": [], "usage": usage}):
                self.wfile.write(f"data: {json.dumps({'object': 'chat.completion.chunk', **chunk})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "A red square."},
                               "finish_reason": "stop"}]}
        if usage is not None:
            answer["usage"] = usage
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# the image servers --------------------------------------------------------------------------------------------

def socket_buffers() -> int:
    """The most that the kernel may hold between a sender and a reader on one TCP connection: the largest send
    buffer and the largest receive buffer it grows to. A sender can write this much past what the reader took
    before a close reaches it (32 MB of receive buffer on some kernels)."""
    largest = [int(Path(f"/proc/sys/net/ipv4/tcp_{side}").read_text().split()[2]) for side in ("wmem", "rmem")]
    return sum(largest)


# the endless image's length: the limit, what the kernel can buffer, and a margin, so that a stream cut while it
# was read ends well before this
ENDLESS_BYTES = MAX_IMAGE_BYTES + socket_buffers() + 16 * 1024 * 1024


class ImageSite(ThreadingHTTPServer):
    hits: list[str]
    streamed: list[int]
    other: str  # the base URL of the site on the other address


class ImageHandler(BaseHTTPRequestHandler):
    server: ImageSite
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(f"{self.path} Host={self.headers['host']}")
        if self.path == "/square.png":
            self._send(200, "image/png", SQUARE)
        elif self.path == "/page.html":
            self._send(200, "text/html", b"<html></html>")
        elif self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("location", f"{self.server.other}/square.png")
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/endless.png":  # chunked, no content-length: the limit must hold while it streams
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            block, sent = b"\x89PNG\r\n\x1a\n" + bytes(1024 * 1024 - 8), 0
            try:
                while sent < ENDLESS_BYTES:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    sent += len(block)
            except OSError:
                pass
            finally:
                self.server.streamed.append(sent)
        else:
            self._send(404, "text/plain", b"not here")

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    stub = Upstream(("127.0.0.1", 0), UpstreamHandler)
    stub.received = []
    serve(stub)
    yield stub
    stub.shutdown()


@pytest.fixture(scope="module")
def sites() -> Iterator[dict[str, ImageSite]]:
    out = {}
    for address in (NOT_ALLOWED, ALLOWED):
        site = ImageSite((address, 0), ImageHandler)
        site.hits, site.streamed = [], []
        out[address] = serve(site)  # type: ignore[assignment]
    out[NOT_ALLOWED].other, out[ALLOWED].other = base(out[ALLOWED]), base(out[NOT_ALLOWED])
    yield out
    for site in out.values():
        site.shutdown()


def base(site: ThreadingHTTPServer) -> str:
    host, port = site.server_address[:2]
    return f"http://{host}:{port}"


def deploy(server: Server, name: str, upstream: Upstream | None, model_path: Path | None = None) -> str:
    """A deployment of the vision model served by `upstream`, or in-process from `model_path`."""
    store = StateStore(make_engine(f"sqlite:///{Path(server.data_dir) / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    if store.deployment(account.id, name) is None:
        store.create_deployment(account.id, name, model_name=MODEL, model_version="1", model_format="Alibaba",
                                sku_name="GlobalStandard", sku_capacity=100,
                                upstream_url=base(upstream) + "/v1" if upstream else None,
                                upstream_model="qwen-vl" if upstream else None,
                                model_path=str(model_path) if model_path else None)
    return name


@pytest.fixture(scope="module")
def vision(server: Server, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A vision deployment on the shared server, whose settings are the defaults: no URL is downloaded."""
    names = [deploy(server, n, upstream) for n in ("vision", "vision-low", "vision-high")]
    names.append(deploy(server, "vision-local", None, tmp_path_factory.mktemp("no-weights")))
    yield names[0]
    store = StateStore(make_engine(f"sqlite:///{Path(server.data_dir) / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    for name in names:
        store.delete_deployment(account.id, name)


@pytest.fixture(scope="module")
def fetching(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Server]:
    """A server that downloads image URLs, from public addresses and 127.0.0.2."""
    running = start_server(tmp_path_factory.mktemp("fetching") / "data", env={
        "AZURINE_IMAGE_URL_FETCH": "on", "AZURINE_IMAGE_URL_ALLOW_PRIVATE": f"{ALLOWED}/32"})
    deploy(running, "vision", upstream)
    try:
        yield running
    finally:
        stop(running.process)


def last_image(upstream: Upstream) -> dict[str, Any]:
    return upstream.received[-1]["messages"][-1]["content"][1]


def refused(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value


# what Azure counts, the addresses, the images --------------------------------------------------------------------

def test_images_count_as_azure_counts_them() -> None:
    assert image_tokens(1024, 1024, "high") == 765  # 768 x 768: four tiles
    assert image_tokens(2048, 4096, "high") == 1105  # 1024 x 2048, then 768 x 1536: six tiles
    assert image_tokens(4096, 8192, "low") == 85
    assert image_tokens(1024, 1024, "auto") == image_tokens(1024, 1024, None) == 765
    assert image_tokens(500, 500, "high") == 255  # never scaled up: one tile


def test_only_public_addresses_are_downloaded_from_unless_allowed() -> None:
    import ipaddress

    for text in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "224.0.0.1", "0.0.0.0", "::1",
                 "fe80::1", "fc00::1", "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::a00:1", "240.0.0.1"):
        address = ipaddress.ip_address(text)
        assert not is_public(address) and not AddressPolicy().permits(address), text
        assert AddressPolicy(allow_private=True).permits(address), text
    assert is_public(ipaddress.ip_address("8.8.8.8")) and is_public(ipaddress.ip_address("2001:4860:4860::8888"))
    listed = AddressPolicy.parse("10.1.2.0/24, ::1")
    assert listed.permits(ipaddress.ip_address("10.1.2.9")) and listed.permits(ipaddress.ip_address("::1"))
    assert not listed.permits(ipaddress.ip_address("10.1.3.9"))
    assert AddressPolicy.parse("true").allow_private and not AddressPolicy.parse("").allow_private
    with pytest.raises(ValueError):
        AddressPolicy.parse("intranet")


def test_data_urls_are_read_whole_or_refused() -> None:
    assert data_url_bytes(SQUARE_URL) == SQUARE
    facts = measured(SQUARE)
    assert (facts.format, facts.width, facts.height) == ("png", 1024, 1024)
    for bad in ("data:image/png,abc", "data:text/plain;base64,aGk=", "data:image/png;base64,!!!!",
                "data:image/png;base64,aGk", "data:image/png;base64," + base64.b64encode(b"not an image").decode()):
        with pytest.raises(ImageError):
            measured(data_url_bytes(bad))
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="animated"):
        measured(gif.getvalue())


def test_a_download_connects_to_the_address_it_checked(sites: dict[str, ImageSite]) -> None:
    """The name resolves once and the connection goes to that address: there is no second lookup to rebind."""
    port = sites[ALLOWED].server_address[1]
    policy = AddressPolicy.parse(f"{ALLOWED}/32")
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return [ALLOWED] if len(lookups) == 1 else [NOT_ALLOWED]

    data = asyncio.run(fetch_image(f"http://images.example:{port}/square.png", policy, resolve))
    assert data == SQUARE and lookups == ["images.example"]
    assert sites[ALLOWED].hits[-1] == f"/square.png Host=images.example:{port}"

    async def mixed(host: str, port: int) -> list[str]:  # one refused address refuses the name
        return [ALLOWED, NOT_ALLOWED]

    with pytest.raises(FetchFailed, match="cannot be reached"):
        asyncio.run(fetch_image(f"http://images.example:{port}/square.png", policy, mixed))


# served through the upstream ------------------------------------------------------------------------------------

def test_an_image_reaches_the_upstream_as_it_was_sent(azure: openai.AzureOpenAI, vision: str,
                                                      upstream: Upstream) -> None:
    messages = user("What is this?", SQUARE_URL, "high")
    result = azure.chat.completions.create(model=vision, messages=messages, max_tokens=5)  # type: ignore[arg-type]
    assert result.choices[0].message.content == "A red square."
    assert result.usage is not None and result.usage.prompt_tokens == 1234  # the upstream's own count
    sent = upstream.received[-1]
    assert sent["model"] == "qwen-vl" and sent["messages"] == messages


def test_the_v1_surface_streams_an_image_answer(server: Server, vision: str, upstream: Upstream) -> None:
    chunks = list(server.v1().chat.completions.create(
        model=vision, messages=user("What is this?", SQUARE_URL, "low"), stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "A red square."
    assert last_image(upstream) == {"type": "image_url", "image_url": {"url": SQUARE_URL, "detail": "low"}}


def test_a_responses_input_image_goes_upstream_as_an_image_part(server: Server, vision: str,
                                                                upstream: Upstream) -> None:
    response = server.v1().responses.create(model=vision, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": SQUARE_URL, "detail": "low"}]}])  # type: ignore[list-item]
    assert response.output_text == "A red square."
    assert last_image(upstream) == {"type": "image_url", "image_url": {"url": SQUARE_URL, "detail": "low"}}


def test_the_estimate_counts_an_image_by_its_size_and_detail(azure: openai.AzureOpenAI, vision: str) -> None:
    def charged(deployment: str, detail: str) -> int:
        raw = azure.chat.completions.with_raw_response.create(
            model=deployment, messages=user("What is this?", SQUARE_URL, detail), max_tokens=5)  # type: ignore[arg-type]
        return TOKEN_LIMIT - int(raw.headers["x-ratelimit-remaining-tokens"])  # each deployment's first request

    low, high = charged("vision-low", "low"), charged("vision-high", "high")
    assert high - low == 765 - 85
    assert 0 < low - 85 - 5 < 30  # the text and the message's overhead: the data URL's characters count for nothing


def test_usage_counts_images_where_the_upstream_reports_none(azure: openai.AzureOpenAI, vision: str) -> None:
    def prompt_tokens(url: str, detail: str) -> int:
        result = azure.chat.completions.create(model=vision, messages=user("no usage", url, detail),  # type: ignore[arg-type]
                                               max_tokens=5)
        assert result.usage is not None
        return result.usage.prompt_tokens

    tall_url = "data:image/png;base64," + base64.b64encode(TALL).decode()
    assert prompt_tokens(SQUARE_URL, "high") - prompt_tokens(SQUARE_URL, "low") == 765 - 85
    assert prompt_tokens(tall_url, "auto") - prompt_tokens(SQUARE_URL, "auto") == 1105 - 765


def test_a_text_model_refuses_images(azure: openai.AzureOpenAI) -> None:
    error = refused(lambda: azure.chat.completions.create(model="chat-small", messages=user(  # type: ignore[arg-type]
        "What is this?", SQUARE_URL)))
    assert error.body["param"] == "messages[0].content[1].type"  # type: ignore[index]
    assert error.body["message"] == "Invalid content type. image_url is only supported by certain models."  # type: ignore[index]


def test_the_in_process_engine_wants_a_gguf_and_its_projector(azure: openai.AzureOpenAI, vision: str,
                                                               tmp_path: Path) -> None:
    (tmp_path / "model-q4_k_m.gguf").write_bytes(b"GGUF")
    assert vision_weights(tmp_path) is None  # no projector
    (tmp_path / "mmproj-model-f16.gguf").write_bytes(b"GGUF")
    assert vision_weights(tmp_path) == (tmp_path / "model-q4_k_m.gguf", tmp_path / "mmproj-model-f16.gguf")
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    assert vision_weights(tmp_path) is None  # which model is meant is not clear
    # a deployment whose directory holds neither is there, and says it cannot serve (untested with real weights)
    with pytest.raises(openai.InternalServerError) as caught:
        azure.chat.completions.create(model="vision-local", messages=user("What is this?", SQUARE_URL), max_tokens=5)  # type: ignore[arg-type]
    assert caught.value.status_code == 503 and "mmproj" in caught.value.message


def test_an_image_over_20_mb_is_refused(azure: openai.AzureOpenAI, vision: str, upstream: Upstream) -> None:
    sent = len(upstream.received)
    large = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)).decode()
    error = refused(lambda: azure.chat.completions.create(model=vision, messages=user("Too big?", large)))  # type: ignore[arg-type]
    assert error.body["param"] == "messages[0].content[1].image_url.url"  # type: ignore[index]
    assert "20 MB" in error.body["message"] and len(upstream.received) == sent  # type: ignore[index]
    error = refused(lambda: azure.chat.completions.create(model=vision, messages=user(  # type: ignore[arg-type]
        "Broken?", "data:image/png;base64,!!!!")))
    assert "base64" in error.body["message"]  # type: ignore[index]


def test_image_urls_are_not_downloaded_by_default(azure: openai.AzureOpenAI, vision: str, upstream: Upstream,
                                                  sites: dict[str, ImageSite]) -> None:
    sent, hits = len(upstream.received), len(sites[ALLOWED].hits)
    error = refused(lambda: azure.chat.completions.create(model=vision, messages=user(  # type: ignore[arg-type]
        "What is this?", base(sites[ALLOWED]) + "/square.png")))
    assert "data URL" in error.body["message"]  # type: ignore[index]
    assert len(upstream.received) == sent and len(sites[ALLOWED].hits) == hits


# downloads (AZURINE_IMAGE_URL_FETCH=on) ---------------------------------------------------------------------------

def test_a_download_from_an_allowed_address_is_sent_on_inline(fetching: Server, upstream: Upstream,
                                                               sites: dict[str, ImageSite]) -> None:
    result = fetching.azure().chat.completions.create(model="vision", messages=user(  # type: ignore[arg-type]
        "no usage", base(sites[ALLOWED]) + "/square.png", "high"), max_tokens=5)
    image = last_image(upstream)["image_url"]
    assert image["detail"] == "high" and image["url"] == SQUARE_URL  # downloaded, checked, inline
    # measured once downloaded: counted at its 765 tokens, not the 1445 an unmeasured image may cost
    assert result.usage is not None and 765 < result.usage.prompt_tokens < 765 + 30


def test_loopback_and_redirects_to_it_are_refused(fetching: Server, upstream: Upstream,
                                                  sites: dict[str, ImageSite]) -> None:
    sent, hits = len(upstream.received), len(sites[NOT_ALLOWED].hits)
    port = sites[NOT_ALLOWED].server_address[1]
    for url in (f"{base(sites[NOT_ALLOWED])}/square.png", f"http://localhost:{port}/square.png",
                f"{base(sites[ALLOWED])}/elsewhere"):
        error = refused(lambda u=url: fetching.azure().chat.completions.create(  # type: ignore[misc]
            model="vision", messages=user("What is this?", u), max_tokens=5))
        assert "cannot be reached" in error.body["message"], url  # type: ignore[index]
    assert len(sites[NOT_ALLOWED].hits) == hits and len(upstream.received) == sent


def test_a_download_is_cut_at_20_mb_and_checked_for_an_image(fetching: Server, sites: dict[str, ImageSite]) -> None:
    client = fetching.azure()
    error = refused(lambda: client.chat.completions.create(model="vision", messages=user(  # type: ignore[arg-type]
        "What is this?", base(sites[ALLOWED]) + "/endless.png"), max_tokens=5))
    assert "larger than 20 MB" in error.body["message"]  # type: ignore[index]
    # stopped while it streamed: the site could send no more past the limit than the kernel buffers before the
    # connection closed
    deadline = time.monotonic() + 10
    while not sites[ALLOWED].streamed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sites[ALLOWED].streamed and sites[ALLOWED].streamed[-1] < MAX_IMAGE_BYTES + socket_buffers()
    error = refused(lambda: client.chat.completions.create(model="vision", messages=user(  # type: ignore[arg-type]
        "What is this?", base(sites[ALLOWED]) + "/page.html"), max_tokens=5))
    assert "text/html" in error.body["message"]  # type: ignore[index]
