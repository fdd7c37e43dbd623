"""Under real gunicorn processes: SIGTERM drains, the deployment warnings, quiet closes.

Each test starts ``gunicorn tests.deploy.app:app`` on a free port and talks to
it with real WebSocket clients; what the server did is read from its stderr
(the app prints a ``TERMINATE`` line from every channel's ``terminate``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.deploy.servers import Gunicorn
from tests.integration.wsclient import Client, http_get

GRACE = 10  # --graceful-timeout: a drained worker exits long before it
RESTART = 1012


_clients: list[Client] = []


@pytest.fixture
def servers() -> Iterator[list[Gunicorn]]:
    """The servers a test starts; they and the clients it opened are closed after it."""
    started: list[Gunicorn] = []
    yield started
    while _clients:
        _clients.pop().close()
    for server in started:
        server.close()


def _start(servers: list[Gunicorn], *options: str, workers: int = 1) -> Gunicorn:
    server = Gunicorn(*options, workers=workers)
    servers.append(server)
    return server


def _joined(port: int, topic: str) -> Client:
    client = Client(port)
    _clients.append(client)
    reply = client.join(topic)
    assert reply[3] == "phx_reply" and reply[4]["status"] == "ok", reply
    return client


@pytest.mark.parametrize(
    ("sig", "preload"),
    [
        (signal.SIGTERM, False),
        # the endpoint is built in the arbiter, before the worker exists: found on first use
        (signal.SIGTERM, True),
        # gunicorn's quick shutdown: the arbiter sends its workers SIGQUIT
        (signal.SIGINT, False),
    ],
    ids=["sigterm", "sigterm-preload", "sigint"],
)
def test_a_stopping_worker_drains_its_websockets_and_exits_at_once(
    servers: list[Gunicorn], sig: int, preload: bool
) -> None:
    options = ["-k", "gthread", "--threads", "8", "--graceful-timeout", str(GRACE)]
    server = _start(servers, *options, *(["--preload"] if preload else []))
    clients = [_joined(server.port, f"rooms:drain{i}") for i in range(3)]
    sent = server.signal(sig)
    for client in clients:
        assert client.wait_closed(GRACE) == RESTART  # not 1006: the worker closed them
    for i in range(3):
        server.wait_for(rf"TERMINATE pid=\d+ rooms:drain{i} \('shutdown', 'closed'\)")
    assert server.wait_exit(GRACE) == 0
    took = time.monotonic() - sent
    assert took < GRACE / 2, f"gunicorn took {took:.1f}s of its {GRACE}s grace to stop"
    assert "Worker exiting" in server.text()
    assert not server.errors(), server.text()


def test_a_normal_close_logs_nothing_at_error_level(servers: list[Gunicorn]) -> None:
    server = _start(servers, "-k", "gthread", "--threads", "4", "--graceful-timeout", str(GRACE))
    for i in range(3):  # each close used to log "Socket error processing request ... [Errno 9]"
        client = _joined(server.port, f"rooms:quiet{i}")
        client.close()
        server.wait_for(rf"TERMINATE pid=\d+ rooms:quiet{i} ")
    status, _, body = http_get(server.port, "/page")
    assert status == 200 and b"pid=" in body  # the worker goes on serving HTTP
    server.signal(signal.SIGTERM)
    assert server.wait_exit(GRACE) == 0  # every request thread is done: stderr is complete
    assert not server.errors(), server.text()


def test_a_single_gthread_thread_is_warned_about_at_start(servers: list[Gunicorn]) -> None:
    server = _start(servers, "-k", "gthread")  # --threads 1 is gthread's default
    warning = server.wait_for(r"WARNING channels_actor\.gunicorn .*--threads 1")[0].string
    assert "--threads N" in warning and "one thread per WebSocket" in warning
    assert len(server.matching(r"WARNING channels_actor\.gunicorn")) == 1
    assert not server.matching(r"-w \d"), "one worker: nothing about broadcasts"


def test_the_sync_worker_is_warned_about_at_start(servers: list[Gunicorn]) -> None:
    server = _start(servers, "-k", "sync")
    warning = server.wait_for(r"WARNING channels_actor\.gunicorn .*sync worker")[0].string
    assert "WebSockets cannot work" in warning and "-k gthread --threads N" in warning


def test_enough_threads_and_one_worker_log_no_warning(servers: list[Gunicorn]) -> None:
    server = _start(servers, "-k", "gthread", "--threads", "4")
    _joined(server.port, "rooms:fine").close()
    server.wait_for(r"TERMINATE pid=\d+ rooms:fine ")
    assert not server.matching(r"WARNING channels_actor"), server.text()


def test_two_workers_with_the_embedded_pubsub_warn_once(servers: list[Gunicorn]) -> None:
    server = _start(servers, "-k", "gthread", "--threads", "4", workers=2)
    assert len(server.worker_pids()) == 2  # both workers have built their endpoint
    warnings = server.matching(r"WARNING channels_actor\.gunicorn (.*)")
    assert len(warnings) == 1, server.text()
    text = warnings[0].group(1)
    assert "gunicorn runs 2 workers (-w 2)" in text and "RedisPubSub(" in text
