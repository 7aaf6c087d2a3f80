"""Image generation (DALL-E 3's contract) through the openai SDK on the dated and the v1 surfaces of the session's
server, with two engines behind a `dall-e-3` deployment:

- an upstream image server: a small HTTP server in this test that answers `POST /v1/images/generations` in OpenAI's
  shape with a fixed PNG, and records what it was asked;
- a local diffusers pipeline: no real text-to-image weights install here, so the test builds a tiny Stable Diffusion
  pipeline from configs with random weights, saves it to a directory and deploys it with `azurine deployments create
  --model-path`. The server's real loading and generation code runs on it; its pictures are noise.

Also: the signed link of a `url` answer (fetched, tampered, expired), DALL-E 3's field checks and the blocked prompt's
error, RBAC's `images/generations/action`, quota in requests per minute, metering, and the catalog entry, which only
the operator can deploy."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from azurine.identity.tokens import COGNITIVE_AUDIENCES, issue_token
from azurine.storage.database import make_engine
from azurine.storage.image_links import LinkSigner
from azurine.storage.state import StateStore
from conftest import API_VERSION, ROOT, Server
from loopback_http import LoopbackHttp, QuietHandler

ARM = "?api-version=2025-09-01"
AUTHZ = "?api-version=2022-04-01"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
HATEFUL = "People of that religion are vermin and must be driven out of our country by force."
PROMPT = "A watercolor lighthouse on a cliff at dawn"


def fixed_png() -> bytes:
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PNG = fixed_png()


class ImageServer(LoopbackHttp):
    """An OpenAI-compatible image server: every request gets `PNG` and a revised prompt."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        asked = self.asked

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                asked.append({"path": self.path, **body})
                answer = json.dumps({"created": int(time.time()), "data": [
                    {"b64_json": base64.b64encode(PNG).decode(), "revised_prompt": f"Revised: {body['prompt']}"}]})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

        super().__init__(Handler)
        self.url = self.v1_url()


def tiny_pipeline(directory: Path) -> Path:
    """A Stable Diffusion pipeline of a few thousand random weights, saved as diffusers saves any pipeline."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16,
                                                intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                                                vocab_size=100, max_position_embeddings=77))
    vocabulary = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocabulary[letter] = len(vocabulary)
        vocabulary[letter + "</w>"] = len(vocabulary)
    (directory / "vocab.json").write_text(json.dumps(vocabulary))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(directory / "pipeline")
    return directory / "pipeline"


def _store(server: Server) -> StateStore:
    return StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))


def azurine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "azurine", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ImageServer]:
    running = ImageServer()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def deployments(server: Server, upstream: ImageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`dalle` on the upstream server, `dalle-local` on the tiny pipeline (made as the operator makes it) and
    `dalle-limited` at one request a minute; removed afterwards, so the session's server lists only its own."""
    store = _store(server)
    account = store.first_account()
    assert account is not None
    common = {"model_name": "dall-e-3", "model_version": "3.0", "model_format": "OpenAI", "sku_name": "Standard"}
    store.create_deployment(account.id, "dalle", sku_capacity=600, upstream_url=upstream.url,
                            upstream_model="dall-e-3-upstream", **common)
    store.create_deployment(account.id, "dalle-limited", sku_capacity=1, upstream_url=upstream.url, **common)
    pipeline = tiny_pipeline(tmp_path_factory.mktemp("pipeline"))
    made = azurine("deployments", "create", "dalle-local", "--model", "dall-e-3", "--model-path", str(pipeline),
                   "--image-steps", "2", "--image-resolution", "64", "--capacity", "60", "--data-dir",
                   str(server.data_dir))
    assert made.returncode == 0, made.stdout + made.stderr
    try:
        yield
    finally:
        for name in ("dalle", "dalle-limited", "dalle-local"):
            store.delete_deployment(account.id, name)


def png_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def post(server: Server, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=headers or {"api-key": server.key}, timeout=120)


DATED = f"/openai/deployments/dalle/images/generations?api-version={API_VERSION}"


# the upstream server -----------------------------------------------------------------------------------------------

def test_an_upstream_image_comes_inline_on_the_dated_surface(server: Server, upstream: ImageServer,
                                                             deployments: None) -> None:
    answer = server.azure().images.generate(model="dalle", prompt=PROMPT, size="1792x1024", quality="hd",
                                            style="natural", response_format="b64_json", user="u-1")
    image = answer.data[0]
    assert image.b64_json is not None and base64.b64decode(image.b64_json) == PNG
    assert image.revised_prompt == f"Revised: {PROMPT}"
    extra = image.model_extra or {}
    assert extra["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert extra["prompt_filter_results"]["jailbreak"] == {"filtered": False, "detected": False}
    assert upstream.asked[-1] == {"path": "/v1/images/generations", "model": "dall-e-3-upstream", "prompt": PROMPT,
                                  "n": 1, "size": "1792x1024", "quality": "hd", "style": "natural",
                                  "response_format": "b64_json", "user": "u-1"}


def test_an_upstream_image_comes_by_a_signed_link_on_the_v1_surface(server: Server, deployments: None) -> None:
    raw = server.v1().images.with_raw_response.generate(model="dalle", prompt=PROMPT)
    assert raw.headers["x-ratelimit-limit-requests"] == "600" and "x-ratelimit-limit-tokens" not in raw.headers
    url = raw.parse().data[0].url
    assert url is not None and url.startswith(f"{server.url}/accounts/default/openai/images/generated/img_")
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.content == PNG


# the local pipeline ------------------------------------------------------------------------------------------------

def test_the_local_pipeline_draws_at_the_size_asked(server: Server, deployments: None) -> None:
    tall = server.azure().images.generate(model="dalle-local", prompt=PROMPT, size="1024x1792",
                                          response_format="b64_json")
    assert tall.data[0].b64_json is not None
    assert png_of(base64.b64decode(tall.data[0].b64_json)).size == (1024, 1792)
    assert tall.data[0].revised_prompt == PROMPT  # a local pipeline does not rewrite the prompt
    linked = server.v1().images.generate(model="dalle-local", prompt=PROMPT, quality="hd")
    assert linked.data[0].url is not None
    assert png_of(httpx.get(linked.data[0].url).content).size == (1024, 1024)


# the signed link ---------------------------------------------------------------------------------------------------

def test_a_link_works_only_whole_for_its_account_and_until_it_expires(server: Server, deployments: None) -> None:
    url = server.azure().images.generate(model="dalle", prompt=PROMPT).data[0].url
    assert url is not None and httpx.get(url).status_code == 200
    path, query = url.split("?")
    expires, signature = (part.split("=", 1)[1] for part in query.split("&"))
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    later = str(int(expires) + 3600)
    other_image = path.rsplit("/", 1)[0] + f"/img_{'0' * 32}.png"
    refused = {
        "signature": httpx.get(f"{path}?se={expires}&sig={flipped}"),
        "expiry moved": httpx.get(f"{path}?se={later}&sig={signature}"),
        "another image": httpx.get(f"{other_image}?se={expires}&sig={signature}"),
        "no signature": httpx.get(f"{path}?se={expires}"),
        "another account": httpx.get(url.replace("/accounts/default/", "/accounts/contoso-images/")),
    }
    assert {what: answer.status_code for what, answer in refused.items()} == {
        "signature": 403, "expiry moved": 403, "another image": 403, "no signature": 403, "another account": 404}
    assert refused["signature"].json()["error"]["code"] == "AuthenticationFailed"

    # a link signed with the server's own key but already expired
    account = _store(server).first_account()
    assert account is not None
    image_id = path.rsplit("/", 1)[1].removesuffix(".png")
    past = int(time.time()) - 1
    expired = httpx.get(f"{path}?se={past}&sig={LinkSigner.open(server.data_dir).sign(image_id, account.id, past)}")
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]


# DALL-E 3's contract -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [("size", "512x512"), ("quality", "ultra"), ("style", "bold"),
                                              ("response_format", "png"), ("n", 2), ("prompt", "x" * 4001)])
def test_values_dalle_3_does_not_take_are_refused_by_name(server: Server, upstream: ImageServer, deployments: None,
                                                          field: str, value: object) -> None:
    asked = len(upstream.asked)
    answer = post(server, DATED, {"prompt": PROMPT, field: value})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalidPayload" and error["param"] == field
    assert error["message"].startswith(f"Invalid payload: Value for property {field} is invalid.")
    assert len(upstream.asked) == asked  # refused before anything was drawn


def test_the_sdk_sees_n_above_one_refused(server: Server, deployments: None) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        server.v1().images.generate(model="dalle", prompt=PROMPT, n=2)
    assert refused.value.code == "invalidPayload" and "n must be 1" in refused.value.message


def test_a_missing_prompt_and_a_wrong_type_are_refused(server: Server, deployments: None) -> None:
    missing = post(server, DATED, {"size": "1024x1024"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "prompt"
    typed = post(server, DATED, {"prompt": PROMPT, "n": "1"})
    assert typed.status_code == 400 and typed.json()["error"]["param"] == "n"


def test_a_blocked_prompt_gets_dalles_content_policy_violation(server: Server, upstream: ImageServer,
                                                               deployments: None) -> None:
    asked = len(upstream.asked)
    answer = post(server, DATED, {"prompt": HATEFUL})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "content_policy_violation" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("Your request was rejected as a result of our safety system.")
    assert error["inner_error"]["code"] == "ResponsibleAIPolicyViolation"
    assert error["inner_error"]["content_filter_results"]["hate"]["filtered"] is True
    assert len(upstream.asked) == asked
    with pytest.raises(openai.BadRequestError) as refused:
        server.v1().images.generate(model="dalle", prompt=HATEFUL)
    assert refused.value.code == "content_policy_violation"


def test_a_chat_deployment_does_not_draw(server: Server) -> None:
    answer = post(server, f"/openai/deployments/chat-small/images/generations?api-version={API_VERSION}",
                  {"prompt": PROMPT})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "OperationNotSupported"
    assert "imageGenerations operation" in answer.json()["error"]["message"]


# quota, metering and access ------------------------------------------------------------------------------------------

def test_capacity_is_requests_per_minute(server: Server, deployments: None) -> None:
    path = f"/openai/deployments/dalle-limited/images/generations?api-version={API_VERSION}"
    first = post(server, path, {"prompt": PROMPT, "response_format": "b64_json"})
    second = post(server, path, {"prompt": PROMPT, "response_format": "b64_json"})
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert "ImageGenerations_Create" in second.json()["error"]["message"]


def test_metering_counts_images_at_their_price_units(server: Server, deployments: None) -> None:
    def counted() -> tuple[float, float]:
        lines = httpx.get(server.metrics_url).text.splitlines()

        def total(start: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(start))

        return (total('azurine_images_generated_total{deployment="dalle",quality="hd",size="1024x1792"'),
                total('azurine_settled_tokens_total{deployment="dalle",kind="completion"'))

    images, units = counted()
    server.azure().images.generate(model="dalle", prompt=PROMPT, size="1024x1792", quality="hd",
                                   response_format="b64_json")
    deadline = time.monotonic() + 5
    while counted() != (images + 1, units + 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted() == (images + 1, units + 3)  # an hd portrait is three $0.04 units


def test_a_token_needs_the_images_data_action(server: Server, deployments: None) -> None:
    store = _store(server)
    account = store.first_account()
    assert account is not None
    principal = str(uuid.uuid4())
    token = issue_token(store, audience=COGNITIVE_AUDIENCES[0], object_id=principal, name=principal)[0]
    denied = post(server, DATED, {"prompt": PROMPT}, {"Authorization": f"Bearer {token}"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "PermissionDenied"
    assert ("`Microsoft.CognitiveServices/accounts/OpenAI/images/generations/action` to perform `POST "
            "/openai/deployments/{deployment-id}/images/generations`") in denied.json()["error"]["message"]

    scope = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
             f"Microsoft.CognitiveServices/accounts/{account.name}")
    admin = issue_token(store)[0]
    given = httpx.put(f"{server.url}{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}{AUTHZ}",
                      headers={"Authorization": f"Bearer {admin}"}, json={"properties": {
                          "roleDefinitionId": f"/subscriptions/{account.subscription_id}/providers/"
                                              f"Microsoft.Authorization/roleDefinitions/{OPENAI_USER}",
                          "principalId": principal}})
    assert given.status_code == 201, given.text
    time.sleep(1.2)  # assignments are cached for a second
    client = openai.OpenAI(base_url=f"{server.url}/openai/v1/", api_key=token, max_retries=0)
    assert client.images.generate(model="dalle", prompt=PROMPT, response_format="b64_json").data[0].b64_json


# the catalog ---------------------------------------------------------------------------------------------------------

def test_dall_e_3_is_in_the_catalog_and_only_the_operator_deploys_it(server: Server, deployments: None) -> None:
    store = _store(server)
    account = store.first_account()
    assert account is not None
    base = (f"{server.url}/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/"
            f"providers/Microsoft.CognitiveServices/accounts/{account.name}")
    admin = {"Authorization": f"Bearer {issue_token(store)[0]}"}
    models = httpx.get(f"{base}/models{ARM}", headers=admin).json()["value"]
    dalle = next(m for m in models if m["name"] == "dall-e-3")
    assert dalle["capabilities"] == {"imageGenerations": "true"}
    assert [s["name"] for s in dalle["skus"]] == ["Standard"]
    assert dalle["skus"][0]["rateLimits"] == [{"count": 1.0, "key": "request", "renewalPeriod": 60.0}]

    local = httpx.get(f"{base}/deployments/dalle-local{ARM}", headers=admin).json()
    assert local["properties"]["capabilities"] == {"imageGenerations": "true"}
    assert local["properties"]["rateLimits"] == [{"count": 60.0, "key": "request", "renewalPeriod": 60.0}]
    assert "model_path" not in json.dumps(local) and "pipeline" not in json.dumps(local)

    body = {"sku": {"name": "Standard", "capacity": 1}, "properties": {"model": {"format": "OpenAI",
                                                                                "name": "dall-e-3", "version": "3.0"}}}
    refused = httpx.put(f"{base}/deployments/dalle-by-arm{ARM}", headers=admin, json=body)
    assert refused.status_code == 400 and "has no weights on this server" in refused.json()["error"]["message"]
    by_cli = azurine("deployments", "create", "dalle-nothing", "--model", "dall-e-3", "--data-dir",
                     str(server.data_dir))
    assert by_cli.returncode == 1 and "--model-path" in by_cli.stderr


# the pieces alone ----------------------------------------------------------------------------------------------------

def test_the_store_keeps_an_image_sealed_for_its_account_until_it_expires(tmp_path: Path) -> None:
    from azurine.storage.database import migrate
    from azurine.storage.envelope import EnvelopeSealer
    from azurine.storage.images import ImageStore
    from azurine.storage.tables import GeneratedImage

    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    state = StateStore(engine)
    mine = state.create_account("mine", location="local", subscription_id="sub", resource_group="rg")
    theirs = state.create_account("theirs", location="local", subscription_id="sub", resource_group="rg")
    store = ImageStore(engine, EnvelopeSealer.open(engine, tmp_path))
    now = int(time.time())
    kept = store.put(mine.id, PNG, now, now + 60)
    gone = store.put(mine.id, PNG, now - 120, now - 60)
    assert store.get(mine.id, kept, now) == PNG and store.get(theirs.id, kept, now) is None
    assert store.get(mine.id, gone, now) is None
    with engine.connect() as connection:  # sealed at rest, not the PNG's bytes
        body = connection.execute(GeneratedImage.__table__.select().where(GeneratedImage.id == kept)).one().body
    assert PNG not in body and not body.startswith(PNG[:8])
    assert store.sweep(now) == 1 and store.sweep(now) == 0
    assert store.get(mine.id, kept, now) == PNG


@pytest.mark.parametrize(("size", "resolution", "rendered"), [("1024x1024", 64, (64, 64)),
                                                               ("1792x1024", 512, (512, 296)),
                                                               ("1024x1792", 512, (296, 512))])
def test_the_local_pipeline_renders_at_the_deployments_resolution(size: str, resolution: int,
                                                                   rendered: tuple[int, int]) -> None:
    from azurine.engines.diffusers_images import render_size

    width, height = (int(side) for side in size.split("x"))
    assert render_size(width, height, resolution) == rendered
