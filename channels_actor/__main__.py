"""``python -m channels_actor <command>``: one entry point for the project's tools.

Each command is a callable taking the arguments after its name and returning
an exit status, so adding one (a ``bench``, say) is one line in ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .demo import main as demo_main
from .serving.command import main as serve_main

__all__ = ["COMMANDS", "main"]


def bench_main(argv: Sequence[str]) -> int:
    """Run the benchmark suite (``benchmarks/`` of a source checkout)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__main__.py").exists():
        sys.stderr.write(
            "channels_actor: bench runs the benchmarks/ folder of a source checkout; "
            "clone the repository and run `pip install -e '.[bench]'` there\n"
        )
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    benchmarks = importlib.import_module("benchmarks.__main__")
    return int(benchmarks.main(list(argv)))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": demo_main,
    "serve": serve_main,
    "bench": bench_main,
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
