"""``gunicorn -w 2 -k gthread`` with ``RedisPubSub``: two workers behave as one, and drain.

A real ``redis-server`` on a free port (``tests/cluster/redis_server.py``),
real gunicorn workers, real WebSocket clients: clients are opened until both
workers hold one (the join reply names the worker's pid), each sees the
other's messages, and SIGTERM closes both with 1012 well inside the grace.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.servers import Gunicorn
from tests.integration.wsclient import Client

GRACE = 10
TOPIC = "rooms:cluster"


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[Gunicorn]:
    env = {
        "CHANNELS_ACTOR_TEST_REDIS": redis_url,
        "CHANNELS_ACTOR_TEST_NAMESPACE": f"deploy-{uuid.uuid4().hex[:8]}",
    }
    server = Gunicorn(
        "-k", "gthread", "--threads", "8", "--graceful-timeout", str(GRACE), workers=2, env=env
    )
    try:
        yield server
    finally:
        server.close()


def _one_client_per_worker(server: Gunicorn) -> dict[int, Client]:
    """Connect until each worker holds a joined client.

    The kernel picks the worker that accepts; a client that lands on a worker
    already held is closed at once, so it never ties up that worker's threads.
    """
    by_pid: dict[int, Client] = {}
    for _ in range(50):
        client = Client(server.port)
        reply = client.join(TOPIC)
        assert reply[4]["status"] == "ok", reply
        pid = reply[4]["response"]["pid"]
        if pid in by_pid:
            client.close()
        else:
            by_pid[pid] = client
        if len(by_pid) == 2:
            return by_pid
    for client in by_pid.values():
        client.close()
    pytest.fail(f"50 connections all landed on worker {sorted(by_pid)}")


def _next_shout(client: Client) -> Any:
    while True:
        frame = client.recv(5.0)
        if frame[3] == "shout":
            return frame[4]


def test_clients_on_both_workers_see_each_other_and_sigterm_drains_both(
    two_workers: Gunicorn,
) -> None:
    server = two_workers
    assert len(server.worker_pids()) == 2
    clients = _one_client_per_worker(server)
    try:
        _exchange_then_drain(server, clients)
    finally:
        for client in clients.values():
            client.close()


def _exchange_then_drain(server: Gunicorn, clients: dict[int, Client]) -> None:
    (pid_a, a), (pid_b, b) = sorted(clients.items())
    a.send(["1", "2", TOPIC, "shout", {"from": pid_a}])
    assert _next_shout(b) == {"from": pid_a}  # crossed workers through Redis
    assert _next_shout(a) == {"from": pid_a}
    b.send(["1", "2", TOPIC, "shout", {"from": pid_b}])
    assert _next_shout(a) == {"from": pid_b}
    assert _next_shout(b) == {"from": pid_b}
    assert not server.matching(r"WARNING channels_actor\.gunicorn"), server.text()

    sent = server.signal(signal.SIGTERM)
    assert a.wait_closed(GRACE) == 1012
    assert b.wait_closed(GRACE) == 1012
    for pid in (pid_a, pid_b):
        server.wait_for(rf"TERMINATE pid={pid} {TOPIC} \('shutdown', 'closed'\)")
    assert server.wait_exit(GRACE) == 0
    took = time.monotonic() - sent
    assert took < GRACE / 2, f"gunicorn took {took:.1f}s of its {GRACE}s grace to stop"
    assert not server.errors(), server.text()
