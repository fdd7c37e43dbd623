"""One worker process of ``channels-actor serve``: load, listen, report, drain.

The parent runs ``python -m channels_actor.serving.worker`` for each worker: a
fresh interpreter, never a fork, so no thread the parent may have started
(its import of the app, say) is copied half-alive into the worker. Each
worker is a node of its own: it builds its own endpoint, and so its own PubSub
and node name.

Theory of operation
-------------------
1. SIGTERM and SIGINT are caught before the app is imported, so a signal that
   arrives while the app loads still ends in a drain once it has loaded.
2. The endpoint listens with ``SO_REUSEPORT`` on the port the parent holds;
   the kernel spreads new connections among the workers listening on it.
3. ``ready`` on the control socket tells the parent the worker serves: the
   parent counts a worker that exits before it as a failed start.
4. The worker then waits for SIGTERM or SIGINT, or for the control socket to
   close (the parent is gone: a worker never outlives its parent), and drains
   with ``Endpoint.stop()``: every channel terminated with
   ``("shutdown", "closed")``, every client closed with 1012. The parent kills
   a worker still alive after the grace.

This is no command for users: its options are the parent's to give.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import sys
from collections.abc import Sequence

from ..errors import ConfigurationError
from .loading import load_endpoint
from .logs import LOG_LEVELS, configure_logging
from .signals import SignalWakeup

__all__ = ["READY", "main"]

logger = logging.getLogger("channels_actor.serving.worker")

#: What a worker sends on its control socket once it serves.
READY = b"ready\n"

#: Exit status of a worker that could not load its endpoint or listen.
START_FAILED = 1


def _options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m channels_actor.serving.worker")
    parser.add_argument("app")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--control-fd", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until told to stop, then drain; the exit status (1: it never served)."""
    options = _options(sys.argv[1:] if argv is None else argv)
    configure_logging(options.log_level)
    os.set_inheritable(options.control_fd, False)  # not for the app's own subprocesses
    control = socket.socket(fileno=options.control_fd)
    name = f"Worker {options.index} (pid {os.getpid()})"
    with control, SignalWakeup((signal.SIGTERM, signal.SIGINT)) as wakeup:
        try:
            endpoint = load_endpoint(options.app)
            endpoint.start(options.host, options.port, reuse_port=True)
        except ConfigurationError as exc:
            logger.error("%s could not start: %s", name, exc, exc_info=exc.__cause__)
            return START_FAILED
        except Exception:
            logger.exception("%s could not start", name)
            return START_FAILED
        # Endpoint.stop waits up to its timeout twice (the channels, then the
        # sockets); both fit in the grace.
        timeout = min(endpoint.config.stop_timeout, options.grace / 2)
        try:
            control.sendall(READY)
            reason = _wait_for_stop(wakeup, control)
            logger.info("%s draining (%s)", name, reason)
        finally:
            endpoint.stop(timeout)
        logger.info("%s drained", name)
    return 0


def _wait_for_stop(wakeup: SignalWakeup, control: socket.socket) -> str:
    """Block until a signal or the parent's end; say which."""
    with selectors.DefaultSelector() as selector:
        selector.register(wakeup, selectors.EVENT_READ)
        selector.register(control, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is control:
                    try:
                        if control.recv(4096):
                            continue  # the parent sends nothing yet; ignore what it might
                    except OSError:
                        pass
                    return "the parent process is gone"
                for signum in wakeup.received():
                    return signum.name


if __name__ == "__main__":
    sys.exit(main())
