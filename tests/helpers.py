"""Test helpers: thread-safe recorders that are waited on, never slept on."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Callable

from channels_actor import Endpoint, Message, Reply, Socket, SocketHandler
from channels_actor.serializers.noop import NoopSerializer
from channels_actor.transports.memory import MemoryTransport


class Events:
    """Thread-safe record of what callbacks saw, with waits instead of sleeps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[tuple[object, ...]] = []

    def add(self, *item: object) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 2.0) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.items), timeout)
            assert ok, f"condition not met within {timeout}s; events: {self.items}"
            return list(self.items)

    def of(self, kind: str) -> list[tuple[object, ...]]:
        with self._cond:
            return [item for item in self.items if item[0] == kind]


_NOOP = NoopSerializer()


class Recorder:
    """Frames received by many in-memory connections, keyed by connection number."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.frames: dict[int, list[Any]] = defaultdict(list)
        self.total = 0

    def sink(self, number: int) -> Callable[[Any], None]:
        def put(frame: Any) -> None:
            with self._cond:
                self.frames[number].append(frame)
                self.total += 1
                self._cond.notify_all()

        return put

    def wait_total(self, total: int, timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.total >= total, timeout)
            assert ok, f"only {self.total} of {total} frames arrived within {timeout}s"

    def wait_for(self, predicate: Callable[[dict[int, list[Any]]], bool], timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.frames), timeout)
            assert ok, f"condition not met within {timeout}s"

    def replies(self, number: int) -> list[Reply]:
        with self._cond:
            return [f for f in self.frames[number] if isinstance(f, Reply)]

    def messages(self, number: int, event: str) -> list[Message]:
        with self._cond:
            return [f for f in self.frames[number] if isinstance(f, Message) and f.event == event]


def open_memory_connection(endpoint: Endpoint, handler: SocketHandler, recorder: Recorder,
                           number: int, **assigns: Any):  # type: ignore[no-untyped-def]
    """Open a raw in-memory connection whose frames go to ``recorder`` under ``number``."""
    endpoint.start_runtime()
    socket = Socket(assigns=dict(assigns), endpoint=endpoint, handler=handler,
                    serializer=_NOOP, pubsub=endpoint.pubsub)
    return endpoint.open_connection(socket, MemoryTransport(recorder.sink(number)))
