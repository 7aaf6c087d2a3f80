"""Waiting work of one class: a queue per deployment, the queues taking turns.

Both the compute scheduler and the upstream gates choose the next request of a class so: the first of the queue
whose turn it is, and that queue then goes to the back, so one deployment's burst cannot starve another's request.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Turns(Generic[T]):
    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()  # in the order the queues take turns

    def __len__(self) -> int:
        return sum(len(items) for items in self._queues.values())

    def __iter__(self) -> Iterator[T]:
        for items in self._queues.values():
            yield from items

    def push(self, queue: str, item: T) -> None:
        self._queues.setdefault(queue, deque()).append(item)

    def pop(self) -> T | None:
        """The first item of the queue whose turn it is; that queue goes to the back."""
        if not self._queues:
            return None
        queue, items = next(iter(self._queues.items()))
        item = items.popleft()
        del self._queues[queue]
        if items:
            self._queues[queue] = items
        return item

    def remove(self, queue: str, item: T) -> bool:
        """Take `item` out of `queue`; whether it was waiting there."""
        items = self._queues.get(queue)
        if items is None or item not in items:
            return False
        items.remove(item)
        if not items:
            del self._queues[queue]
        return True
