"""The subscribers of the flood test, in a process of their own.

``python -m tests.integration.flood_reader PORT TOPIC COUNT TOTAL PAD_SIZE``
connects COUNT clients with small receive buffers, joins them to TOPIC,
prints ``ready``, then reads every client as fast as one Python thread can,
checking that each gets broadcasts 0..TOTAL-1 in order, whole, and is not
closed; it prints one JSON line with the outcome and exits.

A process of its own because the readers must compete with the server only
for the machine, as real clients do, not for the server process's GIL: in the
server's process, a loaded machine could leave a reader unread long enough to
count as stalled.
"""

from __future__ import annotations

import json
import selectors
import sys

from tests.integration.serverframes import OP_TEXT, RawClient


def main() -> int:
    port, topic = int(sys.argv[1]), sys.argv[2]
    count, total, pad_size = (int(arg) for arg in sys.argv[3:6])
    pad = "f" * pad_size
    subs = [RawClient(port, rcvbuf=16384) for _ in range(count)]
    for client in subs:
        if client.join(topic)["status"] != "ok":
            print(json.dumps({"error": "join refused"}), flush=True)
            return 1
    print("ready", flush=True)
    got = {id(client): 0 for client in subs}
    selector = selectors.DefaultSelector()
    for client in subs:
        client.sock.setblocking(False)
        selector.register(client.sock, selectors.EVENT_READ, client)
    done = 0
    problem = None
    while done < count and problem is None:
        events = selector.select(20.0)
        if not events:
            problem = f"nothing for 20 s; {done} of {count} subscribers got everything"
        for key, _ in events:
            client = key.data
            client.read_some()
            for opcode, payload in client.frames:
                seq = got[id(client)]
                expected = [None, None, topic, "msg", {"seq": seq, "pad": pad}]
                if opcode != OP_TEXT or json.loads(payload) != expected:
                    problem = f"subscriber got {opcode} {bytes(payload[:80])!r} for seq {seq}"
                    break
                got[id(client)] = seq + 1
            client.frames.clear()
            if client.eof and got[id(client)] < total:
                problem = f"a subscriber was closed after {got[id(client)]}: {client.parser.closed}"
            if got[id(client)] == total:
                selector.unregister(client.sock)
                done += 1
    print(json.dumps({"done": done, "problem": problem}), flush=True)
    for client in subs:
        client.close()
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
