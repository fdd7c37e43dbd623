"""``python -m channels_actor <command>``: one entry point for the project's tools.

Each command is a callable taking the arguments after its name and returning
an exit status, so adding one (a ``bench``, say) is one line in ``COMMANDS``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .demo import main as demo_main

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": demo_main,
}

USAGE = "usage: python -m channels_actor {" + ",".join(COMMANDS) + "} [options]\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named by ``argv[0]`` (default ``sys.argv[1:]``); 2 if there is none."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if not args or args[0] not in COMMANDS:
        problem = f"unknown command {args[0]!r}" if args else "a command is required"
        sys.stderr.write(f"{USAGE}channels_actor: error: {problem}\n")
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
