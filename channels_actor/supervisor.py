"""The supervisor actor: owns every channel actor of an endpoint and runs ``terminate``.

Theory of operation
-------------------
Channels are temporary, as in Phoenix: a crashed channel is not restarted;
the client gets ``phx_error`` and rejoins. What the supervisor guarantees is
the end of each life: a connection tells it ``WatchChannel`` before the
channel actor starts, the channel actor tells it ``ChannelExited`` once when
it ends, and the supervisor calls ``terminate(reason, socket)`` exactly once,
on its own thread, with the channel actor already stopped, so ``terminate``
never overlaps another callback of that channel.

``DrainChannels`` (``Endpoint.stop``) shuts every child down and sets an event
when the last one has terminated. The supervisor never asks a channel
anything: children only ever tell it, so no cycle of blocking asks exists.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pykka

from ._messages import ChannelExited, DrainChannels, WatchChannel
from ._pool import ServiceActor

__all__ = ["ChildCount", "Supervisor"]

logger = logging.getLogger("channels_actor.supervisor")


class ChildCount:
    """Asked of the supervisor: the number of channel actors alive."""


class Supervisor(ServiceActor):
    """Owns channel actors; calls ``terminate`` once per channel."""

    thread_name = "channels_actor-supervisor"

    def __init__(self) -> None:
        super().__init__()
        self._children: dict[pykka.ActorRef[Any], WatchChannel] = {}
        self._drained: list[threading.Event] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChannelExited):
            self._exited(message)
        elif isinstance(message, WatchChannel):
            self._children[message.ref] = message
        elif isinstance(message, DrainChannels):
            self._drain(message)
        elif isinstance(message, ChildCount):
            return len(self._children)
        else:
            return super().on_receive(message)
        return None

    def _exited(self, message: ChannelExited) -> None:
        watched = self._children.pop(message.ref, None)
        if watched is None:
            logger.warning("Supervisor: exit of an unknown channel %s ignored", message.ref)
            return
        try:
            message.channel.terminate(message.reason, message.socket)
        except Exception:
            logger.exception(
                "%s.terminate(%r) raised", type(message.channel).__name__, message.reason
            )
        logger.debug("%s terminated: %r", watched.name, message.reason)
        if not self._children and self._drained:
            for event in self._drained:
                event.set()
            self._drained.clear()

    def _drain(self, message: DrainChannels) -> None:
        if not self._children:
            message.done.set()
            return
        self._drained.append(message.done)
        for watched in list(self._children.values()):
            # An actor already ending has its ChannelExited queued behind this message.
            watched.actor.request_shutdown(message.reason)
