"""Endpoints on separate nodes behave as one, with real WebSocket clients and a real Redis.

Two endpoints in this process, each with its own ``RedisPubSub`` node and its
own listening port (what two worker processes are, minus the processes: the
multi-process tests with phoenix.js are in test_cluster_phoenix_js.py). Plus a
process that serves no sockets and only broadcasts, as a job worker would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from channels_actor import Channel, Endpoint, RedisPubSub, Socket, SocketHandler, assign
from channels_actor import broadcast, broadcast_from
from tests.cluster.redis_server import RedisServer
from tests.integration.serverframes import RawClient, message
from tests.integration.wsclient import Client

TOPIC = "rooms:lobby"


class Room(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "shout":
            broadcast(socket, "shout", payload)
        elif event == "shout_from":
            broadcast_from(socket, "shout", payload)
        return ("reply", ("ok", {}), socket)


class Users(SocketHandler):
    channels = [("rooms:*", Room)]

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", assign(socket, user=params.get("user", "anon")))

    def id(self, socket: Socket) -> str | None:
        return f"user:{socket.assigns['user']}"


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def two_nodes(redis_server: RedisServer, namespace: str) -> Iterator[tuple[Endpoint, int, int]]:
    endpoints, ports = [], []
    for name in ("web-1", "web-2"):
        endpoint = Endpoint(pubsub=RedisPubSub(redis_server.url, name, namespace=namespace))
        endpoint.socket("/socket", Users)
        ports.append(endpoint.start("127.0.0.1", 0).port)
        endpoints.append(endpoint)
    yield endpoints[0], ports[0], ports[1]
    for endpoint in endpoints:
        endpoint.stop()


def _joined(port: int, user: str) -> Client:
    client = Client(port, query=f"vsn=2.0.0&user={user}")
    reply = client.join(TOPIC)
    assert reply[3:] == ["phx_reply", {"status": "ok", "response": {}}]
    return client


def _next_broadcast(client: Client) -> Any:
    while True:
        frame = client.recv(5.0)
        if frame[3] != "phx_reply":
            return frame


def test_a_channels_broadcast_reaches_clients_on_both_nodes(
    two_nodes: tuple[Endpoint, int, int],
) -> None:
    _, port_1, port_2 = two_nodes
    here, there, sender = _joined(port_1, "a"), _joined(port_2, "b"), _joined(port_1, "c")
    try:
        sender.send(["1", "9", TOPIC, "shout", {"body": "hi"}])
        for client in (here, there, sender):
            assert _next_broadcast(client) == [None, None, TOPIC, "shout", {"body": "hi"}]
        sender.send(["1", "10", TOPIC, "shout_from", {"body": "not to me"}])
        sender.send(["1", "11", TOPIC, "shout", {"body": "marker"}])
        for client in (here, there):
            assert _next_broadcast(client)[4] == {"body": "not to me"}
            assert _next_broadcast(client)[4] == {"body": "marker"}
        assert _next_broadcast(sender)[4] == {"body": "marker"}  # skipped its own
    finally:
        for client in (here, there, sender):
            client.close()


def test_the_disconnect_broadcast_closes_a_socket_on_another_node(
    two_nodes: tuple[Endpoint, int, int],
) -> None:
    endpoint_1, _, port_2 = two_nodes
    target, bystander = _joined(port_2, "42"), _joined(port_2, "7")
    try:
        endpoint_1.broadcast("user:42", "disconnect", {})
        assert target.wait_closed(5.0) == 1001  # as on one node
        bystander.send(["1", "2", TOPIC, "shout", {"still": "here"}])
        assert _next_broadcast(bystander)[4] == {"still": "here"}
    finally:
        target.close()
        bystander.close()


EMITTER = textwrap.dedent(
    """
    import sys
    from channels_actor import BroadcastError, Endpoint, RedisPubSub

    endpoint = Endpoint(pubsub=RedisPubSub(sys.argv[1], namespace=sys.argv[2]))
    try:
        for n in range(int(sys.argv[3])):
            endpoint.broadcast("rooms:lobby", "news", {"from": "a job", "n": n})
    except BroadcastError as exc:
        print("not sent:", exc)
        sys.exit(3)
    print("sent")
    """
)


def _emit(url: str, namespace: str, count: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", EMITTER, url, namespace, str(count)],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_a_process_that_serves_no_sockets_broadcasts_in_one_line(
    two_nodes: tuple[Endpoint, int, int], redis_server: RedisServer, namespace: str
) -> None:
    _, port_1, port_2 = two_nodes
    clients = [_joined(port_1, "a"), _joined(port_2, "b")]
    try:
        done = _emit(redis_server.url, namespace, 2000)
        assert (done.returncode, done.stdout.strip()) == (0, "sent"), done.stderr
        for client in clients:  # it exited at once, and what it had queued went out first
            for n in range(2000):
                assert _next_broadcast(client) == [None, None, TOPIC, "news", {"from": "a job", "n": n}]
    finally:
        for client in clients:
            client.close()


def test_a_broadcaster_can_tell_that_redis_is_down(namespace: str) -> None:
    from tests.cluster.redis_server import free_port

    done = _emit(f"redis://127.0.0.1:{free_port()}/0", namespace)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not sent: Cannot broadcast 'news' to 'rooms:lobby' to the other nodes" in done.stdout
    assert "is unreachable" in done.stdout


class PauseSeen(logging.Handler):
    """Sets ``event`` when flow control pauses the publishers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Pausing"):
            self.event.set()


def _drain(client: RawClient) -> None:
    with contextlib.suppress(OSError):
        while client.sock.recv(1 << 20):
            pass


def test_a_flood_that_redis_cannot_take_is_paused_not_refused(
    two_nodes: tuple[Endpoint, int, int], redis_server: RedisServer, namespace: str
) -> None:
    _, _, port_2 = two_nodes
    # a short queue for Redis, which the pauses keep the flood within (see also
    # test_what_waits_for_redis_counts_in_the_pubsubs_backlog)
    endpoint_1 = Endpoint(
        pubsub=RedisPubSub(redis_server.url, "web-3", namespace=namespace, max_pending=500)
    )
    endpoint_1.socket("/socket", Users)
    port_1 = endpoint_1.start("127.0.0.1", 0).port
    watcher = PauseSeen()
    flow_logger = logging.getLogger("channels_actor.transport")
    previous = flow_logger.level
    flow_logger.addHandler(watcher)
    flow_logger.setLevel(logging.DEBUG)
    listener = _joined(port_2, "b")
    flooder = RawClient(port_1)
    assert flooder.join(TOPIC)["status"] == "ok"
    # each read of the flooder takes in at most ~128 of these: a pause bounds the queue
    total, pad = 2000, "p" * 2000
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)  # the node's broadcasts wait for Redis: its queue grows
    frozen = True
    try:
        blob = b"".join(
            message("1", str(n), TOPIC, "shout", {"n": n, "pad": pad}) for n in range(total)
        )
        sender = threading.Thread(target=flooder.sock.sendall, args=(blob,), name="flooder")
        # the flooder reads what it is sent, so that only the queue for Redis can pause it
        drain = threading.Thread(target=_drain, args=(flooder,), name="flooder-reader")
        drain.start()
        sender.start()
        assert watcher.event.wait(10), "the flood was not paused while Redis held it up"
        os.kill(pid, signal.SIGCONT)
        frozen = False
        for n in range(total):  # every one crossed, in order: none refused, none lost
            assert _next_broadcast(listener) == [None, None, TOPIC, "shout", {"n": n, "pad": pad}]
        sender.join(10)
        assert not sender.is_alive()
        flooder.sock.shutdown(socket.SHUT_WR)  # the server closes, the reader ends
        drain.join(10)
        stats = endpoint_1.stats()
        assert stats["backpressure_pauses"] >= 1
        assert not any(stats.get(f"pubsub_{name}") for name in ("refused", "lost", "outages"))
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        flow_logger.removeHandler(watcher)
        flow_logger.setLevel(previous)
        listener.close()
        flooder.close()
        endpoint_1.stop()
