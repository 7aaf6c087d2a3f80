"""llama.cpp in-process: GGUF chat and completion models on the CPU.

The token loop is Azurine's own (on llama-cpp-python's evaluation and sampler chain) so that it can
stop between any two tokens when a client goes away, report logprobs without keeping logits for
every position, and constrain output with a grammar for JSON and tool calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from azurine import settings_table
from azurine.catalog import ModelSpec
from azurine.config import RequestLimits
from azurine.engines.base import (
    ChatPrompt,
    ContextLengthExceeded,
    Delta,
    EngineError,
    EngineUnavailable,
    Event,
    Finished,
    HandedOver,
    Sampling,
    TextPrompt,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from azurine.engines.llama_adapter import AdapterSource, LoraAdapter, load_adapter
from azurine.engines.llama_context import ContextStateError, EvaluatedContext
from azurine.engines.llama_lazy_grammar import LazyToolSampler
from azurine.engines.llama_memory import kv_cell_bytes
from azurine.engines.llama_sequences import Sequence, SequenceGang, step_rows
from azurine.engines.llama_slots import SlotGang
from azurine.engines.tool_calls import (
    calls_so_far,
    held_from,
    new_call_id,
    parse_tool_calls,
    split_tool_calls,
    tools_system_prompt,
)
from azurine.engines.tool_grammar import ToolGrammar, tool_grammar
from azurine.engines.tool_repeats import (
    PROSE_GBNF,
    CallKey,
    answered_calls,
    call_key,
    only_repeats,
    repeats_allowed,
)
from azurine.json_depth import text_too_deep
from azurine.scheduler.compute import Gang, Scheduler
from azurine.scheduler.priority import Priority
from azurine.scheduler.work import WorkOrder

log = logging.getLogger("azurine")
Emit = Callable[[Event], None]

# answers decoded together in one pass (1: one at a time): of each online class (provisioned, standard), each in a
# slot of SLOT_TOKENS cells, and of the batch class
SEQUENCES = int(settings_table.read("AZURINE_SEQUENCES", "8"))
SLOT_TOKENS = int(settings_table.read("AZURINE_SLOT_TOKENS", "2048"))
BATCH_SEQUENCES = int(settings_table.read("AZURINE_BATCH_SEQUENCES", "8"))


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages in the shape HuggingFace chat templates expect (text content, dict arguments)."""
    out = []
    for message in messages:
        role = message["role"]
        item: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                "content": _message_text(message.get("content"))}
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = dict(call.get("function", {}))
                arguments = function.get("arguments") or "{}"
                # the caller wrote these: nested too deep for the parser or the template's own recursion, they
                # stay text, as arguments that are not JSON do
                if not text_too_deep(arguments, RequestLimits().max_json_depth):
                    try:
                        function["arguments"] = json.loads(arguments)
                    except ValueError:
                        pass
                calls.append({"id": call.get("id"), "type": "function", "function": function})
            item["tool_calls"] = calls
        if role == "tool":
            item["tool_call_id"] = message.get("tool_call_id")
        if message.get("name"):
            item["name"] = message["name"]
        out.append(item)
    return out


def _grammar_for(sampling: Sampling, prompt: ChatPrompt | None) -> tuple[str | None, str]:
    """(json schema or "json" or None, tool mode) for the request; tool mode: none, auto, forced, named."""
    tools = prompt.tools if prompt else None
    choice = prompt.tool_choice if prompt else None
    if tools and choice != "none":
        if isinstance(choice, dict):
            name = choice["function"]["name"]
            params = next(t["function"].get("parameters") or {"type": "object"}
                          for t in tools if t["function"]["name"] == name)
            return json.dumps(params), "named"
        if choice == "required":
            variants = [{"type": "object", "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"]} for t in tools]
            return json.dumps({"anyOf": variants} if len(variants) > 1 else variants[0]), "forced"
        return None, "auto"
    fmt = sampling.response_format or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(fmt["json_schema"].get("schema") or {"type": "object"}), "none"
    if fmt.get("type") == "json_object":
        return "json", "none"
    return None, "none"


@lru_cache(maxsize=64)
def _lazy_grammar(tools: str, parallel: bool) -> ToolGrammar | None:
    """The tool-call grammar for tools (as JSON), made once for the tools an application sends with every turn."""
    return tool_grammar(json.loads(tools), parallel)


def _picking_samplers(sampling: Sampling) -> int:
    """How many samplers at the end of `LlamaCppEngine._sampler`'s chain pick the token."""
    if sampling.temperature <= 0:
        return 1  # greedy
    return 3 if sampling.top_p < 1.0 else 2  # (top-p,) temperature, the seeded draw


@dataclass(frozen=True)
class _RepeatedCalls(HandedOver):
    """An answer that only made again calls already answered (`tool_repeats`), with nothing of it sent: `_answer`
    decodes it anew as prose, and that decoding reports the request's usage (`state`: this one's `Finished`). It
    never leaves the engine."""


class _ToolCallFilter:
    """Holds back text from where a tool call may begin (`tool_calls.held_from`) and turns what it holds into calls
    at the end; text before a call is released as it comes, text it holds that is no call at the end."""

    def __init__(self, emit: Emit, names: set[str], mode: str, named: str | None,
                 answered: frozenset[CallKey] = frozenset()) -> None:
        self._emit, self._names, self._mode, self._named = emit, names, mode, named
        self._answered = answered
        self._held: list[Delta] = []
        self._released = False  # whether any text went out
        self._started = mode in ("forced", "named")  # a call has surely begun: all the rest is held

    def __call__(self, event: Event) -> None:
        if isinstance(event, Finished):
            self._finish(event)
            return
        self._held.append(event)
        if self._started:
            return
        cut, self._started = held_from("".join(d.text for d in self._held))
        size, count = 0, 0
        for delta in self._held:  # whole deltas only, so that each keeps its logprobs
            if size + len(delta.text) > cut:
                break
            size, count = size + len(delta.text), count + 1
        if count:
            out, self._held = self._held[:count], self._held[count:]
            self._send(out)

    def repeats_in_full(self) -> bool:
        """Whether the answer so far only makes again calls already answered, and has either gone on with something
        that is no call or made one of them twice: it will be decoded anew whatever it says next (Qwen2.5-Coder-0.5B
        goes on with made-up JSON, or the same call, until `max_tokens`), so its decoding may end here."""
        if self._released or not self._held:
            return False
        calls, settled = calls_so_far("".join(d.text for d in self._held), self._names)
        keys = [call_key(call.name, call.arguments) for call in calls]
        return (settled or len(set(keys)) < len(keys)) and only_repeats(calls, self._answered)

    def _send(self, deltas: list[Delta]) -> None:
        text = "".join(d.text for d in deltas)
        self._emit(Delta(text=text, logprobs=[lp for d in deltas for lp in d.logprobs]))
        self._released = self._released or bool(text)

    def _finish(self, finished: Finished) -> None:
        text = "".join(d.text for d in self._held)
        content = ""
        if self._mode == "named" and self._named is not None:
            calls = self._named_call(text) if text.strip() else []
        else:
            calls, content = split_tool_calls(text, self._names) if self._held else ([], "")
        if not calls:
            if self._held:
                self._send(self._held)
            self._emit(finished)
            return
        content = content.rstrip() if self._released else content.strip()
        if not self._released and only_repeats(calls, self._answered):
            self._emit(_RepeatedCalls(finished))
            return
        if content:  # text around the calls that was held with them (see `tool_calls`)
            self._emit(Delta(text=content))
        self._emit(Delta(tool_calls=calls))
        # a call the caller named is a plain stop, as Azure reports it; a chosen call is `tool_calls`
        reason = "stop" if self._mode == "named" else "tool_calls"
        self._emit(replace(finished, reason=reason if finished.reason != "length" else "length"))

    def _named_call(self, text: str) -> list[ToolCall]:
        """The named tool's call. The grammar makes its arguments a JSON object unless the answer was cut short
        (`max_tokens`), and then they are sent as written so far, as OpenAI sends a call cut short."""
        try:
            return parse_tool_calls(json.dumps({"name": self._named, "arguments": json.loads(text)}),
                                    {self._named or ""})
        except ValueError:
            return [ToolCall(id=new_call_id(), name=self._named or "", arguments=text)]


class _StopMatcher:
    """Releases text as it comes, holding back only a tail that could begin a stop sequence."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self.pending += text
        hits = [(self.pending.index(s), s) for s in self._stops if s in self.pending]
        if hits:
            at = min(hits)[0]
            out, self.pending = self.pending[:at], ""
            return out, True
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:size]):
                    keep = max(keep, size)
                    break
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False


class _Relay:
    """Where an answer's events go; an answer that moves to another engine call takes its filters along."""

    def __init__(self, target: Emit) -> None:
        self.target = target

    def __call__(self, event: Event) -> None:
        self.target(event)


@dataclass(frozen=True)
class Prepared:
    """A request made ready for the compute thread: its prompt's tokens, its grammar, and what shapes its events."""

    tokens: list[int]
    schema: str | None
    echo: str | None = None  # a completion's prompt, said again before its answer
    tool_calls: tuple[set[str], str, str | None] | None = None  # the tools offered, the tool mode, the named tool
    tool_grammar: ToolGrammar | None = None  # switched on once an answer that may call tools starts a call
    answered: frozenset[CallKey] = frozenset()  # calls the model may not make again (`tool_repeats`)
    prose: Prepared | None = None  # how an answer that only makes such calls again is decoded anew
    taken_over: Finished | None = None  # the decoding this one replaces, whose prompt it reports

    def open(self, emit: Emit) -> Emit:
        """`emit` for the answer's events: the echoed prompt first, and tool calls parsed where there may be some."""
        if self.echo is not None:
            emit(Delta(text=self.echo))
        if self.tool_calls is not None:
            return _ToolCallFilter(emit, *self.tool_calls, answered=self.answered)
        if self.taken_over is not None:
            return partial(_replacing, self.taken_over, emit)
        return emit


def _replacing(first: Finished, emit: Emit, event: Event) -> None:
    """The events of a decoding that replaces `first`, its `Finished` with the prompt `first` read: the caller's
    prompt, tools and all. Its completion tokens are its own, within `max_tokens` as any answer's: the repeated
    calls were the server's to turn away, not the caller's to pay for."""
    if isinstance(event, Finished):
        event = replace(first, reason=event.reason, completion_tokens=event.completion_tokens)
    emit(event)


PROSE_SCHEMA = "prose"  # `Prepared.schema` for `PROSE_GBNF`


class LlamaCppEngine:
    def __init__(self, spec: ModelSpec, model_path: Path, compute: Scheduler | None = None,
                 n_threads: int | None = None, adapter: AdapterSource | None = None) -> None:
        """`compute` is the scheduler whose thread the model computes on: the server's engine registry gives
        every llama.cpp model the same one (see `EngineRegistry.compute`); an engine made alone gets its own.
        `adapter`: a fine-tuned model's LoRA adapter, applied to every context of this engine (`llama_adapter`)."""
        self.spec = spec
        self._adapter_source = adapter
        # each loaded model's adapter, for the gangs' contexts made from that model
        self._adapters: weakref.WeakKeyDictionary[Any, LoraAdapter] = weakref.WeakKeyDictionary()
        self._compute = compute or Scheduler("llama.cpp")
        self._path = model_path
        self._n_threads = n_threads or int(settings_table.read("AZURINE_THREADS", "0")) or os.cpu_count() or 1
        # one model context per class: a paused answer keeps its evaluated tokens while a higher class
        # runs (the weights are mapped from the file once and shared between the contexts)
        self._lanes: dict[Priority, EvaluatedContext] = {}
        self._formatter: Any = None
        self._template_has_tools = False
        self._load_lock = threading.Lock()
        self._gangs = self._new_gangs()

    def _new_gangs(self) -> dict[Priority, Gang]:
        # one gang per class, each with its own context: a class runs only while no higher one has work, and its
        # answers keep their evaluated tokens while they wait
        gangs: dict[Priority, Gang] = {}
        for online in (Priority.PROVISIONED, Priority.STANDARD):
            if SEQUENCES > 1:
                gangs[online] = SlotGang(self, SEQUENCES, min(SLOT_TOKENS, self.spec.context_length),
                                         partial(step_rows, self._compute, online))
        if BATCH_SEQUENCES > 1:
            gangs[Priority.BATCH] = SequenceGang(self, BATCH_SEQUENCES,
                                                 partial(step_rows, self._compute, Priority.BATCH))
        return gangs

    # loading ---------------------------------------------------------------------------------------

    def _load(self, priority: Priority = Priority.STANDARD) -> Any:
        return self._context(priority).llm

    def _context(self, priority: Priority) -> EvaluatedContext:
        with self._load_lock:
            if priority in self._lanes:
                return self._lanes[priority]
            if not self._path.exists():
                raise EngineUnavailable(
                    f"The model file for {self.spec.name} is not installed; run `azurine models install`."
                )
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            try:
                llm = Llama(model_path=str(self._path), n_ctx=self.spec.context_length, n_threads=self._n_threads,
                            n_batch=512, verbose=False)
            except ValueError as error:  # llama.cpp could not allocate it (out of memory) or read the file
                # its words name the host's files: the operator's log has them
                log.warning("the model %s could not be loaded from %s: %s", self.spec.name, self._path, error)
                raise EngineUnavailable(f"The model {self.spec.name} could not be loaded.") from error
            if self._adapter_source is not None:
                self._adapters[llm] = load_adapter(llm, self._adapter_source)
            template = llm.metadata.get("tokenizer.chat_template")
            if template:
                eos, bos = llm.token_eos(), llm.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                    bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                )
                self._template_has_tools = "tools" in template
            self._lanes[priority] = EvaluatedContext(llm)
            return self._lanes[priority]

    def adapt(self, llm: Any, ctx: Any) -> None:
        """Set this engine's adapter, where it has one, on a context made from `llm`'s model (a gang's)."""
        if self._adapter_source is None:
            return
        adapter = self._adapters.get(llm)
        if adapter is None:  # never the base model's answers under the fine-tuned model's name
            raise EngineUnavailable(f"The adapter of {self.spec.name} is not loaded.")
        adapter.apply(ctx)

    # residency (`scheduler/residency`) -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return bool(self._lanes)  # a gang's context is made from the standard lane's model

    def footprint(self, priorities: Collection[int]) -> int:
        """The bytes the model holds once it has served calls of these classes, from its file before it loads (see
        `llama_memory`): the weights once (every context maps the same file), and the KV cells of its contexts: the
        full-length context of the standard class (every call tokenizes with it) and of each class that has made one
        or has no gang, and each class's gang context (an online class's slots, the batch class's shared cache). A
        tenth more for llama.cpp's compute buffers (measured: a full-length context took 7% more than this on SmolLM2,
        9% on Qwen2.5-0.5B). A seeded answer, or one too long for a slot, makes its class's full-length context when it
        starts: counted from the next call on."""
        if not self._path.exists():
            return 0
        lanes = {Priority.STANDARD, *list(self._lanes)} | {p for p in priorities if p not in self._gangs}
        cells = len(lanes) * self.n_ctx
        for priority in priorities:
            gang = self._gangs.get(Priority(priority))
            if isinstance(gang, SlotGang):
                cells += gang.width * gang.size
            elif gang is not None:
                cells += self.n_ctx
        return int((self._path.stat().st_size + cells * kv_cell_bytes(self._path)) * 1.1)

    def unload(self) -> None:
        """Forget the model and every context made from it; the next call loads it again. Only references are dropped
        (llama-cpp-python frees the model and its contexts with its last one): an answer whose client left may still
        take a step on the compute thread, and what that step uses lives until it ends. New gangs replace the old, so a
        gang run still ending such an answer takes no new answer into the old contexts."""
        with self._load_lock:
            self._lanes.clear()
            self._adapters.clear()
            self._gangs = self._new_gangs()

    @property
    def n_ctx(self) -> int:
        return self.spec.context_length

    # the interface ---------------------------------------------------------------------------------

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder,
             stream: bool = True) -> AsyncIterator[Event]:
        return self._answer(lambda: self._chat_tokens(self._load(), prompt, sampling), sampling, order, "messages")

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: WorkOrder,
                 stream: bool = True) -> AsyncIterator[Event]:
        return self._answer(lambda: self._complete_tokens(self._load(), prompt, sampling), sampling, order, "prompt")

    async def embed(self, inputs: list[str] | list[list[int]], order: WorkOrder | None = None) -> Any:
        raise EngineError("embeddings are not served by this engine", code="OperationNotSupported")

    async def close(self) -> None:
        self._lanes.clear()
        self._adapters.clear()

    def tokenize(self, text: str) -> list[int]:
        return self._load().tokenize(text.encode("utf-8"), add_bos=False, special=False)

    # routing ---------------------------------------------------------------------------------------

    async def _answer(self, prepare: Callable[[], Prepared], sampling: Sampling, order: WorkOrder,
                      param: str) -> AsyncIterator[Event]:
        # the first use loads the model: off the event loop, like the tokenizing
        prepared = await asyncio.to_thread(prepare)
        self._check_length(len(prepared.tokens), sampling.max_tokens, param)
        async for event in self._decode(prepared, sampling, order, param):
            if isinstance(event, _RepeatedCalls) and prepared.prose is not None:  # decoded again, as prose
                async for rest in self._decode(replace(prepared.prose, taken_over=event.state), sampling, order,
                                               param):
                    yield rest
                return
            yield event

    async def _decode(self, prepared: Prepared, sampling: Sampling, order: WorkOrder,
                      param: str) -> AsyncIterator[Event]:
        gang = self._gang_for(order, sampling, prepared)
        if gang is not None:
            events = self._compute.stream(
                order, lambda emit: self._sequence(prepared, sampling, order, emit, param), gang)
        else:
            events = self._compute.stream(order, lambda emit: self._generate(prepared, sampling, order, emit, param))
        async for event in events:
            if isinstance(event, _RepeatedCalls):
                yield event
                return
            if isinstance(event, HandedOver):  # its slot is full: the answer goes on alone
                async for rest in self._compute.stream(order, partial(self._carry_on, event.state)):
                    yield rest
                return
            yield event

    def _gang_for(self, order: WorkOrder, sampling: Sampling, prepared: Prepared) -> Gang | None:
        """The gang that decodes the request beside others of its class, if its prompt fits one of the gang's slots.
        A seeded request runs alone in its class's own context: its seed promises the same answer whatever else runs,
        and numbers summed in a batch of several differ in their last bits. So does a prompt too long for a slot."""
        if sampling.seed is not None:
            return None
        gang = self._gangs.get(order.priority)
        if isinstance(gang, SlotGang) and not gang.fits(len(prepared.tokens)):
            return None
        return gang

    # steps on the compute thread -------------------------------------------------------------------

    def _sequence(self, prepared: Prepared, sampling: Sampling, order: WorkOrder, emit: Emit, param: str) -> Sequence:
        relay = _Relay(emit)
        llm = self._load()
        events = prepared.open(relay)
        sequence = Sequence(self, llm, prepared.tokens, sampling, prepared.schema, order,
                            events, param, _StopMatcher(sampling.stop))
        if isinstance(events, _ToolCallFilter) and prepared.answered:
            sequence.enough = events.repeats_in_full
        if prepared.tool_grammar is not None:
            sequence.sampler = LazyToolSampler(sequence.sampler, prepared.tool_grammar, llm._model.vocab,
                                               _picking_samplers(sampling))
        sequence.relay = relay
        return sequence

    def _carry_on(self, sequence: Sequence, emit: Emit) -> Iterator[None]:
        """An answer that outgrew its slot, in its class's context of the model's full length: what it has read and
        said is evaluated there, and it goes on from the token it sampled last, with its sampler, stops and filters."""
        sequence.relay.target = emit
        yield from self._alone(self._context(sequence.order.priority), sequence, sequence.tokens + sequence.generated)

    def _chat_tokens(self, llm: Any, prompt: ChatPrompt, sampling: Sampling) -> Prepared:
        """The prompt's tokens, its grammar, and how its events are filtered where the answer may call tools."""
        if self._formatter is None:
            raise EngineError(f"{self.spec.name} has no chat template", code="OperationNotSupported")
        messages = template_messages(prompt.messages)
        tools = prompt.tools if prompt.tool_choice != "none" else None
        tokens = self._templated(llm, messages, tools)
        schema, mode = _grammar_for(sampling, prompt)
        if mode == "none":
            return Prepared(tokens, schema)
        names = {t["function"]["name"] for t in tools or []}
        named = prompt.tool_choice["function"]["name"] if mode == "named" else None  # type: ignore[index]
        if mode != "auto":
            return Prepared(tokens, schema, tool_calls=(names, mode, named))
        lazy = _lazy_grammar(json.dumps(tools), prompt.parallel_tool_calls)
        answered = frozenset[CallKey]() if repeats_allowed() else answered_calls(prompt.messages)
        prose = self._prose(llm, messages) if answered else None
        return Prepared(tokens, schema, tool_calls=(names, mode, named), tool_grammar=lazy,
                        answered=answered if prose is not None else frozenset(), prose=prose)

    def _prose(self, llm: Any, messages: list[dict[str, Any]]) -> Prepared | None:
        """How a repeat is answered: as with `tool_choice: none` (the tools not offered), under the prose grammar; None
        where the template will not render the conversation without tools, and repeats are then returned as calls."""
        try:
            return Prepared(self._templated(llm, messages, None), PROSE_SCHEMA)
        except EngineError:
            return None

    def _templated(self, llm: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        """The conversation's tokens, by the model's chat template, with `tools` offered."""
        if tools and not self._template_has_tools:
            messages = [{"role": "system", "content": tools_system_prompt(tools)}, *messages]
        try:
            text = self._formatter(messages=messages, tools=tools).prompt
        except Exception as error:  # a template refusing the conversation (e.g. roles out of order)
            raise EngineError(f"Invalid conversation for this model: {error}", param="messages") from error
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def _complete_tokens(self, llm: Any, prompt: TextPrompt, sampling: Sampling) -> Prepared:
        schema, _ = _grammar_for(sampling, None)
        if prompt.tokens is not None:
            if any(not (0 <= t < llm.n_vocab()) for t in prompt.tokens):
                raise EngineError(f"Invalid token in prompt: ids must be in [0, {llm.n_vocab()}).", param="prompt")
            echo = llm.detokenize(list(prompt.tokens)).decode("utf-8", errors="replace") if prompt.echo else None
            return Prepared(list(prompt.tokens), schema, echo=echo)
        if prompt.suffix is not None:
            if not self.spec.fill_in_the_middle:
                raise EngineError(f"suffix is not supported by {self.spec.name}", param="suffix")
            text = f"<|fim_prefix|>{prompt.text}<|fim_suffix|>{prompt.suffix}<|fim_middle|>"
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        else:
            tokens = llm.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False)
        if not tokens:
            tokens = [self._start_of_text(llm)]
        return Prepared(tokens, schema, echo=prompt.text if prompt.echo else None)

    def _start_of_text(self, llm: Any) -> int:
        """The token an empty prompt is answered from: the document separator, as GPT models see an empty prompt
        (`<|endoftext|>`), else the model's beginning-of-sequence token."""
        separator = llm.tokenize(b"<|endoftext|>", add_bos=False, special=True)
        if len(separator) == 1:
            return separator[0]
        if llm.token_bos() != -1:
            return int(llm.token_bos())
        raise EngineError(f"{self.spec.name} cannot complete an empty prompt.", param="prompt")

    def _check_length(self, n_prompt: int, max_tokens: int | None, param: str) -> None:
        what = "messages" if param == "messages" else "prompt"
        if n_prompt >= self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, your {what} resulted in "
                f"{n_prompt} tokens. Please reduce the length of the {what}.", param)
        if max_tokens is not None and n_prompt + max_tokens > self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you requested "
                f"{n_prompt + max_tokens} tokens ({n_prompt} in the {what}, {max_tokens} in the completion). "
                f"Please reduce the length of the {what} or completion.", param)

    def _sampler(self, llm: Any, sampling: Sampling, schema: str | None) -> Any:
        from llama_cpp import _internals
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        sampler = _internals.LlamaSampler()
        n_vocab = llm.n_vocab()
        if sampling.logit_bias:
            bias = {t: b for t, b in sampling.logit_bias.items() if 0 <= t < n_vocab}
            if bias:
                sampler.add_logit_bias(n_vocab, bias)
        if sampling.presence_penalty or sampling.frequency_penalty:
            sampler.add_penalties(n_vocab, 64, 1.0, sampling.frequency_penalty, sampling.presence_penalty)
        if schema is not None:
            try:
                grammar = (LlamaGrammar.from_string(JSON_GBNF, verbose=False) if schema == "json"
                           else LlamaGrammar.from_string(PROSE_GBNF, verbose=False) if schema == PROSE_SCHEMA
                           else LlamaGrammar.from_json_schema(schema, verbose=False))
            except Exception as error:
                raise EngineError(f"Invalid schema for response_format: {error}",
                                  param="response_format") from error
            sampler.add_grammar(llm._model, grammar)
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        # the samplers that pick the token come last (`_picking_samplers` counts them): a tool-call grammar switched
        # on mid-answer goes in before them
        if sampling.temperature <= 0:
            sampler.add_greedy()
        else:
            if sampling.top_p < 1.0:
                sampler.add_top_p(sampling.top_p, 1)
            sampler.add_temp(sampling.temperature)
            sampler.add_dist(seed & 0xFFFFFFFF)
        return sampler

    def _logprob(self, llm: Any, token: int, top: int, ctx: Any = None, row: int = -1) -> TokenLogprob:
        """The token's logprob from the logits at `row` of `ctx` (by default, the last of `llm`'s own context)."""
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx if ctx is not None else llm.ctx, row),
                                       shape=(llm.n_vocab(),))
        peak = logits.max()
        if not np.isfinite(peak):  # NaN or inf logits: a broken evaluation, never sent as a number
            raise ContextStateError("The model produced logits that are not finite numbers.")
        shifted = logits - peak
        logprobs = shifted - np.log(np.exp(shifted).sum())

        def piece(t: int) -> tuple[str, list[int]]:
            raw = llm.detokenize([int(t)])
            return raw.decode("utf-8", errors="replace"), list(raw)

        text, raw = piece(token)
        tops = []
        if top:
            best = np.argpartition(-logprobs, top)[:top]
            for t in best[np.argsort(-logprobs[best])]:
                t_text, t_raw = piece(int(t))
                tops.append(TopLogprob(token=t_text, logprob=float(logprobs[t]), bytes=t_raw))
        chosen = float(logprobs[token])
        if not all(np.isfinite(v) for v in (chosen, *(t.logprob for t in tops))):
            raise ContextStateError("The model produced a log probability that is not a finite number.")
        return TokenLogprob(token=text, logprob=chosen, bytes=raw, top_logprobs=tops)

    def _generate(self, prepared: Prepared, sampling: Sampling, order: WorkOrder, emit: Emit,
                  param: str) -> Iterator[None]:
        sequence = self._sequence(prepared, sampling, order, emit, param)
        context = self._context(order.priority)
        sequence.reused = context.resume_point(sequence.tokens)  # where `prefill` starts, in this same step
        yield from self._alone(context, sequence, sequence.tokens)

    def _alone(self, context: EvaluatedContext, sequence: Sequence, tokens: list[int]) -> Iterator[None]:
        """Decode `sequence` by itself in `context`, after evaluating `tokens` (what it has read, and said so far)."""
        try:
            yield from context.prefill(tokens, lambda: sequence.order.cancelled)
            while not sequence.order.cancelled:
                if sequence.sample(context.llm._ctx, -1):
                    return
                context.eval(sequence.todo)
                yield
            sequence.end("stop")
        except BaseException:
            # a step that failed, or a request dropped mid-step, may have left cells half-written
            context.reset()
            raise
