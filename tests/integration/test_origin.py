"""check_origin=True over real sockets: the endpoint's url_host is the reference, never
the request's own Host header (DNS rebinding)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from channels_actor import Endpoint
from channels_actor.errors import ConfigurationError
from tests.channels.app import UserSocket
from tests.integration.wsclient import UPGRADE


def _status(port: int, host: str, origin: str) -> int:
    """Send an upgrade with exactly these Host and Origin headers; return the status."""
    lines = ["GET /socket/websocket?vsn=2.0.0 HTTP/1.1", f"Host: {host}", f"Origin: {origin}"]
    lines += [f"{name}: {value}" for name, value in UPGRADE.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, "closed without an answer"
            data += chunk
    return int(data.split(b" ", 2)[1])


def _start(**config: Any) -> tuple[Endpoint, int]:
    ep = Endpoint(**config)
    ep.socket("/socket", UserSocket)
    return ep, ep.start("127.0.0.1", 0).port


def test_a_dns_rebinding_request_is_403_and_the_missing_url_host_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="channels_actor.transport")
    ep, port = _start()  # check_origin=True, no url_host
    try:
        assert _status(port, "evil.example", "http://evil.example") == 403
        assert _status(port, "evil.example:80", "http://evil.example:80") == 403
        assert _status(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
        assert _status(port, f"localhost:{port}", f"http://localhost:{port}") == 101
        assert _status(port, f"[::1]:{port}", f"http://[::1]:{port}") == 101
    finally:
        ep.stop()
    hints = [r for r in caplog.records if "url_host" in r.getMessage()]
    assert len(hints) == 1 and hints[0].levelno == logging.WARNING


def test_url_host_is_what_check_origin_true_compares_with() -> None:
    ep, port = _start(url_host="app.example")
    try:
        assert _status(port, "evil.example", "http://evil.example") == 403
        assert _status(port, "evil.example", "https://app.example") == 101
        assert _status(port, "app.example", "https://APP.example:8443") == 101  # host only
        assert _status(port, "app.example", "https://x.app.example") == 403
        assert _status(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 403
    finally:
        ep.stop()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"url_host": "https://app.example"}, "url_host must be a host name"),
        ({"url_host": ""}, "url_host must be a host name"),
        ({"url_host": 5}, "url_host must be a host name"),
        ({"request_timeout": 0}, "request_timeout must be positive seconds"),
    ],
)
def test_bad_url_host_or_request_timeout_is_a_clear_error(
    config: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Endpoint(**config)
