"""A usage meter for tests: what an engine call held, added and released."""

from __future__ import annotations


class CountingMeter:
    def __init__(self) -> None:
        self.holds = self.releases = 0
        self.added: list[tuple[int, int, int]] = []
        self.audio_seconds = 0.0

    def hold(self) -> None:
        self.holds += 1

    def add(self, prompt_index: int, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
            audio_seconds: float = 0.0) -> None:
        self.added.append((prompt_index, prompt_tokens, completion_tokens))
        self.audio_seconds += audio_seconds

    def release(self) -> None:
        self.releases += 1
