"""Counters of the events operators ask about: drops, closes, pauses, and how long.

Each endpoint owns one :class:`Counters`. The parts of the runtime that drop,
close or pause something count it here, from whatever thread they run on;
``Endpoint.stats()`` returns a snapshot. Counting takes a lock, so count
rare events (a slow consumer closed, a read paused), never one per delivery.
"""

from __future__ import annotations

import threading

__all__ = ["Counters"]


class Counters:
    """Named counters and accumulated durations, safe to update from any thread."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (created at 0)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def add_seconds(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to the duration ``name`` (created at 0.0)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0.0) + seconds

    def get(self, name: str) -> float:
        """The current value of ``name`` (0 when never counted)."""
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, float]:
        """A copy of every counter and duration."""
        with self._lock:
            return dict(self._values)
