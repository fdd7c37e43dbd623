"""The supervisor actor: owns every channel actor of an endpoint and runs ``terminate``.

Theory of operation
-------------------
Channels are temporary, as in Phoenix: a crashed channel is not restarted;
the client gets ``phx_error`` and rejoins. What the supervisor guarantees is
the end of each life: a connection records a ``WatchChannel`` in the
endpoint's :class:`Children` before the channel actor starts (a dict under a
lock rather than a message, so that a join does not wake this thread), the
channel actor tells the supervisor ``ChannelExited`` once when it ends, and
the supervisor calls ``terminate(reason, socket)`` exactly once, on its own
thread, with the channel actor already stopped, so ``terminate`` never
overlaps another callback of that channel. Then each attached service
(``RuntimeService``, such as a Presence) hears of the end, so what it holds
for that channel goes with it whatever the reason.

``DrainChannels`` (``Endpoint.stop``) shuts every child down and sets an event
when the last one has terminated. The supervisor never asks a channel
anything: children only ever tell it, so no cycle of blocking asks exists.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pykka

from ._messages import ChannelExited, DrainChannels, WatchChannel
from ._pool import ServiceActor
from ._redact import redactor_for

if TYPE_CHECKING:
    from ._types import RuntimeService

__all__ = ["ChildCount", "Children", "Supervisor"]

logger = logging.getLogger("channels_actor.supervisor")


class ChildCount:
    """Asked of the supervisor: the number of channel actors alive."""


class Children:
    """The channel actors an endpoint supervises: connections add, the supervisor removes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[pykka.ActorRef[Any], WatchChannel] = {}

    def add(self, watch: WatchChannel) -> None:
        with self._lock:
            self._watched[watch.handle.ref] = watch

    def pop(self, ref: pykka.ActorRef[Any]) -> WatchChannel | None:
        with self._lock:
            return self._watched.pop(ref, None)

    def snapshot(self) -> list[WatchChannel]:
        with self._lock:
            return list(self._watched.values())

    def __len__(self) -> int:
        return len(self._watched)


class Supervisor(ServiceActor):
    """Owns channel actors; calls ``terminate`` once per channel."""

    thread_name = "channels_actor-supervisor"

    def __init__(self, children: Children, services: list[RuntimeService] | None = None) -> None:
        super().__init__()
        self._children = children
        self._services = services if services is not None else []
        self._drained: list[threading.Event] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChannelExited):
            self._exited(message)
        elif isinstance(message, DrainChannels):
            self._drain(message)
        elif isinstance(message, ChildCount):
            return len(self._children)
        else:
            return super().on_receive(message)
        return None

    def _exited(self, message: ChannelExited) -> None:
        watched = self._children.pop(message.ref)
        if watched is None:
            logger.warning("Supervisor: exit of an unknown channel %s ignored", message.ref)
            return
        try:
            message.channel.terminate(message.reason, message.socket)
        except Exception:
            logger.exception(
                "%s.terminate(%s) raised",
                type(message.channel).__name__,
                redactor_for(message.socket).preview(message.reason),
            )
        for service in self._services:
            try:
                service.channel_exited(message.ref)
            except Exception:
                logger.exception("%r.channel_exited raised", service)
        if logger.isEnabledFor(logging.DEBUG):
            shown = redactor_for(message.socket).preview(message.reason)
            logger.debug("%s terminated: %s", watched.name, shown)
        if not len(self._children) and self._drained:
            for event in self._drained:
                event.set()
            self._drained.clear()

    def _drain(self, message: DrainChannels) -> None:
        if not len(self._children):
            message.done.set()
            return
        self._drained.append(message.done)
        for watched in self._children.snapshot():
            # An actor already ending has its ChannelExited queued behind this message.
            watched.handle.request_shutdown(message.reason)
