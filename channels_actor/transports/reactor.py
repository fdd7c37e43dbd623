"""One I/O thread that reads every WebSocket and finishes writes that would block.

Theory of operation
-------------------
simple-websocket gives each connection a reader thread of its own; with
10,000 connections that is 10,000 threads and most of the process's memory.
Here a single thread waits on all sockets with the selector (epoll on Linux)
and calls each connection's ``on_readable`` when bytes arrive. Writes happen
in the thread that produces the frame, without blocking (``MSG_DONTWAIT``);
only what the kernel does not take at once waits here for ``on_writable``.

Registration changes come from other threads through :meth:`call_soon`, so
the selector is only ever touched by its own thread. ``every`` runs
periodic work (the idle sweep) on the same thread, ``call_later`` one-off
work (flow control looking whether a pause can end).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Reactor", "Selectable"]

logger = logging.getLogger("channels_actor.transport")


class Selectable(Protocol):
    """What the reactor calls back; both methods run on the reactor thread."""

    def on_readable(self) -> None: ...

    def on_writable(self) -> None: ...


class Reactor:
    """The selector loop shared by an endpoint's WebSocket connections."""

    def __init__(self, name: str = "channels_actor-io") -> None:
        self._name = name
        self._selector: selectors.BaseSelector | None = None
        self._calls: deque[Callable[[], Any]] = deque()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._periodic: list[list[Any]] = []  # [interval, next_due, fn]
        self._later: list[tuple[float, int, Callable[[], Any]]] = []  # heap by due time
        self._later_seq = itertools.count()
        self._lock = threading.Lock()
        self._wake_sent = False  # one wake-up byte at a time: a busy loop is not woken again

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the loop and close the selector (idempotent)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._thread = None
        self.call_soon(self._request_stop)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def in_loop(self) -> bool:
        """True on the reactor's own thread."""
        return threading.current_thread() is self._thread

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the reactor thread (from any thread)."""
        self._calls.append(fn)
        if self._wake_sent:
            return  # a wake-up is on its way, and the loop runs every queued call after it
        self._wake_sent = True
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # already awake, or stopping

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the reactor thread once, ``delay`` seconds from now (from any thread)."""
        item = (time.monotonic() + delay, next(self._later_seq), fn)
        if self.in_loop():
            heapq.heappush(self._later, item)
        else:  # the heap is the loop's own, like the selector
            self.call_soon(lambda: heapq.heappush(self._later, item))

    def every(self, interval: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the reactor thread every ``interval`` seconds."""
        self._periodic.append([interval, time.monotonic() + interval, fn])

    # loop-thread only ---------------------------------------------------------

    def register(self, sock: socket.socket, handler: Selectable, write: bool = False) -> None:
        assert self._selector is not None
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        self._selector.register(sock, events, handler)

    def want_write(self, sock: socket.socket, handler: Selectable, write: bool) -> None:
        self.set_interest(sock, handler, read=True, write=write)

    def set_interest(
        self, sock: socket.socket, handler: Selectable, *, read: bool, write: bool
    ) -> None:
        """Wait for ``sock`` to be readable and/or writable; neither leaves it unwatched.

        A socket that is not waited on for reading (its connection paused by
        flow control) is not read: its kernel buffer fills and TCP slows
        the peer down.
        """
        selector = self._selector
        assert selector is not None
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        try:
            key = selector.get_key(sock)
        except (KeyError, ValueError):
            key = None
        try:
            if not events:
                if key is not None:
                    selector.unregister(sock)
            elif key is None:
                selector.register(sock, events, handler)
            elif key.events != events:
                selector.modify(sock, events, handler)
        except (KeyError, ValueError, OSError):
            pass  # closed meanwhile

    def unregister(self, sock: socket.socket) -> None:
        assert self._selector is not None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _request_stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._stopping:
                timeout = self._next_timeout()
                for key, mask in selector.select(timeout):
                    handler = key.data
                    if handler is None:
                        self._drain_wakeups()
                        continue
                    try:
                        if mask & selectors.EVENT_WRITE:
                            handler.on_writable()
                        if mask & selectors.EVENT_READ:
                            handler.on_readable()
                    except Exception:
                        logger.exception("I/O handler %r failed", handler)
                self._run_calls()
                self._run_periodic()
        finally:
            self._run_calls()
            for key in list(selector.get_map().values()):
                if key.data is None:
                    continue
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(key.fileobj)
            selector.close()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._selector = None
            self._wake_r = self._wake_w = None

    def _drain_wakeups(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # Cleared after reading (cleared before, a byte sent meanwhile would be read
        # here and leave the flag set with no byte on its way): a call queued before
        # this point is run by this iteration's _run_calls, one queued after sends a
        # new byte.
        self._wake_sent = False

    def _run_calls(self) -> None:
        calls = self._calls
        while calls:
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                logger.exception("Reactor call %r failed", fn)

    def _next_timeout(self) -> float | None:
        if self._calls:
            return 0
        if not self._periodic and not self._later:
            return None
        due: float = min([item[1] for item in self._periodic] + [d for d, _, _ in self._later[:1]])
        return max(0.0, due - time.monotonic())

    def _run_periodic(self) -> None:
        now = time.monotonic()
        later = self._later
        while later and later[0][0] <= now:
            fn = heapq.heappop(later)[2]
            try:
                fn()
            except Exception:
                logger.exception("Reactor call %r failed", fn)
        for item in self._periodic:
            if item[1] <= now:
                item[1] = now + item[0]
                try:
                    item[2]()
                except Exception:
                    logger.exception("Periodic reactor task %r failed", item[2])
