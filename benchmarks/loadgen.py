"""The load generator of the network benchmarks: many WebSocket clients in one light process.

One thread, one ``epoll`` loop, raw non-blocking sockets. It does the HTTP
upgrade itself, masks what it sends with a fixed key, and parses server
frames (unmasked) with a few slices: no WebSocket or JSON library on the hot
path. A delivery is recognised by its ``"seq":`` field; the sequence number
tells which broadcast it belongs to, so the generator counts deliveries per
client and per broadcast, checks order, and finds losses, and the ``"t":``
field (``perf_counter_ns`` at publish time, this process's clock) gives the
end-to-end latency.

Protocols (``proto``):

``phoenix``
    ``/socket/websocket?vsn=2.0.0``; join ``["1","1",topic,"phx_join",{}]``,
    joined on the ``phx_reply`` with status ok; publish
    ``["1",ref,topic,"new_msg",{"seq":n,"t":ns,"body":"x"*64}]``.
``socketio``
    ``/socket.io/?EIO=4&transport=websocket``: Engine.IO v4 open packet
    ``0{...}``, Socket.IO v5 connect ``40``, joined on ``40{...}``; publish
    ``42["new_msg",{...}]``; pings ``2`` answered with ``3``; room joins
    ``42<id>["join",{"room":...}]`` acknowledged by ``43<id>[...]``.
``plain`` (bare, websockets)
    ``/``; joined on ``{"joined":1}``; publish the JSON object itself.

The parent drives it with one JSON command per stdin line and reads JSON
lines on stdout: ``{"event": ...}`` marks (the measurement window opening and
closing, so the parent can read the server's CPU time then) and one
``{"result": ...}`` per command. Sockets keep being served between commands
(pings answered). End of stdin exits.

In the fan-out phases, one client in ``check_every`` (32; and the publisher) parses
every frame; the others, once they have seen one delivery, only count bytes: every delivery
has the same length (sequence numbers and timestamps are fixed-width), so frames =
bytes / length. Every header byte of every frame is compared with the first
delivery's, one slice per byte position (a ping or anything else switches that client
back to parsing), and the last three digits of every sequence number with what they
must be, plus the whole number of each chunk's last frame (order: a gap, a repeat or a
reordering by ten or a hundred shows). Losses are still found exactly (each
client's count against the number published). Latency samples come from the
parsing clients, spread evenly over the order in which the clients subscribed.

Commands: ``connect`` (open ``n`` clients, ``k`` handshakes in flight, each
joining ``topic``), ``saturate`` (publish with at most ``window`` broadcasts
in flight, a broadcast being done when every client got it; count deliveries
over ``duration`` after ``warmup``), ``latency`` (publish at ``rate``
broadcasts/s on a fixed schedule; latency percentiles), ``flood`` (``count``
broadcasts from an unpaced publisher, every client parsing every frame), ``join_topics``
(every open client joins ``per_socket`` more topics, pipelined), ``close``.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from benchmarks import _util

BODY = "x" * 64
MASK = b"\x37\xfa\x21\x3d"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RECV_SIZE = 65536
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERRS = select.EPOLLERR | select.EPOLLHUP

PATHS = {
    "phoenix": "/socket/websocket?vsn=2.0.0",
    "socketio": "/socket.io/?EIO=4&transport=websocket",
    "plain": "/",
}

# connection states
CONNECTING, HANDSHAKE, OPEN, JOINED, CLOSED = range(5)
# how a joined client reads deliveries: every frame parsed, or frames counted by length
PARSE, COUNT = range(2)
# Fixed-width numbers: every delivery of a run has the same length, so most clients can
# count frames by bytes while saturating (see Loadgen.on_counted).
SEQ_BASE = 10**9
T_BASE = 10**15
SEQ_DIGITS = 10  # every sequence number is SEQ_BASE + n: ten digits
#: COUNT mode checks the last SEQ_PLACES digits of every frame's sequence number (a
#: reorder or gap by anything but a multiple of 1,000 shows) and the whole number of the
#: last frame of each chunk read. SEQ_PATTERNS[p] holds the digit at place 10**p of
#: 0, 1, 2, ...: its slice from n % 10**(p + 1) gives that digit of n, n + 1, ... for as
#: many frames as one recv can hold.
SEQ_PLACES = 3
SEQ_PATTERNS = tuple(
    bytes(48 + (i // 10**p) % 10 for i in range(10 ** (p + 1) + RECV_SIZE))
    for p in range(SEQ_PLACES)
)
SEQ_CHECKS = tuple((p, 10 ** (p + 1), SEQ_PATTERNS[p]) for p in range(SEQ_PLACES))
#: Chunks shorter than this many frames are checked frame by frame (count_few): fewer
#: steps than the slices, which cost the same for one frame as for four hundred.
FEW_FRAMES = 5
#: The unpaced publisher (cmd_flood) writes from a thread of its own, so that reading
#: the deliveries cannot pace it (a publisher served by the same loop as its readers
#: only publishes as fast as they read, which is a paced publisher after all).
# In the fan-out phases one client in CHECK_EVERY (and the publisher) parses every frame;
# the others count bytes. Parsing every eighth client took a third of the generator's
# time at half of channels_actor's saturation, where it must not be the bottleneck.
CHECK_EVERY = 32


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final client frame: masked with :data:`MASK`."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    if size:
        key = (MASK * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    else:
        masked = b""
    return head + MASK + masked


class Client:
    __slots__ = (
        "buf",
        "close_code",
        "closed_by_server",
        "digit_at",
        "error",
        "expect",
        "fd",
        "frame_head",
        "frame_len",
        "got",
        "head_checks",
        "index",
        "join_ref",
        "joined_at",
        "mode",
        "out",
        "partial",
        "ref",
        "sock",
        "started_at",
        "state",
        "topic",
    )

    def __init__(self, index: int, sock: socket.socket, topic: str) -> None:
        self.index = index
        self.sock = sock
        self.fd = sock.fileno()
        self.state = CONNECTING
        self.buf = b""
        self.out = b""
        self.topic = topic
        self.expect = 0
        self.got = 0
        self.ref = 1
        self.join_ref = 1
        self.error: str | None = None
        self.closed_by_server = False
        self.started_at = 0.0
        self.joined_at = 0.0
        self.mode = PARSE
        self.frame_len = 0  # bytes of one delivery frame, header included (0: not seen yet)
        self.frame_head = b""  # its header: FIN/opcode, length form, extended length
        self.head_checks: tuple[tuple[int, int], ...] = ()  # (offset, byte) of each
        self.partial = 0  # COUNT mode: bytes of the frame in progress
        self.digit_at = 0  # offset of the last digit of "seq" in a delivery frame
        self.close_code: int | None = None


class Loadgen:
    def __init__(self, watch_stdin: bool = True) -> None:
        self.ep = select.epoll()
        self.by_fd: dict[int, Client] = {}
        self.clients: list[Client] = []  # joined clients, in join order
        self.port = 0
        self.proto = "phoenix"
        self.stdin_buf = b""
        self.commands: list[dict[str, Any]] = []
        self.stdin_open = watch_stdin
        if watch_stdin:
            self.ep.register(0, EPOLLIN)
        self.now_ns = time.perf_counter_ns()
        self.t0_ns = self.now_ns
        self.hybrid = False  # saturating: COUNT mode allowed, completion by averages
        self.check_every = CHECK_EVERY
        self.fanout = False  # deliveries expected: on_deliveries reads them
        # publish / delivery accounting
        self.published = 0
        self.counts: list[int] = []
        self.completed = 0
        self.delivered = 0
        self.order_errors = 0
        self.corrupt = 0  # delivery frames whose sequence number could not be read
        self.subscribers = 0
        self.window = 0
        self.pumping = False
        self.sampling = False
        self.samples: list[int] = []
        self.last_progress = time.monotonic()
        # connect phase
        self.connect_pending = 0
        self.connect_in_flight = 0
        self.connect_joined = 0
        self.connect_failed = 0
        self.connect_errors: dict[str, int] = {}
        self.connect_spec: dict[str, Any] = {}
        self.next_index = 0
        # join_topics phase
        self.join_replies = 0
        self.join_errors = 0
        self.server_closed = 0
        self.unexpected: list[str] = []

    # event loop ----------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        events = self.ep.poll(timeout)
        self.now_ns = time.perf_counter_ns()
        by_fd = self.by_fd
        on_counted = self.on_counted
        for fd, ev in events:
            client = by_fd.get(fd)
            if client is None:
                if fd == 0:
                    self.read_stdin()
                continue
            if ev == EPOLLIN and client.mode == COUNT:
                # the fan-out hot path, inlined: most clients only count bytes
                try:
                    data = client.sock.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    self.fail(client, f"recv: {exc}")
                    continue
                if data:
                    on_counted(client, data)
                else:
                    self.fail(client, "closed by server")
                continue
            if ev & EPOLLOUT:
                self.on_writable(client)
            if ev & (EPOLLIN | EPOLLERRS) and client.state != CLOSED:
                self.on_readable(client)

    def run_until(self, done: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(step, remaining))
        return True

    def read_stdin(self) -> None:
        data = os.read(0, 65536)
        if not data:
            self.stdin_open = False
            self.ep.unregister(0)
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            if line.strip():
                self.commands.append(json.loads(line))

    def serve(self) -> None:
        while self.stdin_open or self.commands:
            if not self.commands:
                self.poll(1.0)
                continue
            command = self.commands.pop(0)
            op = command.get("op")
            try:
                if op == "quit":
                    return
                result = getattr(self, "cmd_" + str(op))(command)
            except Exception as exc:
                import traceback

                result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            emit({"result": result})

    # sockets -------------------------------------------------------------------------

    def open_client(self, index: int, topic: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(index, sock, topic)
        client.started_at = time.monotonic()
        self.by_fd[client.fd] = client
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, errno.EINPROGRESS):
            self.fail(client, f"connect: {errno.errorcode.get(code, code)}")
            return
        self.ep.register(client.fd, EPOLLOUT)

    def on_writable(self, client: Client) -> None:
        if client.state == CONNECTING:
            code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.fail(client, f"connect: {errno.errorcode.get(code, code)}")
                return
            client.state = HANDSHAKE
            request = (
                f"GET {PATHS[self.proto]} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            self.ep.modify(client.fd, EPOLLIN)
            self.send(client, request)
            return
        out = client.out
        try:
            sent = client.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(client, f"send: {exc}")
            return
        client.out = out[sent:]
        if not client.out:
            self.ep.modify(client.fd, EPOLLIN)

    def send(self, client: Client, data: bytes) -> None:
        if client.state == CLOSED:
            return
        if client.out:
            client.out += data
            return
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.fail(client, f"send: {exc}")
            return
        if sent < len(data):
            client.out = data[sent:]
            self.ep.modify(client.fd, EPOLLIN | EPOLLOUT)

    def on_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(client, f"recv: {exc}")
            return
        if not data:
            self.fail(client, "closed by server" if client.state >= OPEN else "EOF in handshake")
            return
        if client.state == HANDSHAKE:
            data = client.buf + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                client.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status:
                self.fail(client, "handshake: " + status.decode("latin-1", "replace")[:60])
                return
            client.buf = b""
            client.state = OPEN
            self.on_open(client)
            data = data[end + 4 :]
            if not data:
                return
        if client.mode == COUNT:
            self.on_counted(client, data)
        elif self.fanout:
            self.on_deliveries(client, data)
            if (
                self.hybrid
                and client.frame_len
                and not client.buf
                and client.index % self.check_every
                and client.state == JOINED
            ):
                client.mode = COUNT
                client.partial = 0
        else:
            self.on_frames(client, data)

    def on_frames(self, client: Client, data: bytes) -> None:
        if client.buf:
            data = client.buf + data
            client.buf = b""
        n = len(data)
        pos = 0
        while n - pos >= 2:
            size = data[pos + 1] & 0x7F
            if size < 126:
                start = pos + 2
            elif size == 126:
                if n - pos < 4:
                    break
                size = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                size = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + size
            if end > n:
                break
            opcode = data[pos] & 0x0F
            if opcode == 1 or opcode == 2:
                self.on_control(client, data, start, end)
            elif opcode == 9:
                self.send(client, mask_frame(data[start:end], 0xA))
            elif opcode == 8:
                client.closed_by_server = True
                code = struct.unpack("!H", data[start : start + 2])[0] if size >= 2 else None
                self.fail(client, f"close frame {code}")
                return
            pos = end
        if pos < n:
            client.buf = data[pos:]

    def on_counted(self, client: Client, data: bytes) -> None:
        """COUNT mode: frames = bytes / frame length, every header byte and the sequence
        number's last digits checked at every frame, in a few slices per chunk.

        Frame number ``got + j`` starts at ``j * size - partial`` in ``data``, so the
        byte at offset ``k`` of every frame that has it in this chunk is
        ``data[(k - partial) % size :: size]``.
        """
        size = client.frame_len
        partial = client.partial
        n = len(data)
        if n < FEW_FRAMES * size:
            self.count_few(client, data)
            return
        # n >= size here: every offset of a frame has at least one byte in this chunk
        for k, value in client.head_checks:
            seen = data[(k - partial) % size :: size]
            if seen.count(value) != len(seen):
                self.uncount(client, data)
                return
        got = client.got
        digit_at = client.digit_at
        # The last SEQ_PLACES digits of each frame's sequence number must count up: in
        # order, no gap, no repeat.
        for place, period, pattern in SEQ_CHECKS:
            offset = digit_at - place
            first = (got + 1 if partial > offset else got) % period
            if not pattern.startswith(data[(offset - partial) % size :: size], first):
                self.order_errors += 1
                break
        else:
            # and the whole number of the last frame that has it all in this chunk
            seq_at = digit_at + 1 - SEQ_DIGITS
            last = (n + partial - seq_at - SEQ_DIGITS) // size
            at = last * size - partial + seq_at
            if at >= 0 and not data.startswith(b"%d" % (SEQ_BASE + got + last), at):
                self.order_errors += 1
        total = partial + n
        frames = total // size
        client.partial = total - frames * size
        client.got = got + frames
        self.delivered += frames

    def count_few(self, client: Client, data: bytes) -> None:
        """:meth:`on_counted` for a chunk of a few frames, cheaper than its slices: each
        frame's header and its whole sequence number (what of them is in this chunk)
        compared in one piece."""
        size, head, partial = client.frame_len, client.frame_head, client.partial
        hlen = len(head)
        n = len(data)
        seq_at = client.digit_at + 1 - SEQ_DIGITS
        seq = SEQ_BASE + client.got
        start = -partial  # where the frame with sequence number ``seq`` began
        while start < n:
            stop = start + hlen
            if start >= 0 and stop <= n:
                if data[start:stop] != head:
                    self.uncount(client, data)
                    return
            elif stop > 0:  # a header cut by the chunk's start or end
                lo, hi = max(0, start), min(n, stop)
                if data[lo:hi] != head[lo - start : hi - start]:
                    self.uncount(client, data)
                    return
            at = start + seq_at
            if at >= 0 and at + SEQ_DIGITS <= n:
                if data[at : at + SEQ_DIGITS] != b"%d" % seq:
                    self.order_errors += 1
            elif at + SEQ_DIGITS > 0 and at < n:
                lo, hi = max(0, at), min(n, at + SEQ_DIGITS)
                if data[lo:hi] != (b"%d" % seq)[lo - at : hi - at]:
                    self.order_errors += 1
            start += size
            seq += 1
        total = partial + n
        frames = total // size
        client.partial = total - frames * size
        client.got += frames
        self.delivered += frames

    def uncount(self, client: Client, data: bytes) -> None:
        """Something else than a delivery (a ping, a close, a damaged frame) in COUNT
        mode: count the deliveries before it, then parse from where it starts."""
        size, head, partial = client.frame_len, client.frame_head, client.partial
        n = len(data)
        start = -partial  # where the frame in progress began, relative to data
        while start < n:
            lo, hi = max(0, start), min(n, start + len(head))
            if lo < hi and data[lo:hi] != head[lo - start : hi - start]:
                break
            start += size
        client.mode = PARSE
        if start < 0:
            # The frame in progress is the odd one: what came of it in the last chunk
            # were its first header bytes, equal to a delivery's.
            client.buf = head[:partial]
            rest = data
        else:
            if start:
                client.mode = COUNT
                self.on_counted(client, data[:start])  # deliveries only: no mismatch there
                client.mode = PARSE
            client.buf = b""
            rest = data[start:]
        client.partial = 0
        client.expect = client.got  # every client gets every broadcast from seq 0 on
        if rest or client.buf:
            self.on_deliveries(client, rest)

    def on_deliveries(self, client: Client, data: bytes) -> None:
        """:meth:`on_frames` and the delivery checks in one loop, for the fan-out phases.

        The same checks with the per-frame method calls and attribute writes
        hoisted out of the loop: this is where the load generator spends its time.
        """
        if client.buf:
            data = client.buf + data
            client.buf = b""
        n = len(data)
        pos = 0
        find = data.find
        counts = self.counts
        subscribers = self.subscribers
        sampling = self.sampling
        expect = client.expect
        got = completed = disorder = 0
        damaged = False
        while n - pos >= 2:
            if data[pos] & 0x70 or data[pos + 1] & 0x80:
                # RSV bits (no extension is negotiated) or a masked server frame: this is
                # not a frame header, the stream is out of step (a frame cut short)
                damaged = True
                break
            size = data[pos + 1] & 0x7F
            if size < 126:
                start = pos + 2
            elif size == 126:
                if n - pos < 4:
                    break
                size = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                size = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + size
            if end > n:
                break
            opcode = data[pos] & 0x0F
            pos = end
            if opcode != 1 and opcode != 2:
                if opcode == 9:
                    self.send(client, mask_frame(data[start:end], 0xA))
                elif opcode == 8:
                    client.closed_by_server = True
                    if size >= 2:
                        client.close_code = (data[start] << 8) | data[start + 1]
                    break
                continue
            i = find(b'"seq":', start, end)
            if i < 0:
                self.on_control(client, data, start, end)
                continue
            j = find(b",", i + 6, end)
            try:
                seq = int(data[i + 6 : j]) - SEQ_BASE
            except ValueError:
                seq = -1
            if not 0 <= seq < len(counts):
                # a damaged frame, such as one cut short by the next frame's header
                self.corrupt += 1
                self.note(client, data[start:end])
                continue
            if seq != expect:
                disorder += 1
            expect = seq + 1
            got += 1
            count = counts[seq] + 1
            counts[seq] = count
            if count == subscribers:
                completed += 1
            if sampling:
                k = find(b'"t":', j, end)
                sent = int(data[k + 4 : find(b",", k + 4, end)]) - T_BASE + self.t0_ns
                self.samples.append(self.now_ns - sent)
            if not client.frame_len:
                frame_start = start - (2 if size < 126 else 4 if size < 65536 else 10)
                client.frame_len = end - frame_start
                client.frame_head = data[frame_start:start]
                client.head_checks = tuple(enumerate(client.frame_head))
                client.digit_at = j - 1 - frame_start
        client.expect = expect
        client.got += got
        self.delivered += got
        self.order_errors += disorder
        if damaged:
            self.corrupt += 1
            self.note(client, data[pos : pos + 40])
            self.fail(client, "damaged stream: no frame header where one must start")
            return
        if client.closed_by_server:
            self.fail(client, f"close frame {client.close_code}")
            return
        if pos < n:
            client.buf = data[pos:]
        if completed and not self.hybrid:
            self.completed += completed
            if self.pumping:
                self.pump()

    def fail(self, client: Client, why: str) -> None:
        if client.state == CLOSED:
            return
        was = client.state
        client.state = CLOSED
        client.error = why
        self.by_fd.pop(client.fd, None)
        try:
            self.ep.unregister(client.fd)
        except (OSError, ValueError):
            pass
        close_rst(client.sock)
        if was == JOINED:
            self.server_closed += 1
            if len(self.unexpected) < 5:
                self.unexpected.append(f"client {client.index}: {why}")
        else:
            self.connect_failed += 1
            self.connect_in_flight -= 1
            key = why.split(":", 1)[0] if why.startswith(("connect", "send", "recv")) else why
            self.connect_errors[key[:80]] = self.connect_errors.get(key[:80], 0) + 1

    # protocol -------------------------------------------------------------------------

    def on_open(self, client: Client) -> None:
        if self.proto == "phoenix":
            join = json.dumps(["1", "1", client.topic, "phx_join", {}], separators=(",", ":"))
            self.send(client, mask_frame(join.encode()))
        # socketio waits for the open packet; plain servers send their ack

    def joined(self, client: Client) -> None:
        client.state = JOINED
        client.joined_at = time.monotonic()
        self.clients.append(client)
        self.connect_joined += 1
        self.connect_in_flight -= 1

    def on_control(self, client: Client, data: bytes, start: int, end: int) -> None:
        """Every message that is not a delivery: join replies, socket.io packets, acks."""
        message = data[start:end]
        proto = self.proto
        if proto == "socketio":
            if message == b"2":
                self.send(client, mask_frame(b"3"))
            elif message[:1] == b"0":
                self.send(client, mask_frame(b"40"))
            elif message[:2] == b"40" and client.state == OPEN:
                self.joined(client)
            elif message[:2] == b"43":
                self.join_replies += 1
                if b"ok" not in message:
                    self.join_errors += 1
            elif message[:2] == b"44":
                self.note(client, message)
            return
        if client.state == OPEN:
            if proto == "phoenix":
                if b'"phx_reply"' in message and b'"status":"ok"' in message:
                    self.joined(client)
                else:
                    self.fail(client, "join refused: " + message[:80].decode(errors="replace"))
            elif message == b'{"joined":1}':
                self.joined(client)
            return
        if proto == "phoenix" and b'"phx_reply"' in message:
            self.join_replies += 1
            if b'"status":"ok"' not in message:
                self.join_errors += 1
            return
        self.note(client, message)

    def note(self, client: Client, message: bytes) -> None:
        if len(self.unexpected) < 5:
            self.unexpected.append(f"client {client.index}: {message[:100]!r}")

    def publish_frame(self, seq: int, t: int) -> bytes:
        body = f'{{"seq":{seq},"t":{t},"body":"{BODY}"}}'
        if self.proto == "phoenix":
            publisher = self.clients[0]
            publisher.ref += 1
            text = f'["1","{publisher.ref}","{publisher.topic}","new_msg",{body}]'
        elif self.proto == "socketio":
            text = f'42["new_msg",{body}]'
        else:
            text = body
        return mask_frame(text.encode())

    def next_frame(self) -> bytes:
        """The next broadcast's frame, counted as published."""
        seq = self.published
        self.published += 1
        self.counts.append(0)
        t = T_BASE + time.perf_counter_ns() - self.t0_ns
        return self.publish_frame(SEQ_BASE + seq, t)

    def publish(self) -> None:
        self.send(self.clients[0], self.next_frame())

    def pump(self) -> None:
        while self.published - self.completed < self.window:
            self.publish()

    # commands ---------------------------------------------------------------------------

    def cmd_connect(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Open ``n`` clients with at most ``k`` handshakes/joins in flight; timed."""
        self.port = int(spec["port"])
        self.proto = spec["proto"]
        self.fanout = False
        n, k = int(spec["n"]), int(spec.get("k", 64))
        topic = str(spec.get("topic", "fan:lobby"))
        self.connect_joined = self.connect_failed = self.connect_in_flight = 0
        self.connect_errors = {}
        before = len(self.clients)
        started = time.perf_counter()
        cpu0 = time.process_time()
        opened = 0
        deadline = time.monotonic() + float(spec.get("timeout", 120))
        latencies: list[float] = []
        while self.connect_joined + self.connect_failed < n and time.monotonic() < deadline:
            while opened < n and self.connect_in_flight < k:
                index = self.next_index
                self.next_index += 1
                self.connect_in_flight += 1
                self.open_client(index, topic.replace("{i}", str(index)))
                opened += 1
            self.poll(0.05)
        elapsed = time.perf_counter() - started
        for client in self.clients[before:]:
            latencies.append(client.joined_at - client.started_at)
        latencies.sort()
        timed_out = n - self.connect_joined - self.connect_failed
        return {
            "requested": n,
            "joined": self.connect_joined,
            "failed": self.connect_failed,
            "timed_out": timed_out,
            "errors": self.connect_errors,
            "elapsed_s": elapsed,
            "per_s": self.connect_joined / elapsed if elapsed > 0 else None,
            "connect_p50_ms": percentile(latencies, 50, 1e3),
            "connect_p99_ms": percentile(latencies, 99, 1e3),
            "loadgen_cpu_s": time.process_time() - cpu0,
            "open_clients": len(self.live()),
        }

    def live(self) -> list[Client]:
        return [c for c in self.clients if c.state == JOINED]

    def start_fanout(self, spec: dict[str, Any]) -> None:
        self.subscribers = len(self.live())
        self.fanout = True
        self.hybrid = True
        self.check_every = int(spec.get("check_every", CHECK_EVERY))
        self.completed = self.published  # earlier phases drained

    def all_arrived(self, first_seq: int, first_delivered: int) -> Callable[[], bool]:
        """True once every client got every broadcast published since ``first_seq``."""
        subscribers = max(1, self.subscribers)
        return lambda: (
            self.delivered - first_delivered >= (self.published - first_seq) * subscribers
        )

    def cmd_saturate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Publish with a bounded window of unfinished broadcasts; deliveries/s in a window.

        A broadcast counts as done when ``subscribers`` deliveries more have
        arrived (averages: most clients only count bytes here). Without a fixed
        ``window`` the window is ramped first: short probes at ``ramp_start``
        deliveries in flight, times ``ramp_factor`` each step, until the rate
        stops growing (below 0.9x the best), the queue already holds
        ``max_queue_s`` of work at the measured rate, or ``ramp_probes`` probes
        ran. The best window is then measured over ``duration``. ``window=1`` is
        one broadcast in flight: the next is published once every client has the
        last, so nothing can be coalesced and each broadcast pays its full latency.
        The window's marks are the events ``<mark>_start`` and ``<mark>_end``.
        """
        self.start_fanout(spec)
        warmup, duration = float(spec["warmup"]), float(spec["duration"])
        stall = float(spec.get("stall_s", 10.0))
        first_seq, first_delivered = self.published, self.delivered
        subscribers = max(1, self.subscribers)
        self.last_progress = time.monotonic()

        def advance() -> None:
            self.completed = first_seq + (self.delivered - first_delivered) // subscribers
            if self.pumping:
                self.pump()

        def wait(seconds: float) -> str | None:
            end = time.monotonic() + seconds
            seen = self.delivered
            while time.monotonic() < end:
                self.poll(0.02)
                advance()
                if self.delivered != seen:
                    seen = self.delivered
                    self.last_progress = time.monotonic()
                elif time.monotonic() - self.last_progress > stall:
                    return f"no delivery for {stall:.0f}s"
            return None

        def set_window(window: int) -> None:
            self.window = max(1, min(int(spec.get("max_window", 2000)), window))
            advance()

        self.pumping = True
        probes: list[dict[str, Any]] = []
        error = None
        if spec.get("window"):
            set_window(int(spec["window"]))
        else:
            window = max(1, round(float(spec.get("ramp_start", 4000)) / subscribers))
            best_rate, best_window = 0.0, window
            for _ in range(int(spec.get("ramp_probes", 4))):
                set_window(window)
                error = wait(float(spec.get("ramp_settle_s", 0.3)))
                d0, t0 = self.delivered, time.perf_counter()
                error = error or wait(float(spec.get("ramp_probe_s", 1.0)))
                rate = (self.delivered - d0) / (time.perf_counter() - t0)
                probes.append({"window": self.window, "deliveries_per_s": rate})
                if error:
                    break
                if rate > best_rate:
                    best_rate, best_window = rate, self.window
                if rate < 0.9 * best_rate:
                    break
                if self.window * subscribers >= float(spec.get("max_queue_s", 0.5)) * rate:
                    break
                next_window = round(window * float(spec.get("ramp_factor", 4)))
                if next_window <= window or self.window >= int(spec.get("max_window", 2000)):
                    break
                window = next_window
            set_window(best_window)
        error = error or wait(warmup)
        mark = str(spec.get("mark", "window"))
        emit({"event": f"{mark}_start"})
        d0, t0, cpu0 = self.delivered, time.perf_counter(), time.process_time()
        error = error or wait(duration)
        d1, t1, cpu1 = self.delivered, time.perf_counter(), time.process_time()
        emit({"event": f"{mark}_end"})
        self.pumping = False
        counted = sum(1 for c in self.live() if c.mode == COUNT)
        drain = self.drain(
            float(spec.get("drain_timeout", 60)),
            stall,
            self.all_arrived(first_seq, first_delivered),
        )
        elapsed = t1 - t0
        return {
            "subscribers": self.subscribers,
            "window": self.window,
            "in_flight_deliveries": self.window * subscribers,
            "probes": probes,
            "clients_counting_bytes": counted,
            "published": self.published - first_seq,
            "deliveries": d1 - d0,
            "elapsed_s": elapsed,
            "deliveries_per_s": (d1 - d0) / elapsed,
            "broadcast_ms": elapsed * 1e3 * subscribers / (d1 - d0) if d1 > d0 else None,
            "loadgen_cpu_s": cpu1 - cpu0,
            "loadgen_cpu_util": (cpu1 - cpu0) / elapsed,
            "loadgen_cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / (d1 - d0) if d1 > d0 else None,
            "error": error or drain.get("error"),
            **{k: v for k, v in drain.items() if k != "error"},
        }

    def drain(
        self, timeout: float, stall: float, done: Callable[[], bool] | None = None
    ) -> dict[str, Any]:
        """Wait until every broadcast reached every client (or stalled); count what is missing."""
        if done is None:
            done = lambda: self.completed >= self.published  # noqa: E731
        started = time.monotonic()
        deadline = started + timeout
        seen = self.delivered
        last = time.monotonic()
        error = None
        while not done():
            now = time.monotonic()
            if now > deadline:
                error = f"drain timed out after {timeout:.0f}s"
                break
            if now - last > stall:
                error = f"drain stalled for {stall:.0f}s"
                break
            self.poll(0.02)
            if self.delivered != seen:
                seen, last = self.delivered, time.monotonic()
        live = self.live()
        lost = sum(max(0, self.published - c.got) for c in live)
        extra = sum(max(0, c.got - self.published) for c in live)
        return {
            "drain_s": time.monotonic() - started,
            "lost_total": lost,
            "duplicates_total": extra,
            "order_errors_total": self.order_errors,
            "published_total": self.published,
            "clients_closed": self.server_closed,
            "unexpected": list(self.unexpected),
            "error": error,
        }

    def cmd_latency(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Publish ``rate`` broadcasts/s on a fixed schedule; latency of every delivery
        to the clients that parse every frame (one in ``check_every``).

        The first ``warmup`` seconds at that rate are not sampled. Meanwhile the
        clients that only count bytes are woken by the kernel once ``lowat``
        bytes wait (``SO_RCVLOWAT``): they need not read promptly, and reading
        every few frames kept the generator itself near a full core at
        channels_actor's rates (on loopback, each wakeup is a cost the server's
        ``send`` pays as well). Publishing does not wait for deliveries here, so
        nothing can stall on a threshold not yet reached; it is lifted before
        the final drain.
        """
        self.start_fanout(spec)
        rate, duration = float(spec["rate"]), float(spec["duration"])
        min_broadcasts = int(spec.get("min_broadcasts", 10))
        max_duration = float(spec.get("max_duration", 3 * duration))
        duration = min(max(duration, min_broadcasts / rate), max_duration)
        lowat = int(spec.get("lowat", 16384))
        counting = [c for c in self.live() if c.index % self.check_every]
        self.set_lowat(counting, lowat)
        interval = 1.0 / rate
        first_all, delivered_all = self.published, self.delivered
        due = time.monotonic()
        due = self.publish_until(due + float(spec.get("warmup", 0.0)), due, interval)
        self.samples = []
        self.sampling = True
        first = self.published
        emit({"event": "latency_start"})
        d0, cpu0 = self.delivered, time.process_time()
        started = time.monotonic()
        self.publish_until(started + duration, due, interval)
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu0
        d1 = self.delivered
        emit({"event": "latency_end"})
        self.set_lowat(counting, 1)
        drain = self.drain(
            float(spec.get("drain_timeout", 60)),
            float(spec.get("stall_s", 10)),
            self.all_arrived(first_all, delivered_all),
        )
        self.sampling = False
        samples = sorted(self.samples)
        self.samples = []
        achieved = (d1 - d0) / elapsed
        mean_s = sum(samples) * 1e-9 / len(samples) if samples else None
        return {
            "rate": rate,
            "duration_s": duration,
            "published": self.published - first,
            "deliveries": d1 - d0,
            "achieved_deliveries_per_s": achieved,
            # Little's law: deliveries on their way at any moment, on average
            "in_flight_deliveries": achieved * mean_s if mean_s is not None else None,
            "mean_ms": mean_s * 1e3 if mean_s is not None else None,
            "samples": len(samples),
            "p50_ms": percentile(samples, 50, 1e-6),
            "p90_ms": percentile(samples, 90, 1e-6),
            "p99_ms": percentile(samples, 99, 1e-6),
            "max_ms": samples[-1] * 1e-6 if samples else None,
            "loadgen_cpu_util": cpu / elapsed,
            **drain,
        }

    def publish_until(self, end: float, due: float, interval: float) -> float:
        """Publish on the schedule ``due``, ``due + interval``, ... until ``end``; the next due."""
        while True:
            now = time.monotonic()
            if now >= end:
                return due
            if now >= due:
                self.publish()
                due += interval
                continue
            self.poll(min(due, end) - now)

    def cmd_flood(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The unpaced publisher: ``count`` broadcasts written as fast as the server reads
        them (no window, no schedule: only TCP can slow the publisher down), then wait
        until every client still open has every one of them. A thread of its own writes
        them, so that reading the deliveries here cannot pace the publisher.

        Every client parses every frame here (``check_every`` 1 by default) and checks
        each sequence number against the one it must be, so a gap, a duplicate, a
        reordering or a damaged frame shows on the client it happened to; the clients
        the server closed are reported with how they were closed (close code or end of
        file) and what they missed. The phase's marks are ``unpaced_start`` and
        ``unpaced_end`` (the end once everything arrived or the drain gave up).
        """
        self.start_fanout({**spec, "check_every": spec.get("check_every", 1)})
        count = int(spec["count"])
        stall = float(spec.get("stall_s", 10.0))
        publisher = self.clients[0]
        watched = self.live()
        first, d0 = self.published, self.delivered
        errors0, corrupt0, closed0 = self.order_errors, self.corrupt, self.server_closed
        frames = [self.next_frame() for _ in range(count)]
        ends = []  # byte offset where each frame ends: frames sent = bisect(ends, sent)
        total = 0
        for frame in frames:
            total += len(frame)
            ends.append(total)
        wire = memoryview(b"".join(frames))
        sent = [0]  # bytes written by the writer thread
        done = threading.Event()
        stopping = threading.Event()
        write_error: list[str] = []

        def write() -> None:
            sock = publisher.sock
            try:
                while sent[0] < total and not stopping.is_set():
                    try:
                        sent[0] += sock.send(wire[sent[0] :])
                    except (BlockingIOError, InterruptedError):
                        select.select([], [sock], [], 0.1)
            except OSError as exc:
                write_error.append(f"send: {exc}")
            finally:
                done.set()

        in_flight: list[int] = []
        emit({"event": "unpaced_start"})
        t0, cpu0 = time.perf_counter(), time.process_time()
        writer = threading.Thread(target=write, name="unpaced-publisher", daemon=True)
        writer.start()
        last_sample = last_progress = time.monotonic()
        progress = (self.delivered, 0)
        error = None
        while not done.is_set():
            if publisher.state == CLOSED:
                break  # a result (it is among the closed clients), not a failed phase
            self.poll(0.01)
            now = time.monotonic()
            published = first + bisect_right(ends, sent[0])
            if now - last_sample >= 0.01:
                last_sample = now
                in_flight.append(sum(published - c.got for c in watched if c.state == JOINED))
            if (self.delivered, sent[0]) != progress:
                progress, last_progress = (self.delivered, sent[0]), now
            elif now - last_progress > stall:
                error = f"nothing sent or received for {stall:.0f}s"
                break
        stopping.set()
        writer.join(5.0)
        publish_s = time.perf_counter() - t0
        # what was never written does not count as published
        self.published = first + bisect_right(ends, sent[0])
        written = self.published - first
        if publisher.state == CLOSED:
            # The server closed the publisher: what it had taken in by then is unknown
            # here. Wait until deliveries stop, and count as published what the client
            # furthest on got (every client gets every broadcast from the first, in order).
            quiet, seen = time.monotonic(), self.delivered
            while time.monotonic() - quiet < float(spec.get("quiet_s", 1.0)):
                self.poll(0.05)
                if self.delivered != seen:
                    quiet, seen = time.monotonic(), self.delivered
            self.published = min(self.published, max((c.got for c in watched), default=0))
        del self.counts[self.published :]
        drain = self.drain(
            float(spec.get("drain_timeout", 60)),
            stall,
            lambda: all(c.got >= self.published for c in watched if c.state == JOINED),
        )
        t1, cpu1 = time.perf_counter(), time.process_time()
        emit({"event": "unpaced_end"})
        closed = [c for c in watched if c.state != JOINED]
        reasons: dict[str, int] = {}
        for client in closed:
            reason = str(client.error)[:60]
            reasons[reason] = reasons.get(reason, 0) + 1
        deliveries = self.delivered - d0
        return {
            "subscribers": len(watched),
            "published": self.published - first,
            "written": written,
            "publish_s": publish_s,
            "broadcasts_per_s": (self.published - first) / publish_s if publish_s > 0 else None,
            "deliveries": deliveries,
            "elapsed_s": t1 - t0,
            "deliveries_per_s": deliveries / (t1 - t0),
            "in_flight_mean": sum(in_flight) / len(in_flight) if in_flight else None,
            "in_flight_max": max(in_flight, default=None),
            "loadgen_cpu_s": cpu1 - cpu0,
            "loadgen_cpu_util": (cpu1 - cpu0) / (t1 - t0),
            "lost": sum(max(0, self.published - c.got) for c in watched if c.state == JOINED),
            "duplicated": sum(max(0, c.got - self.published) for c in watched),
            "missed_by_closed": sum(max(0, self.published - c.got) for c in closed),
            "order_errors": self.order_errors - errors0,
            "corrupt_frames": self.corrupt - corrupt0,
            "clients_closed": self.server_closed - closed0,
            "close_reasons": reasons,
            "publisher_closed": publisher.error if publisher.state == CLOSED else None,
            "publisher_write_error": write_error[0] if write_error else None,
            "unexpected": list(self.unexpected),
            "drain_s": drain["drain_s"],
            "error": error or drain.get("error"),
        }

    @staticmethod
    def set_lowat(clients: list[Client], lowat: int) -> None:
        for client in clients:
            if client.state != CLOSED:
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)

    def cmd_join_topics(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Every open client joins ``per_socket`` new topics at once; joins/s to the last reply."""
        per_socket = int(spec["per_socket"])
        self.fanout = False
        live = self.live()
        total = per_socket * len(live)
        self.join_replies = self.join_errors = 0
        started = time.perf_counter()
        for client in live:
            frames = []
            for j in range(per_socket):
                client.join_ref += 1
                ref = client.join_ref
                if self.proto == "socketio":
                    text = f'42{ref}["join",{{"room":"r{client.index}:{j}"}}]'
                else:
                    text = f'["{ref}","{ref}","jt:{client.index}:{j}","phx_join",{{}}]'
                frames.append(mask_frame(text.encode()))
            self.send(client, b"".join(frames))
        done = self.run_until(
            lambda: self.join_replies >= total, float(spec.get("timeout", 120)), step=0.01
        )
        elapsed = time.perf_counter() - started
        return {
            "sockets": len(live),
            "joins": total,
            "replies": self.join_replies,
            "errors": self.join_errors,
            "elapsed_s": elapsed,
            "joins_per_s": self.join_replies / elapsed if elapsed > 0 else None,
            "error": None if done else f"{self.join_replies} of {total} join replies in time",
            "unexpected": list(self.unexpected),
        }

    def cmd_idle(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Keep serving (pings) for ``seconds``; how many clients are still open."""
        self.run_until(lambda: False, float(spec["seconds"]))
        return {"open_clients": len(self.live()), "server_closed": self.server_closed}

    def cmd_stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "cpu_s": time.process_time(),
            "open_clients": len(self.live()),
            "fds": len(self.by_fd),
        }

    def cmd_close(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Reset every connection (no TIME_WAIT left behind)."""
        count = 0
        for client in list(self.by_fd.values()):
            client.state = CLOSED
            try:
                self.ep.unregister(client.fd)
            except (OSError, ValueError):
                pass
            close_rst(client.sock)
            count += 1
        self.by_fd.clear()
        self.clients.clear()
        return {"closed": count}


def close_rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def percentile(sorted_values: list[Any], pct: float, scale: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[index] * scale)


def emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    nofile = _util.raise_nofile()[0]
    emit({"ready": True, "pid": os.getpid(), "nofile": nofile})
    Loadgen().serve()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
