"""Who goes first on a shared engine: the classes Azure sells, in the order their promises demand."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    PROVISIONED = 0  # reserved throughput: steady latency is what was bought
    STANDARD = 1  # pay-as-you-go, best effort within its rate limits
    BATCH = 2  # whatever is left over, at half price
