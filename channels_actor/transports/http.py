"""The little HTTP/1.1 the standalone server speaks: one request head in, one response out.

A WebSocket upgrade is a single GET with headers; the standalone server also
answers plain requests for ``Endpoint.http_app`` (the demo's page and assets)
and then closes the connection. This strict parser costs a small fraction of
what h11 does per head, which matters when thousands of clients connect per
second. Anything unusual (obsolete line folding, a bad request line,
``Transfer-Encoding`` on a request, an oversized head) is refused with a
status code rather than interpreted. Pure functions: the reactor reads the bytes.

The reasons given in :class:`BadRequest` end up in logs, so they say what was
wrong and how big it was, never the bytes themselves: a request line carries
the query string, which often carries a token.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "BadRequest",
    "RequestHead",
    "accept_key",
    "content_length",
    "head_end",
    "parse_head",
    "response",
    "status_line",
    "switching_protocols",
]

MAX_HEAD = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_DIGITS = re.compile(r"[0-9]{1,19}")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# \Z, not $: "$" also matches before a final newline, which would let a bare LF through.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"^HTTP/1\.[0-9]\Z")
# RFC 9110: CR, LF and NUL inside a field value (or the target) must be rejected.
_CTL = re.compile(rb"[\r\n\0]")
_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """The request cannot be served; answer ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and headers (names lower-case, in order)."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]


def head_end(data: bytes | bytearray, limit: int = MAX_HEAD, start: int = 0) -> int:
    """Where the head in ``data`` ends (after its blank line), or -1 if it has not yet.

    ``start`` skips what an earlier call already searched (less the 3 bytes a
    blank line may straddle). Raises :class:`BadRequest` (431) when more than
    ``limit`` bytes came without one.
    """
    end = data.find(_HEAD_END, max(0, start - 3))
    if end >= 0:
        return end + 4
    if len(data) > limit:
        raise BadRequest(431, f"request head too large (over {limit} bytes without its end)")
    return -1


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (ending with the blank line) strictly."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        msg = (
            f"malformed request line ({len(lines[0])} bytes in {len(parts)} space-separated "
            "parts, not 3: method, target, version)"
        )
        raise BadRequest(400, msg)
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest(400, f"malformed request line (a {len(method)}-byte method not a token)")
    if not _VERSION.match(version):
        msg = f"malformed request line (a {len(version)}-byte version not HTTP/1.x)"
        raise BadRequest(400, msg)
    if not target:
        raise BadRequest(400, "malformed request line (an empty target)")
    if _CTL.search(target):
        raise BadRequest(400, "malformed request line (a control character in the target)")
    headers: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:], 1):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise BadRequest(400, "obsolete header line folding is not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name) or _CTL.search(value):
            msg = (
                f"malformed header line {number} ({len(line)} bytes; expected 'name: value' "
                "without control characters)"
            )
            raise BadRequest(400, msg)
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return RequestHead(
        method.decode("ascii"), target.decode("latin-1"), version.decode("ascii"), headers
    )


def content_length(value: str | None, limit: int) -> int:
    """The body size a ``Content-Length`` value announces (0 when absent).

    Raises :class:`BadRequest`: 400 unless the value is plain decimal digits
    (``-1``, ``+5``, ``0x10``, ``1,2`` and repeated differing values are all
    malformed), 413 when it is over ``limit``.
    """
    if value is None or value == "":
        return 0
    values = {item.strip() for item in value.split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
        msg = f"malformed Content-Length ({len(value)} characters; expected decimal digits)"
        raise BadRequest(400, msg)
    length = int(next(iter(values)))
    if length > limit:
        raise BadRequest(413, f"request body too large ({length} bytes; at most {limit})")
    return length


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def switching_protocols(key: str, subprotocol: str | None) -> bytes:
    """The ``101`` answer to a valid WebSocket upgrade, without extensions."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status_line(status: int) -> str:
    """``"404 Not Found"``: a status with its reason phrase (for WSGI ``start_response``)."""
    return f"{status} {_REASONS.get(status, 'Unknown')}"


def response(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A complete response that closes the connection afterwards."""
    names = {name.lower() for name, _ in headers}
    lines = [f"HTTP/1.1 {status_line(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if "content-length" not in names:
        lines.append(f"content-length: {len(body)}")
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def valid_websocket_key(key: str | None) -> bool:
    """RFC 6455: the key is the base64 of 16 bytes."""
    if not key:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False
