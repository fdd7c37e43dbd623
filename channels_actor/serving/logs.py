"""How the processes of ``channels-actor serve`` log: configured here, never by the library."""

from __future__ import annotations

import logging

__all__ = ["LOG_LEVELS", "configure_logging"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# The pid tells the workers apart: they all write to the parent's stderr.
_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send every log record at ``level`` or above to stderr, one line each."""
    logging.basicConfig(level=level.upper(), format=_FORMAT)
