"""Embedding: the endpoint's WSGI app under werkzeug's threaded server and gunicorn gthread."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from channels_actor import Endpoint
from tests.channels.app import UserSocket
from tests.helpers import Events
from tests.integration.wsclient import UPGRADE, Client, http_get

ROOT = Path(__file__).parents[2]


def _exercise(port: int) -> None:
    a, b = Client(port), Client(port)
    try:
        assert a.join("rooms:w", ref="1")[4]["status"] == "ok"
        assert b.join("rooms:w", ref="1")[4]["status"] == "ok"
        a.send(["1", "2", "rooms:w", "broadcast", {"event": "hello", "body": {"n": 1}}])
        assert a.recv() == [None, None, "rooms:w", "hello", {"n": 1}]
        assert b.recv() == [None, None, "rooms:w", "hello", {"n": 1}]
        a.send(["1", "3", "rooms:w", "reply_map", {"x": 1}])
        assert a.recv() == ["1", "3", "rooms:w", "phx_reply", {"status": "ok", "response": {"echo": {"x": 1}}}]
    finally:
        a.close()
        b.close()
    assert http_get(port, "/socket/websocket?vsn=9.0.0", UPGRADE)[0] == 403


@pytest.fixture
def werkzeug_server(events: Events) -> Iterator[tuple[Endpoint, int]]:
    ep = Endpoint()
    ep.socket("/socket", UserSocket)
    server = make_server("127.0.0.1", 0, ep.wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug")
    thread.start()
    yield ep, server.server_port
    ep.stop()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_werkzeug_threaded(werkzeug_server: tuple[Endpoint, int]) -> None:
    ep, port = werkzeug_server
    _exercise(port)
    assert http_get(port, "/elsewhere")[0] == 404
    old_version = {**UPGRADE, "Sec-WebSocket-Version": "8"}
    assert http_get(port, "/socket/websocket?vsn=2.0.0", old_version)[0] == 426


def test_werkzeug_request_thread_is_released_when_the_socket_closes(werkzeug_server: tuple[Endpoint, int]) -> None:
    ep, port = werkzeug_server
    warm = Client(port)  # starts the endpoint's own threads
    warm.join("rooms:warm")
    before = set(threading.enumerate())
    c = Client(port)
    c.join("rooms:release")
    request_threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("Thread-")]
    assert request_threads, "werkzeug serves each WebSocket on a request thread of its own"
    c.close()
    # the request thread returns once the reactor has released the socket
    for thread in request_threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    warm.close()


def _gunicorn() -> str | None:
    found = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    return found or shutil.which("gunicorn")


def test_gunicorn_gthread() -> None:
    binary = _gunicorn()
    if binary is None:
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail("gunicorn is not installed (pip install -e '.[test]')")
        pytest.skip("gunicorn is not installed")
    proc = subprocess.Popen(
        [binary, "-k", "gthread", "--threads", "8", "-w", "1", "-b", "127.0.0.1:0",
         "--graceful-timeout", "5", "tests.integration.gunicorn_app:app"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
            if "Booting worker" in line:
                break
        assert port is not None, "gunicorn did not start"
        _exercise(port)
        assert b"plain http through gunicorn" in http_get(port, "/page")[2]  # body is chunked
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        finally:
            if proc.stderr is not None:
                proc.stderr.close()
