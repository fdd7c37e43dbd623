"""PubSub: publish broadcasts to topic subscribers through the registry actor.

``PubSub`` is the facade every part of the runtime uses: it checks and encodes
the message in the publisher's thread (so a bad message raises
:class:`BroadcastError` where it was published) and tells the registry actor
to dispatch it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket as _stdlib_socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from .._redact import preview
from ..errors import BroadcastError, ChannelTimeout
from ..message import Broadcast
from ..serializers.base import encode_payload
from .registry import Dispatch, Registry, Stats, Subscribe, Subscriber, Unsubscribe, UnsubscribeAll

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PubSub", "Subscriber"]

logger = logging.getLogger("channels_actor.pubsub")

_node_counter = itertools.count(1)


class PubSub:
    """Topic subscriptions and broadcasts for one endpoint (this node only).

    Args:
        node_name: this node's name, unique in a cluster; defaults to
            ``<hostname>-<pid>-<n>``.
    """

    def __init__(self, node_name: str | None = None) -> None:
        self.node_name = node_name or (
            f"{_stdlib_socket.gethostname()}-{os.getpid()}-{next(_node_counter)}"
        )
        self._registry: pykka.ActorRef[Registry] | None = None
        #: Encoded payloads larger than this raise BroadcastError (None: no limit);
        #: the endpoint sets its ``max_frame_size``.
        #: payload bytes a broadcast may have (the endpoint sets its max_frame_size)
        self.max_message_size: int | None = None

    # lifecycle --------------------------------------------------------------

    def start(self) -> PubSub:
        """Start the registry actor (idempotent)."""
        if self._registry is None or not self._registry.is_alive():
            self._registry = Registry.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the registry actor after it has handled what it was told (idempotent)."""
        registry, self._registry = self._registry, None
        if registry is not None and registry.is_alive():
            try:
                registry.stop(block=True, timeout=timeout)
            except pykka.Timeout:
                logger.warning("The PubSub registry did not stop within %.1fs", timeout)

    def backlog(self) -> int:
        """Messages waiting in the registry's inbox now (0 when it is not running)."""
        registry = self._registry
        if registry is None:
            return 0
        inbox: Any = registry.actor_inbox
        return int(inbox.qsize())

    def _ref(self) -> pykka.ActorRef[Registry]:
        registry = self._registry
        if registry is None:
            msg = "The PubSub is not running: start the endpoint (or PubSub.start()) first"
            raise BroadcastError(msg)
        return registry

    # subscriptions ----------------------------------------------------------

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        """Add ``subscriber`` to ``topic``; one subscription per key and topic."""
        self._ref().tell(Subscribe(topic, subscriber))

    def subscribe_callback(self, topic: str, callback: Callable[[Broadcast], Any]) -> None:
        """Call ``callback(broadcast)`` on the registry thread for each broadcast to ``topic``."""
        self.subscribe(topic, Subscriber(key=callback, callback=callback))

    def unsubscribe(self, topic: str, key: Any) -> None:
        """Remove the subscription of ``key`` (a callback, a channel ref) from ``topic``."""
        self._ref().tell(Unsubscribe(topic, key))

    def unsubscribe_all(self, key: Any) -> None:
        """Remove every subscription of ``key``."""
        registry = self._registry
        if registry is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                registry.tell(UnsubscribeAll(key))

    def stats(self, timeout: float = 5.0) -> tuple[int, int]:
        """Return ``(topics, subscriptions)`` after everything told so far is applied."""
        try:
            result: tuple[int, int] = self._ref().ask(Stats(), block=True, timeout=timeout)
        except pykka.Timeout:
            msg = f"The PubSub registry did not answer within {timeout}s"
            raise ChannelTimeout(msg) from None
        return result

    # broadcasts -------------------------------------------------------------

    def broadcast(self, topic: str, event: str, message: Mapping[str, Any] | bytes) -> None:
        """Send to every subscriber of ``topic`` (on every node)."""
        self._publish(topic, event, message, None)

    def broadcast_from(
        self, from_key: Any, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to every subscriber of ``topic`` except the one subscribed as ``from_key``."""
        self._publish(topic, event, message, from_key)

    def local_broadcast(self, topic: str, event: str, message: Mapping[str, Any] | bytes) -> None:
        """Send to the subscribers of ``topic`` on this node only."""
        self._publish(topic, event, message, None)

    def local_broadcast_from(
        self, from_key: Any, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to this node's subscribers of ``topic`` except ``from_key``."""
        self._publish(topic, event, message, from_key)

    def direct_broadcast(
        self, node_name: str, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to the subscribers of ``topic`` on the node named ``node_name``."""
        if node_name != self.node_name:
            msg = (
                f"direct_broadcast to node {node_name!r}: this PubSub has no cluster adapter "
                f"and knows only its own node {self.node_name!r}"
            )
            raise BroadcastError(msg)
        self._publish(topic, event, message, None)

    def _publish(self, topic: str, event: str, message: Any, from_key: Any) -> None:
        if not isinstance(topic, str) or not isinstance(event, str):
            msg = (
                f"broadcast needs str topic and event, got topic={preview(topic)} "
                f"event={preview(event)}"
            )
            raise BroadcastError(msg)
        try:
            encoded = encode_payload(message)
        except TypeError as exc:
            raise BroadcastError(f"Cannot broadcast {_what(event, topic)}: {exc}") from None
        limit = self.max_message_size
        if limit is not None and len(encoded) > limit:
            msg = (
                f"Cannot broadcast {_what(event, topic)}: its payload is {len(encoded)} bytes, "
                f"more than max_frame_size ({limit}); send it in parts"
            )
            raise BroadcastError(msg)
        item = Broadcast(topic, event, message, None if isinstance(message, bytes) else encoded)
        try:
            self._ref().tell(Dispatch(item, from_key))
        except pykka.ActorDeadError:
            msg = f"Cannot broadcast {_what(event, topic)}: the PubSub registry has stopped"
            raise BroadcastError(msg) from None


def _what(event: str, topic: str) -> str:
    """``'new_msg' to 'rooms:lobby'`` for error messages, each cut to a short preview."""
    return f"{preview(event)} to {preview(topic)}"
