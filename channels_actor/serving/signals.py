"""Signals as bytes on a socket, so that a process can wait for a signal and a socket at once.

Both processes of ``channels-actor serve`` spend their life in one
``select``: the parent on its workers' control sockets, a worker on its
parent's. A Python signal handler runs between two bytecodes of the main
thread and must not take locks; instead ``signal.set_wakeup_fd`` has the
interpreter write each signal's number to our socket, the handlers do
nothing, and the main loop reads the numbers when the selector says so.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterable
from types import FrameType
from typing import Any, Self

__all__ = ["SignalWakeup"]


def _noted(signum: int, frame: FrameType | None) -> None:
    """The handler: nothing to do, the wakeup socket already carries the signal."""


class SignalWakeup:
    """While entered, ``signals`` no longer act but arrive as numbers from :meth:`received`.

    Use from the main thread (as ``signal.signal`` requires); :meth:`fileno`
    is what a selector waits on.
    """

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._signals = tuple(signals)
        self._numbers = {int(signum) for signum in self._signals}
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd = -1
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> Self:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _noted) for signum in self._signals}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()

    def fileno(self) -> int:
        return self._reader.fileno()

    def received(self) -> list[signal.Signals]:
        """The signals that arrived since the last call, oldest first (never blocks)."""
        data = b""
        while True:
            try:
                chunk = self._reader.recv(512)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return [signal.Signals(number) for number in data if number in self._numbers]
