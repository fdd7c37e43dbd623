"""``channels-actor serve module:endpoint``: serve an endpoint from several worker processes.

The parent imports the app once, before any worker starts, so that what is
wrong with it (a module that is not there, an attribute that is no Endpoint,
``--workers 2`` with a PubSub that cannot cross processes) exits with status
2 and one clear message instead of N crashing workers. That import may start
threads in the parent; harmless, because the parent never forks a copy of
itself: each worker is a fresh interpreter (see :mod:`.worker`).

The parent also holds the port: it binds it with ``SO_REUSEPORT`` and never
listens, so the kernel hands connections to the workers only, ``--port 0``
picks one port for them all, and a port in use is reported before any
worker starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..endpoint import Endpoint
from ..errors import ConfigurationError
from ..server import bound_socket
from . import worker
from .loading import load_endpoint
from .logs import LOG_LEVELS, configure_logging
from .supervision import WorkerSupervisor

__all__ = ["check_workers", "main"]

logger = logging.getLogger("channels_actor.serving")

DEFAULT_GRACE = 30.0


def check_workers(endpoint: Endpoint, workers: int) -> None:
    """Refuse several workers for an endpoint whose broadcasts stay in one process.

    Raises:
        ConfigurationError: ``workers`` > 1 and ``endpoint.pubsub.single_node``.
    """
    if workers > 1 and endpoint.pubsub.single_node:
        msg = (
            f"--workers {workers} needs a PubSub that crosses processes: with the embedded "
            "one, a broadcast reaches only the clients of the worker it was made in. Give "
            'the endpoint a cluster PubSub, Endpoint(pubsub=RedisPubSub("redis://host:6379/0")), '
            "or serve with --workers 1"
        )
        raise ConfigurationError(msg)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"{value} is not a number of workers (1 or more)"
        raise argparse.ArgumentTypeError(msg)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        msg = f"{value} is not a TCP port (0 to 65535; 0 picks a free one)"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        msg = f"{text} is not a positive number of seconds"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channels-actor serve",
        description="Serve an Endpoint from worker processes sharing one port (SO_REUSEPORT).",
        epilog="Exit status: 0 after a clean drain, 1 when workers failed or had to be "
        "killed, 2 for a bad command line or an app that cannot be served.",
    )
    parser.add_argument(
        "app",
        metavar="module:endpoint",
        help="an Endpoint (myapp.web:endpoint) or a function returning one "
        "(myapp.web:create_endpoint or myapp.web:create_endpoint())",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=4000, help="TCP port (4000)")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes (1); more than one needs a cluster PubSub such as RedisPubSub",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        help=f"seconds a worker has to drain at SIGTERM or SIGINT before it is killed "
        f"({DEFAULT_GRACE:g})",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="(info)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``channels-actor serve``; the exit status (2 for a usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        args = args[1:]
    options = _parser().parse_args(args)
    configure_logging(options.log_level)
    # As `python -m` does, so that the console script finds the app where it runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        check_workers(load_endpoint(options.app), options.workers)
    except ConfigurationError as exc:
        logger.error("%s", exc, exc_info=exc.__cause__)
        return 2
    try:
        reserved = bound_socket(options.host, options.port, reuse_port=True)
    except (OSError, ConfigurationError) as exc:
        logger.error("Cannot listen on %s:%d: %s", options.host, options.port, exc)
        return 2
    with reserved:
        port = reserved.getsockname()[1]

        def command(index: int, control_fd: int) -> list[str]:
            return [
                sys.executable,
                "-m",
                worker.__name__,
                options.app,
                *("--host", options.host, "--port", str(port), "--index", str(index)),
                *("--grace", str(options.grace), "--log-level", options.log_level),
                *("--control-fd", str(control_fd)),
            ]

        host = f"[{options.host}]" if ":" in options.host else options.host
        logger.info(
            "Serving %s at http://%s:%d with %d worker%s (parent pid %d)",
            options.app,
            host,
            port,
            options.workers,
            "" if options.workers == 1 else "s",
            os.getpid(),
        )
        status = WorkerSupervisor(command, options.workers, grace=options.grace).run()
    logger.info("Stopped (exit status %d)", status)
    return status
