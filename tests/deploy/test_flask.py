"""Under ``flask run --debug`` (werkzeug's dev server with its debugger and reloader).

The endpoint is mounted in a Flask app with ``DispatcherMiddleware``
(``tests/deploy/flask_app.py``), at ``/socket`` and under ``/chat``; real
WebSocket clients connect through both mounts and close normally, and the
server's stderr must hold no line at error level: the debugger used to turn
every close into a 500 and a traceback ending ``ConnectionError: WebSocket
closed``.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

from tests.deploy.servers import ServerProcess, executable
from tests.integration.wsclient import Client, http_get


@pytest.fixture
def flask_run() -> Iterator[tuple[ServerProcess, int]]:
    server = ServerProcess(
        [executable("flask"), "--app", "tests.deploy.flask_app", "run", "--debug", "--port", "0"]
    )
    try:
        port = int(server.wait_for(r"Running on http://127\.0\.0\.1:(\d+)")[0].group(1))
        yield server, port
    finally:
        server.close()


@pytest.mark.parametrize(
    "path",
    [
        "/socket/websocket",  # SCRIPT_NAME /socket, PATH_INFO /websocket: the whole path matches
        "/chat/socket/websocket",  # SCRIPT_NAME /chat, PATH_INFO /socket/websocket
    ],
)
def test_the_endpoint_mounted_in_flask_serves_and_closes_quietly(
    flask_run: tuple[ServerProcess, int], path: str
) -> None:
    server, port = flask_run
    assert http_get(port, "/")[2] == b"flask page"  # Flask still serves its own routes
    for i in range(2):
        client = Client(port, path=path)
        reply = client.join(f"rooms:flask{i}")
        assert reply[3:] == [
            "phx_reply",
            {"status": "ok", "response": {"pid": reply[4]["response"]["pid"]}},
        ]
        client.send(["1", "2", f"rooms:flask{i}", "shout", {"n": i}])
        assert client.recv()[3:] == ["shout", {"n": i}]
        client.close()
        server.wait_for(rf"TERMINATE pid=\d+ rooms:flask{i} \('shutdown', 'closed'\)")
    # the request thread logs its request once it is done with it: 101, not a 500
    server.wait_for(re.escape(f"GET {path}?vsn=2.0.0 HTTP/1.1") + r'\S*" 101 -', count=2)
    os.killpg(server.proc.pid, signal.SIGINT)  # Ctrl-C: the reloader and the server
    server.wait_exit()
    assert not server.errors(), server.text()
    assert not server.matching(r'" 500 -'), server.text()
