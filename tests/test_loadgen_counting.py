"""The load generator's counting check, in process: crafted byte streams fed to one client.

A client that only counts bytes must still notice a reordering, a damaged header
of the same length and anything that is not a delivery, wherever the kernel
happens to split the stream; a clean stream must pass, split anywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from benchmarks.loadgen import COUNT, JOINED, SEQ_BASE, T_BASE, Client, Loadgen

FRAMES = 40
TOPIC = "fan:lobby"


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked frame as a server sends it."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def delivery(seq: int, body: int) -> bytes:
    text = (
        f'[null,null,"{TOPIC}","new_msg",'
        f'{{"seq":{SEQ_BASE + seq},"t":{T_BASE + 1234},"body":"{"x" * body}"}}]'
    )
    return server_frame(text.encode())


class FakeSocket:
    """What a Client needs of a socket: chunks to receive, and what was sent kept."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.sent: list[bytes] = []
        self._fd, self._other = socket.socketpair()  # a real fd for fileno()

    def fileno(self) -> int:
        return self._fd.fileno()

    def recv(self, _size: int) -> bytes:
        return self.chunks.pop(0)

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def setsockopt(self, *_args: object) -> None:
        pass

    def close(self) -> None:
        self._fd.close()
        self._other.close()


def feed(frames: list[bytes], chunks: list[bytes]) -> dict[str, int]:
    """One joined client fed ``frames[0]`` alone (it learns the delivery's length and
    starts counting bytes), then ``chunks``; what the generator made of it."""
    lg = Loadgen(watch_stdin=False)
    sock = FakeSocket()
    client = Client(1, sock, TOPIC)  # type: ignore[arg-type]
    client.state = JOINED
    lg.by_fd[client.fd] = client
    lg.clients.append(client)
    lg.fanout = lg.hybrid = True
    lg.subscribers = 1
    lg.published = FRAMES
    lg.counts = [0] * FRAMES
    try:
        modes = []
        for chunk in [frames[0], *chunks]:
            if not chunk:
                continue
            sock.chunks.append(chunk)
            lg.on_readable(client)
            modes.append(client.mode)
        assert modes[0] == COUNT, "the client should count bytes after its first delivery"
        return {
            "got": client.got,
            "order_errors": lg.order_errors,
            "corrupt": getattr(lg, "corrupt", 0),  # the older generator raised instead
            "pongs": sum(1 for s in sock.sent if s[0] & 0x0F == 0xA),
            "closed": int(client.state != JOINED),
        }
    finally:
        lg.ep.close()
        sock.close()


def detected(result: dict[str, int]) -> bool:
    """What the benchmark would report: a loss, a disorder, a damaged frame or a close."""
    return bool(
        result["got"] != FRAMES or result["order_errors"] or result["corrupt"] or result["closed"]
    )


def splits(data: bytes) -> Iterator[list[bytes]]:
    """``data`` whole, then cut in two at every offset, then in pieces of every size up
    to a little over one frame."""
    yield [data]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    for piece in range(1, 300, 7):
        yield [data[i : i + piece] for i in range(0, len(data), piece)]


@pytest.fixture(params=[20, 64], ids=["short-header", "extended-header"])
def stream(request: pytest.FixtureRequest) -> list[bytes]:
    """Deliveries of 2-byte headers, or of 4 (the benchmark's own 64-byte body)."""
    frames = [delivery(seq, request.param) for seq in range(FRAMES)]
    assert (frames[0][1] == 126) == (request.param == 64)
    return frames


def test_clean_stream_passes_split_anywhere(stream: list[bytes]) -> None:
    rest = b"".join(stream[1:])
    for chunks in splits(rest):
        result = feed(stream, chunks)
        assert not detected(result), (len(chunks[0]), result)


def test_ping_mid_stream_is_answered_and_nothing_is_miscounted(stream: list[bytes]) -> None:
    rest = b"".join([*stream[1:20], server_frame(b"are you there", 0x9), *stream[20:]])
    for chunks in splits(rest):
        result = feed(stream, chunks)
        assert not detected(result), (len(chunks[0]), result)
        assert result["pongs"] == 1


def test_reorder_by_ten_is_detected_split_anywhere(stream: list[bytes]) -> None:
    frames = list(stream)
    frames[12], frames[22] = frames[22], frames[12]  # same last digit, same length
    rest = b"".join(frames[1:])
    assert len(rest) == len(b"".join(stream[1:]))
    for chunks in splits(rest):
        result = feed(frames, chunks)
        assert result["order_errors"], (len(chunks[0]), result)


@pytest.mark.parametrize("which", ["FIN/opcode", "length form", "length"])
def test_same_length_header_change_is_detected_split_anywhere(
    stream: list[bytes], which: str
) -> None:
    frames = list(stream)
    damaged = bytearray(frames[17])
    head = 4 if damaged[1] & 0x7F == 126 else 2
    if which == "FIN/opcode":
        damaged[0] = 0x89  # a ping where a delivery belongs: one delivery missing
    elif which == "length form":
        # a short length replaced by the 16-bit marker, or the marker by a short length
        damaged[1] = 126 if head == 2 else 125
    else:
        damaged[head - 1] ^= 0x01  # the (last) length byte, one off
    frames[17] = bytes(damaged)
    rest = b"".join(frames[1:])
    assert len(rest) == len(b"".join(stream[1:]))
    for chunks in splits(rest):
        result = feed(frames, chunks)
        assert detected(result), (len(chunks[0]), result)


def test_hundreds_digit_and_whole_number_are_checked() -> None:
    """A gap of exactly 1,000 leaves the last three digits right: the whole number of
    each chunk's last frame catches it."""
    frames = [delivery(seq, 64) for seq in range(FRAMES)]
    frames[30:] = [delivery(seq + 1000, 64) for seq in range(30, FRAMES)]
    result = feed(frames, [b"".join(frames[1:])])
    assert result["order_errors"], result


def test_a_frame_cut_short_is_a_damaged_stream_not_a_close() -> None:
    """A delivery cut short with the stream going on: the bytes the parser then takes for
    a header (``"xx"`` of a body, which would read as a close frame with code 30840) are
    reported as a damaged stream."""
    frames = [delivery(seq, 64) for seq in range(FRAMES)]
    rest = b"".join(frames[1:30]) + frames[30][:50] + b"".join(frames[31:])
    for chunks in splits(rest):
        result = feed(frames, chunks)
        assert result["closed"] and result["corrupt"], (len(chunks[0]), result)
