"""A tool-call grammar switched on in an answer's llama.cpp sampler chain while the answer writes a call.

Until then the chain is the answer's own, untouched, so an answer that never starts a call is sampled exactly as
it would be without tools' grammar. After each token the answer's recent text (the tokens' pieces as llama.cpp's
grammar sees them, special tokens included) is searched for the trigger (`tool_grammar`), only as far back as a
trigger can span. When it matches, a llama.cpp lazy grammar sampler is made with the same pattern and given the
tokens from the one the match starts in: llama.cpp finds the match in them, feeds its grammar the text from the
match on (part of a token where the match starts mid-token), and constrains every later token. That sampler goes
into the chain before the samplers that pick the token (greedy, or top-p, temperature and the seeded draw), which
keep their state, so what follows is drawn from the same chain with the grammar's mask applied. Once the call's form
is closed (`tool_calls.call_end`) the grammar leaves the chain, and the answer is watched for a next call.

llama.cpp's own trigger search runs over all the text since the answer began, after every token (`std::regex`,
whose backtracking recurses per character); the grammar is made only once the trigger has matched here, so that
search only ever sees the few tokens of the call's opening.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from azurine.engines.tool_calls import call_end
from azurine.engines.tool_grammar import TRIGGER_SPAN, ToolGrammar, safe_rest

log = logging.getLogger("azurine")


def token_piece(vocab: Any, token: int) -> bytes:
    """The token's text as llama.cpp's grammar reads it (special tokens written out, no space stripped)."""
    import llama_cpp

    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


class LazyToolSampler:
    """An answer's sampler chain, with the tool-call grammar put into it while the answer writes a call."""

    def __init__(self, chain: Any, grammar: ToolGrammar, vocab: Any, picking: int) -> None:
        self.chain = chain  # a llama_cpp._internals.LlamaSampler
        self.grammar = grammar
        self.vocab = vocab
        self.picking = picking  # the samplers at the chain's end that pick the token
        self.calls = 0  # calls constrained so far
        self._on = False  # whether the grammar is in the chain
        self._text = b""  # the answer's recent text; while the grammar is on, the call's text
        self._tokens: list[tuple[int, int]] = []  # its tokens, with where each ends in `_text`

    def sample(self, ctx: Any, idx: int) -> int:
        token = self.chain.sample(ctx, idx)
        if self._on:
            self._text += token_piece(self.vocab, token)
            if call_end(self._text.decode("utf-8", errors="replace")) is not None:
                self._switch_off()
        else:
            self._watch(token)
        return token

    def _watch(self, token: int) -> None:
        searched = max(0, len(self._text) - TRIGGER_SPAN)  # a match that ended before this token was found then
        self._text += token_piece(self.vocab, token)
        self._tokens.append((token, len(self._text)))
        match = self.grammar.trigger(self._text, searched)
        if match is None:
            self._forget_old()
            return
        replay = [t for t, end in self._tokens if end > match.start()]
        self._text, self._tokens = self._text[match.start():], []
        if not safe_rest(self._text[match.end() - match.start():]):
            log.info("a tool call's opening ended mid-token in text its grammar would refuse; left unconstrained")
            self._text = b""
            return
        self._switch_on(replay)

    def _forget_old(self) -> None:
        """Keep only the tokens whose text a trigger could still reach."""
        if len(self._text) < 4 * TRIGGER_SPAN:
            return
        first = next(i for i, (_, end) in enumerate(self._tokens) if end > len(self._text) - 2 * TRIGGER_SPAN)
        offset = self._tokens[first - 1][1] if first else 0
        self._tokens = [(t, end - offset) for t, end in self._tokens[first:]]
        self._text = self._text[offset:]

    def _switch_on(self, replay: list[int]) -> None:
        import llama_cpp

        patterns = (ctypes.c_char_p * 1)(self.grammar.pattern.encode())
        grammar = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            self.vocab, self.grammar.gbnf.encode(), b"root", patterns, 1, None, 0)
        if not grammar:
            log.warning("the tool-call grammar did not parse; this answer's call is left unconstrained")
            self._text = b""
            return
        for token in replay:  # the pattern matches once the last of them is in: the grammar is on from there
            llama_cpp.llama_sampler_accept(grammar, token)
        chain = self.chain.sampler
        n = llama_cpp.llama_sampler_chain_n(chain)
        picking = [llama_cpp.llama_sampler_chain_remove(chain, i) for i in range(n - 1, n - 1 - self.picking, -1)]
        llama_cpp.llama_sampler_chain_add(chain, grammar)
        for sampler in reversed(picking):
            llama_cpp.llama_sampler_chain_add(chain, sampler)
        self._on = True
        self.calls += 1

    def _switch_off(self) -> None:
        """The call is closed: the grammar leaves the chain, and the answer is watched for the next call."""
        import llama_cpp

        chain = self.chain.sampler
        at = llama_cpp.llama_sampler_chain_n(chain) - self.picking - 1
        llama_cpp.llama_sampler_free(llama_cpp.llama_sampler_chain_remove(chain, at))
        self._on, self._text = False, b""
