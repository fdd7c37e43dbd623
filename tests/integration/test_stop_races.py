"""Stopping while a client is half-way through its upgrade loses no socket.

A handshake thread that has passed ``connect`` when the endpoint begins to
stop must not open a WebSocket the stop never sees: that socket stayed
registered with a reactor that had gone, open until garbage collection (a
ResourceWarning), and its client never heard a close.
"""

from __future__ import annotations

import gc
import socket
import threading
import warnings
from typing import Any

from channels_actor import Endpoint, Socket, SocketHandler

UPGRADE = (
    "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
).encode()


class SlowConnect(SocketHandler):
    """``connect`` says it has begun, then waits to be let go."""

    entered = threading.Event()
    release = threading.Event()

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        SlowConnect.entered.set()
        assert SlowConnect.release.wait(10)
        return ("ok", socket)


def test_an_upgrade_in_progress_when_the_stop_begins_is_answered_and_closed() -> None:
    SlowConnect.entered.clear()
    SlowConnect.release.clear()
    endpoint = Endpoint(check_origin=False)
    endpoint.socket("/socket", SlowConnect)
    port = endpoint.start("127.0.0.1", 0).port
    # the stop's first step after it has marked the service stopping: tell the test
    requests = endpoint._websockets._requests
    assert requests is not None
    stop_began = threading.Event()
    close_reader = requests.close

    def close_and_tell() -> None:
        close_reader()
        stop_began.set()

    requests.close = close_and_tell  # type: ignore[method-assign]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    stopper = threading.Thread(target=endpoint.stop, name="stopper")
    try:
        client.sendall(UPGRADE)
        assert SlowConnect.entered.wait(10)
        stopper.start()
        assert stop_began.wait(10)
        SlowConnect.release.set()
        answer = b""
        while chunk := client.recv(65536):  # until the server closes
            answer += chunk
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        SlowConnect.release.set()
        client.close()
        if stopper.is_alive():
            stopper.join(10)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b"The server is stopping" in answer
    assert endpoint.connection_count == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
