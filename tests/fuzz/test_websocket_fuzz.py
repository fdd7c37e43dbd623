"""WebSocket framing over a real socket: malformed client frames close that connection only.

A real endpoint listens on 127.0.0.1. Each case opens a connection (a plain
socket doing its own upgrade, so any byte can be sent), joins a channel or not,
and sends client frames that break RFC 6455 or Phoenix's framing: unknown
opcodes, unmasked frames, reserved bits, fragmented or oversized control
frames, stray continuations, invalid UTF-8, frames past ``max_frame_size``,
bad close codes, malformed JSON; or arbitrary and mutated byte streams.

A violation must get a close frame with the right code (1002 protocol error,
1007 invalid data, 1009 too big) and then end of file, without the client
closing first; arbitrary bytes followed by the client's end of file may get a
close with any of those codes or none, but the server must close its side too.
Every frame the server sends is parsed, so a malformed one fails the case. No
case may hang (every read has a timeout). After the batch a fresh client still
joins and gets its reply, and no connection is left open.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import given
from hypothesis import strategies as st

from channels_actor import Channel, Endpoint, Socket, SocketHandler
from tests.fuzz import FED, fuzz_settings, mutate
from tests.integration import rawframes
from tests.integration.wsclient import UPGRADE, Client

MAX_FRAME = 4096
TIMEOUT = 5.0
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009
# What a close may carry when the server is fed arbitrary bytes: those three,
# 1000 (the bytes happened to hold a valid close), 1008 (policy).
ANY_CLOSE = {1000, PROTOCOL_ERROR, INVALID_DATA, 1008, TOO_BIG}


class Echo(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        return ("reply", ("ok", {"event": event}), socket)


class FuzzSocket(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"fuzz:*": Echo}

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", socket)


# ------------------------------------------------------------------ client frames


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    declared: int | None = None,
) -> bytes:
    """One client frame; ``declared`` is a length that may differ from the payload's."""
    # A key derived from the frame, not random, so a derandomized run sends the same bytes.
    seed = bytes((opcode & 0xFF, rsv & 0xFF, fin)) + str(declared).encode() + payload
    key = zlib.crc32(seed).to_bytes(4, "big")
    return rawframes.client_frame(
        opcode, payload, fin=fin, mask=masked, rsv=rsv << 4, key=key, declared=declared
    )


def text(value: Any) -> bytes:
    return client_frame(0x1, json.dumps(value).encode())


HEARTBEAT = text([None, "hb", "phoenix", "heartbeat", {}])
JOIN = text(["1", "1", "fuzz:room", "phx_join", {}])
PUSH = text(["1", "2", "fuzz:room", "ping", {"n": 1}])


@dataclass(frozen=True)
class Case:
    """What to send, and what the server must answer."""

    kind: str
    data: bytes
    # The close codes allowed; a violation must be closed by the server itself.
    codes: frozenset[int]
    violation: bool


def violation(kind: str, data: bytes, code: int) -> Case:
    return Case(kind, data, frozenset({code}), violation=True)


_payload = st.binary(max_size=40)
_json_text = st.sampled_from([b'[null,"1","phoenix","heartbeat",{}]', b"{}", b"[1]"])


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """One malformed client frame (or byte stream) of a randomly chosen class."""
    kind = draw(st.sampled_from(sorted(_BUILDERS)))
    return _BUILDERS[kind](draw)


def _bad_opcode(draw: st.DrawFn) -> Case:
    opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
    return violation("bad opcode", client_frame(opcode, draw(_payload)), PROTOCOL_ERROR)


def _unmasked(draw: st.DrawFn) -> Case:
    opcode = draw(st.sampled_from([0x1, 0x2, 0x9]))
    body = draw(_json_text) if opcode == 0x1 else draw(_payload)
    return violation("unmasked", client_frame(opcode, body, masked=False), PROTOCOL_ERROR)


def _reserved_bits(draw: st.DrawFn) -> Case:
    # No extension is negotiated on these connections, so every RSV bit is an error.
    rsv = draw(st.integers(1, 7))
    frame = client_frame(draw(st.sampled_from([0x1, 0x2, 0x9])), draw(_json_text), rsv=rsv)
    return violation("reserved bits", frame, PROTOCOL_ERROR)


def _fragmented_control(draw: st.DrawFn) -> Case:
    opcode = draw(st.sampled_from([0x8, 0x9, 0xA]))
    body = struct.pack("!H", 1000) if opcode == 0x8 else draw(_payload)
    return violation("fragmented control", client_frame(opcode, body, fin=False), PROTOCOL_ERROR)


def _oversized_control(draw: st.DrawFn) -> Case:
    opcode = draw(st.sampled_from([0x8, 0x9, 0xA]))
    body = draw(st.binary(min_size=126, max_size=300))
    if opcode == 0x8:
        body = struct.pack("!H", 1000) + body
    return violation("control over 125 bytes", client_frame(opcode, body), PROTOCOL_ERROR)


def _stray_continuation(draw: st.DrawFn) -> Case:
    frame = client_frame(0x0, draw(_payload), fin=draw(st.booleans()))
    return violation("continuation without a start", frame, PROTOCOL_ERROR)


def _interleaved_data(draw: st.DrawFn) -> Case:
    # A new text/binary frame while a fragmented message is still open.
    first = client_frame(0x1, b"[null,", fin=False)
    second = client_frame(draw(st.sampled_from([0x1, 0x2])), draw(_payload))
    return violation("data frame inside a fragmented message", first + second, PROTOCOL_ERROR)


def _invalid_utf8(draw: st.DrawFn) -> Case:
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
    body = b'["1","1","fuzz:' + bad + b'","phx_join",{}]'
    if draw(st.booleans()):
        frames = client_frame(0x1, body)
    else:  # split across fragments, possibly in the middle of a sequence
        cut = draw(st.integers(1, len(body) - 1))
        frames = client_frame(0x1, body[:cut], fin=False) + client_frame(0x0, body[cut:])
    return violation("invalid UTF-8", frames, INVALID_DATA)


def _too_big(draw: st.DrawFn) -> Case:
    size = draw(st.integers(MAX_FRAME + 1, MAX_FRAME * 2))
    body = b"[" + b" " * (size - 2) + b"]"
    if draw(st.booleans()):
        frames = client_frame(draw(st.sampled_from([0x1, 0x2])), body)
    else:  # fragments each below the limit whose total is above it
        half = size // 2
        frames = client_frame(0x2, body[:half], fin=False) + client_frame(0x0, body[half:])
    return violation("over max_frame_size", frames, TOO_BIG)


def _bad_close(draw: st.DrawFn) -> Case:
    code = draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]))
    if draw(st.booleans()):
        return violation(
            "bad close code", client_frame(0x8, struct.pack("!H", code)), PROTOCOL_ERROR
        )
    return violation("one-byte close payload", client_frame(0x8, b"\x03"), PROTOCOL_ERROR)


def _close_bad_reason(draw: st.DrawFn) -> Case:
    frame = client_frame(0x8, struct.pack("!H", 1000) + b"bye \xff")
    return violation("close reason not UTF-8", frame, INVALID_DATA)


def _malformed_message(draw: st.DrawFn) -> Case:
    body = draw(
        st.sampled_from(
            [b"not json", b"[1,2]", b'{"a": 1}', b'["1","1",5,"x",{}]', b"", b"[" * 2000]
        )
    )
    opcode = draw(st.sampled_from([0x1, 0x2]))  # a binary frame is a V2 binary push
    frame = client_frame(opcode, body)
    return violation("malformed Phoenix message", frame, INVALID_DATA)


def _arbitrary(draw: st.DrawFn) -> Case:
    data = draw(st.binary(min_size=1, max_size=200))
    return Case("arbitrary bytes", data, frozenset(ANY_CLOSE), violation=False)


def _mutated(draw: st.DrawFn) -> Case:
    # A valid session (join, push, heartbeat) with a few byte-level edits.
    stream = JOIN + PUSH + HEARTBEAT
    rng = random.Random(draw(st.integers(0, 2**32)))
    return Case("mutated session", mutate(stream, rng, [stream]), frozenset(ANY_CLOSE), False)


def _lying_length(draw: st.DrawFn) -> Case:
    declared = draw(st.sampled_from([126, 65535, 65536, 2**32, 2**63 - 1]))
    frame = client_frame(0x1, draw(_payload), declared=declared)
    return Case("length past the end", frame, frozenset(ANY_CLOSE), violation=False)


_BUILDERS = {
    "bad opcode": _bad_opcode,
    "unmasked": _unmasked,
    "reserved bits": _reserved_bits,
    "fragmented control": _fragmented_control,
    "oversized control": _oversized_control,
    "stray continuation": _stray_continuation,
    "interleaved data": _interleaved_data,
    "invalid utf-8": _invalid_utf8,
    "too big": _too_big,
    "bad close": _bad_close,
    "close bad reason": _close_bad_reason,
    "malformed message": _malformed_message,
    "arbitrary": _arbitrary,
    "mutated": _mutated,
    "lying length": _lying_length,
}


# ------------------------------------------------------------------ a raw connection


class Raw:
    """A client connection at the byte level that parses every server frame strictly."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(
            (
                f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE.items())
                + "\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "EOF during the upgrade"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head[:100]

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed first; what it sent is still read below

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError(
                    f"the server neither closed nor answered in {TIMEOUT}s"
                ) from None
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _take(self, size: int) -> bytes | None:
        if not self._fill(size):
            assert not self.buffer, f"EOF inside a server frame: {self.buffer[:40]!r}"
            return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Server frames until EOF; a socket timeout (a hang) fails the case."""
        while (head := self._take(2)) is not None:
            fin, rsv, opcode = head[0] & 0x80, head[0] & 0x70, head[0] & 0x0F
            assert fin and not rsv and opcode in (0x1, 0x2, 0x8, 0x9, 0xA), head
            assert not head[1] & 0x80, "a server frame must not be masked"
            size = head[1] & 0x7F
            if size >= 126:
                extra = self._take(2 if size == 126 else 8)
                assert extra is not None, "EOF inside a server frame header"
                size = int.from_bytes(extra, "big")
            payload = self._take(size) if size else b""
            assert payload is not None, "EOF inside a server frame"
            if opcode == 0x1:
                payload.decode("utf-8")
            yield opcode, payload

    def close_code(self) -> int | None:
        """Read to EOF; return the close frame's code (None when there was no close)."""
        code = None
        for opcode, payload in self.frames():
            if opcode == 0x8:
                assert code is None, "two close frames"
                assert len(payload) >= 2, payload
                code = struct.unpack("!H", payload[:2])[0]
                payload[2:].decode("utf-8")
            else:
                assert code is None, "a frame after the close frame"
        return code

    def close(self) -> None:
        self.sock.close()


def run_case(port: int, case: Case, joined: bool) -> None:
    FED[f"websocket frames: {case.kind}"] += 1
    raw = Raw(port)
    try:
        if joined:
            raw.send(JOIN)
        raw.send(case.data)
        if not case.violation:
            # Arbitrary bytes may leave the server waiting for more: end the
            # stream so it must finish and close too.
            raw.sock.shutdown(socket.SHUT_WR)
        code = raw.close_code()
        if case.violation:
            assert code in case.codes, (
                f"{case.kind}: closed with {code}, expected {set(case.codes)}"
            )
        else:
            assert code is None or code in case.codes, f"{case.kind}: closed with {code}"
    finally:
        raw.close()


def assert_no_new_threads(baseline: set[threading.Thread]) -> None:
    """Threads started during the batch must end (the handshake pool may grow within its bound)."""
    for thread in set(threading.enumerate()) - baseline:
        if not thread.name.startswith("channels_actor-http"):
            thread.join(TIMEOUT)
            assert not thread.is_alive(), f"{thread.name} still running after the batch"


def test_malformed_frames_close_the_connection_and_the_server_keeps_serving() -> None:
    endpoint = Endpoint(max_frame_size=MAX_FRAME, check_origin=False)
    endpoint.socket("/socket", FuzzSocket)
    port = endpoint.start("127.0.0.1", 0).port
    try:

        @fuzz_settings(300, weight=0.01)
        @given(case=cases(), joined=st.booleans())
        def batch(case: Case, joined: bool) -> None:
            run_case(port, case, joined)

        baseline = set(threading.enumerate())
        batch()
        # Every case waited for end of file, which the server sends only after
        # it has dropped the connection (the close frame comes first), so none
        # may be left.
        assert endpoint.connection_count == 0
        assert_no_new_threads(baseline)
        fresh = Client(port)
        try:
            assert fresh.join("fuzz:after")[4] == {"status": "ok", "response": {}}
            fresh.send(["1", "2", "fuzz:after", "ping", {}])
            assert fresh.recv() == [
                "1", "2", "fuzz:after", "phx_reply", {"status": "ok", "response": {"event": "ping"}}
            ]  # fmt: skip
        finally:
            fresh.close()
    finally:
        endpoint.stop()
