"""A model served elsewhere by an OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, Azure.

Requests are forwarded as streams with `stream_options.include_usage`, so usage comes from the server
that ran the model. A server that does not report usage on streams gets its completion tokens counted
from the chunks it sent and its prompt tokens estimated from the text (four characters a token).

With `send_priority`, each request carries its class as vLLM's `priority` (0 provisioned, 1 standard, 2 batch;
lower goes first), which a vLLM server run with `--scheduling-policy priority` orders its own queue by. How many
requests are in flight to the server, and which goes next, the scheduler decides before a request gets here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from azurine.catalog import ModelSpec
from azurine.engines.base import (
    ChatPrompt,
    ContextLengthExceeded,
    Delta,
    Embeddings,
    EngineError,
    EngineUnavailable,
    Event,
    Finished,
    Order,
    Sampling,
    TextPrompt,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)

log = logging.getLogger("azurine.upstream")
# statuses about the caller's request, whose message the caller needs (as vLLM and OpenAI word them)
CALLERS_OWN = frozenset({400, 413, 422})
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of an OpenAI-compatible server's answer, or an empty one where its body has none."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return error if isinstance(error, dict) else {}


def text_field(error: dict[str, Any], name: str) -> str | None:
    value = error.get(name)
    return value if isinstance(value, str) else None


def _sampling_body(sampling: Sampling) -> dict[str, Any]:
    body: dict[str, Any] = {
        "temperature": sampling.temperature, "top_p": sampling.top_p,
        "presence_penalty": sampling.presence_penalty, "frequency_penalty": sampling.frequency_penalty,
    }
    if sampling.max_tokens is not None:
        body["max_tokens"] = sampling.max_tokens
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
    if sampling.response_format:
        body["response_format"] = sampling.response_format
    return body


def _logprobs(content: list[dict[str, Any]] | None) -> list[TokenLogprob]:
    out = []
    for item in content or []:
        tops = [TopLogprob(token=t["token"], logprob=t["logprob"], bytes=t.get("bytes") or list(t["token"].encode()))
                for t in item.get("top_logprobs") or []]
        out.append(TokenLogprob(token=item["token"], logprob=item["logprob"],
                                bytes=item.get("bytes") or list(item["token"].encode()), top_logprobs=tops))
    return out


class OpenAIUpstreamEngine:
    def __init__(self, spec: ModelSpec, base_url: str, model: str | None, api_key: str | None,
                 send_priority: bool = False) -> None:
        self.spec = spec
        self._model = model or spec.name
        self._send_priority = send_priority
        self._base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=TIMEOUT)

    async def _raise_for(self, response: httpx.Response) -> None:
        await response.aread()
        error = error_of(response)
        message = text_field(error, "message")
        if error.get("code") == "context_length_exceeded" and message:
            raise ContextLengthExceeded(message, error.get("param") or "messages")
        if response.status_code in CALLERS_OWN:
            raise EngineError(message or f"The upstream model server refused the request ({response.status_code}).",
                              param=text_field(error, "param"))
        # anything else is the server's own trouble, or the operator's (its key, its model name), in words that
        # can name its hosts, paths and keys: the operator's log has them, the caller a status
        log.warning("upstream %s answered %s: %s", self._base_url, response.status_code, response.text[:2000])
        raise EngineUnavailable(f"The upstream model server answered {response.status_code}.")

    def _unreachable(self, error: httpx.TransportError) -> EngineUnavailable:
        log.warning("upstream %s could not be reached: %r", self._base_url, error)
        return EngineUnavailable("The upstream model server could not be reached.")

    def _body(self, body: dict[str, Any], order: Order | None) -> dict[str, Any]:
        body = {**body, "model": self._model}
        if self._send_priority and order is not None:
            body["priority"] = int(order.priority)
        return body

    async def _whole(self, path: str, body: dict[str, Any], prompt_estimate: int) -> AsyncIterator[Event]:
        """One request, one answer: the upstream's usage is then exact, where it reports one."""
        try:
            response = await self._client.post(path, json={**body, "stream": False})
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        if response.status_code != 200:
            await self._raise_for(response)
        payload = response.json()
        choice = (payload.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text = message.get("content") if "message" in choice else choice.get("text")
        logprobs = _logprobs((choice.get("logprobs") or {}).get("content")) if "message" in choice else []
        if text or logprobs:
            yield Delta(text=text or "", logprobs=logprobs)
        calls = [ToolCall(id=c.get("id") or "", name=c["function"]["name"], arguments=c["function"]["arguments"])
                 for c in message.get("tool_calls") or []]
        if calls:
            yield Delta(tool_calls=calls)
        reason = choice.get("finish_reason") or "stop"
        usage = payload.get("usage") or {}
        yield Finished(reason=reason if reason in ("stop", "length", "tool_calls") else "stop",  # type: ignore[arg-type]
                       prompt_tokens=usage.get("prompt_tokens") or prompt_estimate,
                       completion_tokens=usage.get("completion_tokens", 0))

    async def _stream(self, path: str, body: dict[str, Any], order: Order,
                      prompt_estimate: int) -> AsyncIterator[Event]:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        calls: dict[int, dict[str, str]] = {}
        usage: dict[str, int] | None = None
        reason, chunks = "stop", 0
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    await self._raise_for(response)
                async for line in response.aiter_lines():
                    if order.cancelled:
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if "delta" in choice else choice.get("text")
                        for call in delta.get("tool_calls") or []:
                            slot = calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                            slot["id"] = call.get("id") or slot["id"]
                            function = call.get("function") or {}
                            slot["name"] += function.get("name") or ""
                            slot["arguments"] += function.get("arguments") or ""
                        logprobs = _logprobs((choice.get("logprobs") or {}).get("content"))
                        if text or logprobs:
                            chunks += 1
                            yield Delta(text=text or "", logprobs=logprobs)
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        if calls:
            yield Delta(tool_calls=[ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
                                    for _, c in sorted(calls.items())])
        if reason not in ("stop", "length", "tool_calls"):
            reason = "stop"
        prompt_tokens = (usage or {}).get("prompt_tokens") or prompt_estimate
        completion_tokens = (usage or {}).get("completion_tokens") or chunks
        yield Finished(reason=reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)  # type: ignore[arg-type]

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: Order,
             stream: bool = True) -> AsyncIterator[Event]:
        body = {"messages": prompt.messages, **_sampling_body(sampling)}
        if sampling.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.top_logprobs
        if prompt.tools:
            body["tools"] = prompt.tools
            if prompt.tool_choice is not None:
                body["tool_choice"] = prompt.tool_choice
        body = self._body(body, order)
        if not stream:
            return self._whole("chat/completions", body, prompt.estimated_tokens())
        return self._stream("chat/completions", body, order, prompt.estimated_tokens())

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: Order,
                 stream: bool = True) -> AsyncIterator[Event]:
        body: dict[str, Any] = {"prompt": prompt.text, "echo": prompt.echo, **_sampling_body(sampling)}
        if prompt.suffix is not None:
            body["suffix"] = prompt.suffix
        if sampling.logprobs:
            body["logprobs"] = max(sampling.top_logprobs, 1)
        body = self._body(body, order)
        if not stream:
            return self._whole("completions", body, prompt.estimated_tokens())
        return self._stream("completions", body, order, prompt.estimated_tokens())

    async def embed(self, inputs: list[str] | list[list[int]], order: Order | None = None) -> Embeddings:
        try:
            response = await self._client.post("embeddings", json=self._body({"input": inputs}, order))
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        if response.status_code != 200:
            await self._raise_for(response)
        payload = response.json()
        data = sorted(payload["data"], key=lambda d: d["index"])
        return Embeddings(vectors=[d["embedding"] for d in data],
                          prompt_tokens=(payload.get("usage") or {}).get("prompt_tokens", 0))

    async def close(self) -> None:
        await self._client.aclose()


__all__ = ["OpenAIUpstreamEngine"]
