"""The PubSub adapter: what a cluster transport implements, and the single-node one.

A :class:`~channels_actor.pubsub.PubSub` keeps the subscriptions, the local
dispatch and the fastlane in its registry actor; what it leaves to an adapter
is only the part that crosses nodes, the shape of phoenix_pubsub's
``Phoenix.PubSub.Adapter`` behaviour:

* ``node_name``: this node's name, unique in the cluster (a cluster adapter
  tells its own messages from the others' by it);
* ``broadcast``: publish to every *other* node;
* ``direct_broadcast``: publish to one named node;
* ``start(deliver)`` / ``stop``: the adapter's life, and the callback through
  which it hands over what arrives from other nodes;
* ``stats``: what it counted (outages, broadcasts lost), for ``Endpoint.stats()``;
* ``backlog``: broadcasts waiting to leave, which flow control counts.

Who calls what, on which thread
-------------------------------
``PubSub.start`` calls ``start(deliver)`` once its registry runs, on the
thread that starts the endpoint (if ``start`` raises, the PubSub stops its
registry and lets the error through); ``PubSub.stop`` calls ``stop(timeout)``
before it stops the registry, and only after a ``start`` that returned. A
stopped adapter may be started again.

``broadcast`` and ``direct_broadcast`` run on the publisher's thread (a channel
actor, a request thread, a callback subscriber on the registry thread), several
at once: they must be thread-safe and should not block for long, since the
publisher waits. They are called after the message has been checked and
encoded, and ``broadcast`` before the local subscribers are told, so a failure
raised as :class:`~channels_actor.errors.BroadcastError` reaches the publisher
before anything was delivered, as in Phoenix.

``deliver(broadcast)`` is the adapter's way in: it calls it from any thread (its
receiving thread, typically) once per message from another node, in the order
that node published. ``deliver`` only tells the registry, so it returns at once
and never raises.

What a message carries
----------------------
A :class:`~channels_actor.message.Broadcast` whose payload is already encoded:
a JSON payload is a mapping in ``payload`` with its JSON in ``encoded_payload``,
made once in the publisher's thread; a binary payload is ``bytes`` in
``payload`` and ``encoded_payload`` is ``None``. An adapter that crosses
processes sends ``topic``, ``event`` and those bytes (with which of the two
they are); the receiving side rebuilds the ``Broadcast`` with the bytes as
received in ``encoded_payload`` (the fastlane splices them into every frame,
never encoding again) and, for JSON, the mapping decoded from them in
``payload`` (for intercepting channels and callback subscribers).

``broadcast_from`` carries no sender: its exclusion concerns only the origin
node, where the sender's channel lives and where the PubSub dispatches it
itself. Every other node delivers to all of its subscribers.
"""

from __future__ import annotations

import itertools
import os
import socket as _stdlib_socket
from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import BroadcastError
from ..message import Broadcast

__all__ = ["Deliver", "EmbeddedAdapter", "PubSubAdapter", "default_node_name"]

#: The callback an adapter hands arriving messages to (``PubSub`` gives its own).
Deliver = Callable[[Broadcast], None]

_node_counter = itertools.count(1)


def default_node_name() -> str:
    """``<hostname>-<pid>-<n>``: unique per PubSub on a host, as a cluster needs."""
    return f"{_stdlib_socket.gethostname()}-{os.getpid()}-{next(_node_counter)}"


class PubSubAdapter(Protocol):
    """How a PubSub reaches the other nodes of a cluster (see the module docstring)."""

    @property
    def node_name(self) -> str:
        """This node's name, unique in the cluster; the same for the adapter's life."""
        ...

    def start(self, deliver: Deliver) -> None:
        """Begin receiving: hand each message from another node to ``deliver``."""
        ...

    def stop(self, timeout: float) -> None:
        """Stop receiving; once this returns, ``deliver`` is not called again."""
        ...

    def broadcast(self, broadcast: Broadcast) -> None:
        """Publish ``broadcast`` to every node but this one.

        Raises:
            BroadcastError: the cluster cannot be reached.
        """
        ...

    def direct_broadcast(self, node_name: str, broadcast: Broadcast) -> None:
        """Publish ``broadcast`` to the node named ``node_name`` (never this one).

        Raises:
            BroadcastError: the node is unknown or cannot be reached.
        """
        ...

    def stats(self) -> Mapping[str, float]:
        """Counters since the adapter was made, by name (``Endpoint.stats()`` adds ``pubsub_``)."""
        ...

    def backlog(self) -> int:
        """Broadcasts accepted and not yet sent to the other nodes (cheap: called per publish)."""
        ...


class EmbeddedAdapter:
    """The single-node adapter: this process is the whole cluster.

    There are no other nodes, so ``broadcast`` has nothing to do (the PubSub
    has already dispatched locally) and nothing ever arrives.

    Args:
        node_name: this node's name; defaults to :func:`default_node_name`.
    """

    __slots__ = ("_node_name",)

    def __init__(self, node_name: str | None = None) -> None:
        self._node_name = node_name or default_node_name()

    @property
    def node_name(self) -> str:
        """This node's name."""
        return self._node_name

    def start(self, deliver: Deliver) -> None:
        """Nothing arrives from other nodes: ``deliver`` is never called."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop."""

    def broadcast(self, broadcast: Broadcast) -> None:
        """No other node to publish to."""

    def direct_broadcast(self, node_name: str, broadcast: Broadcast) -> None:
        """Raise: a single node knows no other node."""
        msg = (
            f"direct_broadcast to node {node_name!r}: this PubSub has no cluster adapter "
            f"and knows only its own node {self._node_name!r}"
        )
        raise BroadcastError(msg)

    def stats(self) -> Mapping[str, float]:
        """Nothing to count."""
        return {}

    def backlog(self) -> int:
        """Nothing waits: there is no other node."""
        return 0

    def __repr__(self) -> str:
        return f"<EmbeddedAdapter {self._node_name!r}>"
