"""A tiny raw client for exact-frame tests: simple-websocket plus HTTP-level helpers."""

from __future__ import annotations

import json
import socket
from typing import Any

import simple_websocket


class Client:
    """A V2 (or V1) Phoenix client speaking raw frames, for asserting exact shapes."""

    def __init__(self, port: int, query: str = "vsn=2.0.0", path: str = "/socket/websocket",
                 subprotocols: list[str] | None = None, headers: dict[str, str] | None = None) -> None:
        self.ws = simple_websocket.Client.connect(
            f"ws://127.0.0.1:{port}{path}?{query}", subprotocols=subprotocols, headers=headers
        )

    def send(self, frame: Any) -> None:
        self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    def recv(self, timeout: float = 2.0) -> Any:
        data = self.ws.receive(timeout)
        assert data is not None, f"no frame within {timeout}s"
        return json.loads(data) if isinstance(data, str) else data

    def recv_raw(self, timeout: float = 2.0) -> Any:
        data = self.ws.receive(timeout)
        assert data is not None, f"no frame within {timeout}s"
        return data

    def nothing(self, timeout: float = 0.1) -> None:
        data = self.ws.receive(timeout)
        assert data is None, f"expected no frame, got {data!r}"

    def wait_closed(self, timeout: float = 3.0) -> int:
        """Wait for the server's close; return its close code."""
        try:
            while True:
                data = self.ws.receive(timeout)
                if data is None:
                    raise AssertionError(f"connection still open after {timeout}s")
        except simple_websocket.ConnectionClosed as closed:
            return int(closed.reason)

    def join(self, topic: str, payload: dict[str, Any] | None = None, ref: str = "1") -> Any:
        self.send([ref, ref, topic, "phx_join", payload or {}])
        return self.recv()

    def close(self) -> None:
        try:
            self.ws.close()
        except simple_websocket.ConnectionClosed:
            pass


def http_get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP request; return (status, headers, body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if "Upgrade" not in (headers or {}):
        lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        if "content-length" not in parsed:  # chunked or close-delimited: read to EOF
            if int(status_line.split()[1]) != 101:
                while chunk := sock.recv(65536):
                    body += chunk
            return int(status_line.split()[1]), parsed, body
        length = int(parsed["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(status_line.split()[1]), parsed, body


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
