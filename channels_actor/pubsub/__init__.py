"""PubSub: publish broadcasts to topic subscribers, on this node and on the others.

``PubSub`` is the facade every part of the runtime uses: it checks and encodes
the message in the publisher's thread (so a bad message raises
:class:`BroadcastError` where it was published) and tells the registry actor
to dispatch it to this node's subscribers. What crosses nodes goes through its
adapter (:mod:`.adapter`): ``broadcast`` and ``broadcast_from`` publish to the
other nodes too, ``local_broadcast*`` never do, and what other nodes publish
comes back through the adapter's callback into the same registry.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from .._redact import preview
from .._redact import preview_broadcast as _what
from ..errors import BroadcastError, ChannelTimeout, ConfigurationError
from ..message import Broadcast
from ..serializers.base import encode_payload
from .adapter import EmbeddedAdapter, PubSubAdapter
from .registry import Dispatch, Registry, Stats, Subscribe, Subscriber, Unsubscribe, UnsubscribeAll

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EmbeddedAdapter", "PubSub", "PubSubAdapter", "Subscriber"]

logger = logging.getLogger("channels_actor.pubsub")

#: How long ``start`` waits for what it undoes: the adapter of a registry that
#: died, the registry of an adapter that failed to start.
_UNDO_TIMEOUT = 5.0


class PubSub:
    """Topic subscriptions and broadcasts for one endpoint, across the nodes of its adapter.

    Args:
        node_name: this node's name, unique in a cluster; defaults to
            ``<hostname>-<pid>-<n>``. Only without ``adapter`` (which names the
            node itself).
        adapter: how broadcasts reach other nodes (:class:`PubSubAdapter`);
            defaults to the single-node :class:`EmbeddedAdapter`.

    Raises:
        ConfigurationError: both ``node_name`` and ``adapter`` are given.
    """

    def __init__(
        self, node_name: str | None = None, *, adapter: PubSubAdapter | None = None
    ) -> None:
        if adapter is None:
            adapter = EmbeddedAdapter(node_name)
        elif node_name is not None:
            msg = (
                f"PubSub(node_name={node_name!r}, adapter={adapter!r}): the adapter names "
                "the node; give the name to the adapter and leave out node_name"
            )
            raise ConfigurationError(msg)
        self._adapter: PubSubAdapter = adapter
        self._registry: pykka.ActorRef[Registry] | None = None
        #: Encoded payloads larger than this raise BroadcastError (None: no limit);
        #: the endpoint sets its ``max_frame_size``.
        self.max_message_size: int | None = None

    @property
    def node_name(self) -> str:
        """This node's name, as its adapter knows it."""
        return self._adapter.node_name

    @property
    def single_node(self) -> bool:
        """True when broadcasts reach this process only (the embedded adapter).

        Deployments with several processes (``channels-actor serve --workers``,
        ``gunicorn -w``) need a cluster adapter, such as ``RedisPubSub``'s.
        """
        return isinstance(self._adapter, EmbeddedAdapter)

    # lifecycle --------------------------------------------------------------

    def start(self) -> PubSub:
        """Start the registry actor, then the adapter (idempotent)."""
        registry = self._registry
        if registry is not None and registry.is_alive():
            return self
        if registry is not None:
            self._adapter.stop(_UNDO_TIMEOUT)  # the registry died: start both afresh
        self._registry = registry = Registry.start()
        try:
            self._adapter.start(self._forward_to_local)
        except BaseException:
            self._registry = None
            registry.stop(block=True, timeout=_UNDO_TIMEOUT)
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the adapter, then the registry after it has handled what it was told.

        Idempotent. The adapter stops first so that nothing arrives from other
        nodes for a registry that has gone.
        """
        registry = self._registry
        if registry is None:
            return
        self._adapter.stop(timeout)
        self._registry = None
        if registry.is_alive():
            try:
                registry.stop(block=True, timeout=timeout)
            except pykka.Timeout:
                logger.warning("The PubSub registry did not stop within %.1fs", timeout)

    def adapter_stats(self) -> Mapping[str, float]:
        """What the adapter counted: outages, broadcasts refused or lost (empty for one node)."""
        return self._adapter.stats()

    def backlog(self) -> int:
        """Broadcasts waiting now: in the registry's inbox, and for the other nodes.

        Flow control pauses the connections that publish while this is high,
        so a cluster that cannot keep up slows the flood down too.
        """
        waiting = self._adapter.backlog()
        registry = self._registry
        if registry is None:
            return waiting
        inbox: Any = registry.actor_inbox
        return waiting + int(inbox.qsize())

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
        self._publish(topic, event, message, None, True)

    def broadcast_from(
        self, from_key: Any, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to every subscriber of ``topic`` except the one subscribed as ``from_key``.

        The sender is subscribed on this node; other nodes deliver to all of theirs.
        """
        self._publish(topic, event, message, from_key, True)

    def local_broadcast(self, topic: str, event: str, message: Mapping[str, Any] | bytes) -> None:
        """Send to the subscribers of ``topic`` on this node only."""
        self._publish(topic, event, message, None, False)

    def local_broadcast_from(
        self, from_key: Any, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to this node's subscribers of ``topic`` except ``from_key``."""
        self._publish(topic, event, message, from_key, False)

    def direct_broadcast(
        self, node_name: str, topic: str, event: str, message: Mapping[str, Any] | bytes
    ) -> None:
        """Send to the subscribers of ``topic`` on the node named ``node_name``.

        This node's own name dispatches locally; another goes through the adapter
        (the embedded one knows no other node and raises :class:`BroadcastError`).
        """
        if node_name == self._adapter.node_name:
            self._publish(topic, event, message, None, False)
        else:
            self._adapter.direct_broadcast(node_name, self._prepare(topic, event, message))

    def _publish(
        self, topic: str, event: str, message: Any, from_key: Any, to_cluster: bool
    ) -> None:
        """Check and encode here, publish to the other nodes if asked, then dispatch locally."""
        item = self._prepare(topic, event, message)
        registry = self._registry or self._ref()  # calls _ref() only to raise "not running"
        if to_cluster:
            self._adapter.broadcast(item)
        try:
            registry.tell(Dispatch(item, from_key))
        except pykka.ActorDeadError:
            msg = f"Cannot broadcast {_what(event, topic)}: the PubSub registry has stopped"
            raise BroadcastError(msg) from None

    def _prepare(self, topic: str, event: str, message: Any) -> Broadcast:
        """Check a broadcast and encode its payload once, in the publisher's thread."""
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
        return Broadcast(topic, event, message, None if isinstance(message, bytes) else encoded)

    def _forward_to_local(self, broadcast: Broadcast) -> None:
        """Dispatch a broadcast from another node to this node's subscribers (any thread).

        The adapter's ``deliver`` callback. It is only a ``tell``, so it is safe
        from any thread and keeps each node's publish order. The size limit is
        not checked again: the origin node checked it where the publisher could
        be told, and here nobody could be, only the message dropped.
        """
        registry = self._registry
        if registry is not None:
            try:
                registry.tell(Dispatch(broadcast, None))
                return
            except pykka.ActorDeadError:
                pass  # stopped meanwhile
        logger.warning(
            "%r delivered %s on %s to a stopped PubSub; dropped",
            self._adapter,
            preview(broadcast.event),
            preview(broadcast.topic),
        )
