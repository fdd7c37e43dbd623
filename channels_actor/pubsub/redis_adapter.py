"""The Redis adapter: the nodes of a cluster meet on one Redis channel.

Every node subscribes to one Redis channel, ``<namespace>:broadcasts``, and
publishes each broadcast there as one :mod:`.wire` record saying who sent it
and for whom; a receiver drops its own records and those for another node, and
hands the rest to its registry, which dispatches locally (the fastlane splices
the JSON as it arrived, never encoding it again). One channel per namespace, not
one per topic: Redis does one lookup per message and a node never subscribes or
unsubscribes as channels join and leave.

Theory of operation
-------------------
``broadcast`` only checks that Redis is reachable and puts the record on a
queue, so a channel actor or the reactor never waits for the network. One
publisher thread takes the queue in order and writes it through one connection,
a batch per pipeline. One connection written by one thread is what keeps a
publisher's order on every node: Redis delivers a connection's messages to each
subscriber in the order they came (phoenix_pubsub_redis's pool of connections
does not promise this). A receiver thread reads the subscription.

Node names are claimed in Redis (``SET NX`` with an expiry that the publisher
thread renews), so a second live node with the same name fails to start instead
of silently losing the messages addressed to it.

Faults
------
When a thread loses Redis, the outage begins: it is logged once with the
address (never the URL's password), ``broadcast`` raises
:class:`~channels_actor.errors.BroadcastError` (counted as ``refused``), and the
records already queued are dropped (counted as ``lost``); the threads reconnect
with jittered exponential backoff. When both are connected again the outage
ends, logged once with what it cost. Delivery is at most once, as in Phoenix:
nothing is stored or retried, and what other nodes published while this node's
subscription was down never arrives.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._redact import preview, preview_broadcast
from ..errors import BroadcastError, ConfigurationError, InvalidMessageError
from ..message import Broadcast
from ..serializers.base import decode_json
from . import PubSub, wire
from .adapter import Deliver, default_node_name
from .outages import PUBLISH, RECEIVE, Outages
from .redis_nodes import NodeNames

__all__ = ["RedisAdapter", "RedisPubSub"]

logger = logging.getLogger("channels_actor.pubsub.redis")

_STOP = object()
#: Wakes the publisher to check Redis when the receiver lost it.
_WAKE = object()

#: Records written per pipeline at most: enough to amortize a round trip,
#: few enough that one failure loses little.
_BATCH = 256

#: How long direct_broadcast may wait to learn whether a node it has not
#: heard of is alive.
_CONFIRM_TIMEOUT = 0.25

_Errors = (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisAdapter:
    """A :class:`~channels_actor.pubsub.PubSubAdapter` over one Redis channel.

    Args:
        url: the Redis server, ``redis://[:password@]host:port/db`` (``rediss://``
            for TLS); the password never appears in a log line.
        node_name: this node's name, unique among the live nodes of the
            namespace; defaults to ``<hostname>-<pid>-<n>``.
        namespace: nodes with the same namespace form one cluster (the Redis
            channel is ``<namespace>:broadcasts``).
        compress_over: payloads longer than this many bytes cross Redis
            zlib-compressed (None: never).
        max_pending: broadcasts waiting for the publisher thread at most; past
            it ``broadcast`` raises ``BroadcastError`` (Redis is too slow).
        max_payload: largest payload accepted from Redis (a compressed one is
            never inflated past it); the PubSub's ``max_message_size`` when None.
        socket_timeout: seconds a Redis read or write may take before the
            connection counts as lost.
        name_ttl: seconds the node's name outlives a node that died without
            releasing it.
        backoff_max: longest wait between reconnection attempts, in seconds.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        node_name: str | None = None,
        *,
        namespace: str = "channels_actor",
        compress_over: int | None = None,
        max_pending: int = 100_000,
        max_payload: int | None = None,
        socket_timeout: float = 5.0,
        name_ttl: float = 15.0,
        backoff_max: float = 5.0,
    ) -> None:
        if compress_over is not None and compress_over < 0:
            raise ConfigurationError(f"compress_over must be >= 0 or None, got {compress_over!r}")
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be >= 1, got {max_pending!r}")
        self._client = _connect(url, socket_timeout, socket_timeout)
        #: the subscription's: its reads block until a message comes, however long
        self._listener = _connect(url, None, socket_timeout)
        self._subscription: Any = None
        #: records the publisher thread has taken and not yet written
        self._in_flight = 0
        #: for the rare question a publisher waits for (see _confirm)
        self._probe = _connect(url, _CONFIRM_TIMEOUT, _CONFIRM_TIMEOUT)
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self._where = f"redis {where}/{kwargs.get('db', 0)}"
        self._node_name = node_name or default_node_name()
        self._namespace = namespace
        self._channel = f"{namespace}:broadcasts".encode()
        self._names = NodeNames(self._client, namespace, self._node_name, name_ttl)
        self.compress_over = compress_over
        self.max_payload = max_payload
        self._backoff_max = backoff_max
        self._pending: queue.Queue[Any] = queue.Queue(max_pending)
        #: set when stop() begins: an outage's reconnection gives up
        self._stop_requested = threading.Event()
        #: set once the publisher is done: the receiver stops
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._outages = Outages(self._where, logger)

    def __repr__(self) -> str:
        return f"<RedisAdapter {self._node_name!r} on {self._where}>"

    @property
    def node_name(self) -> str:
        """This node's name."""
        return self._node_name

    @property
    def connected(self) -> bool:
        """False during an outage (either thread has lost Redis)."""
        return self._outages.connected

    def backlog(self) -> int:
        """Broadcasts queued for Redis or being written to it."""
        return self._pending.qsize() + self._in_flight

    def stats(self) -> dict[str, float]:
        """``outages``, broadcasts ``refused`` and ``lost``, ``malformed`` records, ``pending``."""
        counts = self._outages.counts()
        counts["pending"] = self.backlog()
        return counts

    # life -----------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        """Claim the node name, subscribe, and start the two threads.

        Raises:
            ConfigurationError: another live node has this node's name.
        """
        if self._threads:
            return
        self._stop_requested.clear()
        self._stopping.clear()
        try:
            claimed = self._names.claim()
        except _Errors as exc:
            self._fail(PUBLISH, exc)  # start anyway: the publisher claims it once back
        else:
            if not claimed:
                msg = (
                    f"Another live node is named {self._node_name!r} on {self._where}: "
                    "give each node its own node_name (or leave it out for a unique default)"
                )
                raise ConfigurationError(msg)
            try:
                self._names.refresh()
            except _Errors as exc:
                self._fail(PUBLISH, exc)
        # the first record: the other nodes learn of this one at once
        self._pending.put_nowait(wire.encode_control(self._node_name, wire.HELLO))
        subscribed = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._publish_loop, name="channels_actor-redis-publish", daemon=True
            ),
            threading.Thread(
                target=self._receive_loop,
                args=(deliver, subscribed),
                name="channels_actor-redis-receive",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        # a broadcast right after start should reach the nodes that are up; one
        # published before this node subscribed could not come back to it anyway
        subscribed.wait(self._client.connection_pool.connection_kwargs["socket_timeout"])

    def stop(self, timeout: float) -> None:
        """Publish what is queued (within ``timeout``), give up the name, stop the threads."""
        threads, self._threads = self._threads, []
        if not threads:
            return
        self._stop_requested.set()
        self._pending.put(_STOP)  # after the queued records: they go first
        deadline = time.monotonic() + timeout
        threads[0].join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()  # the publisher is done (or stuck in an outage): stop both
        threads[1].join(max(0.0, deadline - time.monotonic()))
        if threads[1].is_alive():  # its wake-up did not come: Redis is down or frozen
            with self._lock:
                subscription = self._subscription
            if subscription is not None and subscription.connection is not None:
                subscription.connection.disconnect()
            threads[1].join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            logger.warning("%r did not stop within %.1fs", self, timeout)
        self._lose(self._drain_pending(keep_stop=False))
        self._client.close()
        self._probe.close()
        self._listener.close()

    # publishing --------------------------------------------------------------

    def broadcast(self, broadcast: Broadcast) -> None:
        """Queue ``broadcast`` for every other node.

        Raises:
            BroadcastError: Redis is unreachable now, or the queue is full.
        """
        self._enqueue(wire.ALL_BUT_ORIGIN, "", broadcast)

    def direct_broadcast(self, node_name: str, broadcast: Broadcast) -> None:
        """Queue ``broadcast`` for the node named ``node_name``.

        Whether that node is alive is what this node knows (:meth:`nodes`),
        so the caller never waits for Redis. A node that died without
        stopping is known until its name expires in Redis (``name_ttl``):
        what is sent to it meanwhile is lost, as any broadcast to a node
        that goes down.

        Raises:
            BroadcastError: no live node has that name, or Redis is unreachable.
        """
        self._refuse_in_outage(broadcast)
        if not self._names.knows(node_name) and not self._confirm(node_name, broadcast):
            known = self._names.others()
            shown = ", ".join(preview(name) for name in known[:5]) or "none"
            more = f" and {len(known) - 5} more" if len(known) > 5 else ""
            msg = (
                f"direct_broadcast to node {preview(node_name)}: no live node of that name "
                f"in namespace {preview(self._namespace)} on {self._where} "
                f"(other nodes: {shown}{more})"
            )
            raise BroadcastError(msg)
        self._enqueue(wire.ONLY_TARGET, node_name, broadcast)

    def _confirm(self, node_name: str, broadcast: Broadcast) -> bool:
        """Ask Redis whether a node not heard of yet (just started, say) is alive.

        The one case where a publisher waits for Redis, and at most
        ``_CONFIRM_TIMEOUT``: a node not known here is rare.
        """
        try:
            alive = bool(self._probe.exists(self._names.key_of(node_name)))
        except _Errors:
            msg = (
                f"Cannot direct_broadcast {_what(broadcast)} to node {preview(node_name)}: "
                f"{self._where} did not say within {_CONFIRM_TIMEOUT}s whether it is alive"
            )
            raise BroadcastError(msg) from None
        if alive:
            self._names.heard(node_name)
        return alive

    def nodes(self) -> list[str]:
        """The names of the live nodes this node knows of, itself included, sorted."""
        return sorted([self._node_name, *self._names.others()])

    def _enqueue(self, route: int, target: str, broadcast: Broadcast) -> None:
        self._refuse_in_outage(broadcast)
        if broadcast.encoded_payload is None:
            payload, binary = broadcast.payload, True
        else:
            payload, binary = broadcast.encoded_payload, False
        record = wire.encode(
            route,
            self._node_name,
            target,
            topic=broadcast.topic,
            event=broadcast.event,
            payload=payload,
            binary=binary,
            compress_over=self.compress_over,
        )
        try:
            self._pending.put_nowait(record)
        except queue.Full:
            self._outages.refused()
            msg = (
                f"Cannot broadcast {_what(broadcast)} to the other nodes: "
                f"{self._pending.maxsize} broadcasts are already waiting for {self._where}"
            )
            raise BroadcastError(msg) from None

    def _refuse_in_outage(self, broadcast: Broadcast) -> None:
        if self._outages.publishing_down:
            self._outages.refused()
            msg = (
                f"Cannot broadcast {_what(broadcast)} to the other nodes: {self._where} "
                "is unreachable (reconnecting)"
            )
            raise BroadcastError(msg)

    def _publish_loop(self) -> None:
        renew_every = self._names.ttl_ms / 3000
        next_renew = time.monotonic() + renew_every
        while True:
            # in an outage, whoever saw it (this thread, start, direct_broadcast)
            if self._outages.publishing_down:
                if not self._reconnect(PUBLISH, self._reclaim, self._stop_requested):
                    return
                next_renew = time.monotonic() + renew_every
            try:
                first = self._pending.get(timeout=max(0.0, next_renew - time.monotonic()))
            except queue.Empty:
                first = None
            batch: list[Any] = [] if first is None else [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            records = [item for item in batch if item is not _STOP and item is not _WAKE]
            self._in_flight = len(records)
            try:
                if records:
                    self._publish(records)
                self._in_flight = 0
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + renew_every
                    self._keep_name()
                if stop:
                    self._names.release()
                    self._publish(
                        [
                            wire.encode_control(self._node_name, wire.BYE),
                            wire.encode_control(self._node_name, wire.WAKE),
                        ]
                    )
                    return
            except _Errors as exc:
                self._fail(PUBLISH, exc)  # first, so that no broadcast is queued after the drain
                self._in_flight = 0
                self._lose(len(records) + self._drain_pending())
                if stop:
                    return

    def _publish(self, records: list[bytes]) -> None:
        if len(records) == 1:
            self._client.publish(self._channel, records[0])
            return
        pipe = self._client.pipeline(transaction=False)
        for record in records:
            pipe.publish(self._channel, record)
        pipe.execute()

    def _drain_pending(self, *, keep_stop: bool = True) -> int:
        """Drop what waits to be published; return how many broadcasts that was."""
        dropped = 0
        while True:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                return dropped
            if item is _WAKE:
                continue
            if item is not _STOP:
                dropped += 1
            elif keep_stop:
                self._pending.put(_STOP)  # the request to stop stays, last
                return dropped

    # the node's name --------------------------------------------------------

    def _keep_name(self) -> None:
        self._names.refresh()
        if not self._names.claim():
            logger.error(
                "Another live node now claims the name %r on %s: messages for it may "
                "reach either node; give each node its own node_name",
                self._node_name,
                self._where,
            )

    def _reclaim(self) -> None:
        self._client.ping()
        self._keep_name()

    # receiving -----------------------------------------------------------------

    def _receive_loop(self, deliver: Deliver, subscribed: threading.Event) -> None:
        while not self._stopping.is_set():
            subscription = self._listener.pubsub()  # type: ignore[no-untyped-call]
            try:
                subscription.subscribe(self._channel)
                subscription.parse_response(block=True)  # Redis confirms: subscribed
                with self._lock:
                    self._subscription = subscription
                self._outages.recover(RECEIVE)
                subscribed.set()
                # Blocking reads, one reply each: no poll per message. A stop
                # wakes this with our own last record (or cuts the connection).
                while not self._stopping.is_set():
                    reply = subscription.parse_response(block=True)
                    if not reply or reply[0] != b"message":
                        continue
                    if self._receive(reply[2], deliver) and self._stop_requested.is_set():
                        return  # our publisher's last record: it is done
            except _Errors as exc:
                if self._stopping.is_set():
                    return  # stop() cut the connection
                self._fail(RECEIVE, exc)
                subscribed.set()
                if not self._reconnect(RECEIVE, self._client.ping, self._stopping):
                    return
            finally:
                with self._lock:
                    self._subscription = None
                subscription.close()

    def _receive(self, data: bytes, deliver: Deliver) -> bool:
        """Hand one record to ``deliver`` if it is for this node; True for our control record."""
        try:
            route, origin, target = wire.route_of(data)
            mine = origin == self._node_name
            if (route == wire.ALL_BUT_ORIGIN and mine) or (
                route == wire.ONLY_TARGET and target != self._node_name
            ):
                return False
            if not mine:
                self._names.heard(origin)
            record = wire.decode(data, self.max_payload)
            if record.control:
                if record.event == wire.BYE:
                    self._names.left(origin)
                return record.event == wire.WAKE
            if record.binary:
                deliver(Broadcast(record.topic, record.event, record.payload, None))
            else:
                payload = decode_json(record.payload)
                if not isinstance(payload, Mapping):
                    raise wire.WireError("record payload is JSON but not an object")
                deliver(Broadcast(record.topic, record.event, payload, record.payload))
        except (wire.WireError, InvalidMessageError) as exc:
            self._malformed(len(data), exc)
        return False

    def _malformed(self, size: int, exc: Exception) -> None:
        """Count a record this node cannot read; log at most one a minute."""
        count = self._outages.malformed()
        if count is not None:
            logger.warning(
                "%r dropped a record of %d bytes that is not a broadcast of ours (%s); "
                "%d so far. Is another program publishing on channel %r?",
                self,
                size,
                preview(str(exc)),
                count,
                self._channel.decode(),
            )

    # outages ------------------------------------------------------------------

    def _fail(self, side: str, exc: BaseException) -> None:
        if self._outages.fail(side, exc):
            with contextlib.suppress(queue.Full):
                self._pending.put_nowait(_WAKE)  # the publisher checks its connection

    def _lose(self, dropped: int) -> None:
        self._outages.lost(dropped)

    def _reconnect(self, side: str, probe: Any, give_up: threading.Event) -> bool:
        """Retry ``probe`` with jittered backoff until it works (True) or ``give_up`` is set."""
        delay = 0.05
        while not give_up.wait(random.uniform(delay / 2, delay)):
            try:
                probe()
            except _Errors:
                delay = min(self._backoff_max, delay * 2)
                continue
            if side == PUBLISH:
                self._outages.recover(PUBLISH)
            return True
        return False


class RedisPubSub(PubSub):
    """A :class:`~channels_actor.pubsub.PubSub` whose broadcasts cross Redis to every node.

    ``Endpoint(pubsub=RedisPubSub("redis://127.0.0.1:6379/0"))`` is all a
    node needs; every process (a server, a job worker, a script) with the same
    Redis and ``namespace`` is a node of one cluster. The options are
    :class:`RedisAdapter`'s.
    """

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", node_name: str | None = None, **options: Any
    ) -> None:
        self.adapter = RedisAdapter(url, node_name, **options)
        super().__init__(adapter=self.adapter)

    def start(self) -> PubSub:
        """Start the registry and connect to Redis (see :meth:`PubSub.start`)."""
        if self.adapter.max_payload is None:
            self.adapter.max_payload = self.max_message_size
        return super().start()


def _connect(url: str, read_timeout: float | None, connect_timeout: float) -> redis.Redis:
    """A redis-py client that never retries on its own: a retried pipeline would
    publish twice, and the adapter decides what a lost connection means."""
    return redis.Redis.from_url(
        url,
        socket_timeout=read_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def _what(broadcast: Broadcast) -> str:
    return preview_broadcast(broadcast.event, broadcast.topic)
