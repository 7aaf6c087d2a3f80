"""A model's engine is the operator's: what an upstream model server says when it fails (its stack traces, its
paths, its complaint about the operator's API key), what the HTTP library says when it cannot be reached and what
llama.cpp says when a model file does not load are logged for the operator and never returned to the caller, who
gets 503 with a generic message. What an upstream says about the caller's own request (400, 413, 422, a context
too long) still goes back, as the caller needs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azurine.catalog import load_catalog
from azurine.engines.base import EngineError, EngineUnavailable
from azurine.engines.openai_upstream import OpenAIUpstreamEngine
from conftest import free_port
from test_customer_managed_keys import WireServer

INTERNAL = "Traceback: /srv/vllm/engine.py line 12: CUDA out of memory on gpu-node-7; key sk-operator...abcd"


class Upstream:
    """An OpenAI-compatible server that answers every request with one status and error message."""

    def __init__(self) -> None:
        self.status, self.message = 500, INTERNAL
        self.server = WireServer(self.handle)
        self.url = self.server.url + "/v1"

    def handle(self, *_: Any) -> tuple[int, Any]:
        return self.status, {"error": {"message": self.message, "type": "error", "code": None}}


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    yield fake
    fake.server.close()


def engine(url: str) -> OpenAIUpstreamEngine:
    spec = load_catalog().get("SmolLM2-135M-Instruct")
    assert spec is not None
    return OpenAIUpstreamEngine(spec, url, "smol", "sk-operator")


def embed_error(url: str) -> EngineError:
    with pytest.raises(EngineError) as caught:
        asyncio.run(engine(url).embed(["hello"]))
    return caught.value


@pytest.mark.parametrize("status", [500, 502, 401, 403, 404, 429])
def test_an_upstream_failure_is_logged_not_returned(upstream: Upstream, caplog: pytest.LogCaptureFixture,
                                                    status: int) -> None:
    upstream.status = status
    with caplog.at_level(logging.WARNING):
        error = embed_error(upstream.url)
    assert isinstance(error, EngineUnavailable) and error.status == 503
    assert "CUDA" not in error.message and "sk-operator" not in error.message and "/srv" not in error.message
    assert INTERNAL in caplog.text


def test_an_unreachable_upstream_is_logged_not_described(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        error = embed_error(f"http://127.0.0.1:{free_port()}/v1")
    assert isinstance(error, EngineUnavailable)
    assert error.message == "The upstream model server could not be reached."
    assert "127.0.0.1" in caplog.text


@pytest.mark.parametrize("status", [400, 413, 422])
def test_what_the_upstream_says_about_the_callers_request_goes_back(upstream: Upstream, status: int) -> None:
    upstream.status, upstream.message = status, "'input' must not be empty."
    error = embed_error(upstream.url)
    assert not isinstance(error, EngineUnavailable) and error.status == 400
    assert error.message == "'input' must not be empty."


def test_a_model_that_does_not_load_is_logged_not_described(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from azurine.engines.llama_runtime import LlamaCppEngine

    spec = load_catalog().get("SmolLM2-135M-Instruct")
    assert spec is not None
    broken = tmp_path / "private-models" / "smol.gguf"
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF not really a model")
    with caplog.at_level(logging.WARNING), pytest.raises(EngineUnavailable) as caught:
        LlamaCppEngine(spec, broken)._load()
    assert caught.value.message == f"The model {spec.name} could not be loaded."
    assert "private-models" in caplog.text
