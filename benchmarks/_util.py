"""Helpers shared by the benchmarks.

- process figures read from ``/proc/self/status`` (RSS, OS threads);
- :class:`Countdown`, a lock-free completion counter that any thread may hit,
  so a benchmark waits on an ``Event`` instead of sleeping;
- running one measurement in a fresh child process and getting its result back;
- medians, ratios, a plain-text table, machine information and JSON saving.

Everything here is standard library only, so a benchmark can import it before
the package under test.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECT_ROOT",
    "RESULTS_DIR",
    "ChildOutcome",
    "Countdown",
    "emit_child_result",
    "format_value",
    "machine_info",
    "median",
    "os_threads",
    "print_table",
    "proc_status_kib",
    "ratio",
    "rss_kib",
    "run_child",
    "save_json",
    "wait_other_threads",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_RESULT_MARKER = "@@BENCH-RESULT@@ "


# /proc figures -------------------------------------------------------------------------


def proc_status_kib(field: str) -> int:
    """The integer value of ``field`` in ``/proc/self/status`` (kB fields are KiB)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    msg = f"{field!r} not found in /proc/self/status"
    raise KeyError(msg)


def rss_kib() -> int:
    """Resident set size of this process, in KiB (``VmRSS``)."""
    return proc_status_kib("VmRSS")


def os_threads() -> int:
    """Threads of this process as the kernel counts them (``Threads``)."""
    return proc_status_kib("Threads")


def wait_other_threads(timeout: float) -> list[str]:
    """Join every thread but the calling one, within ``timeout`` seconds in all.

    Returns the names of the threads still alive at the deadline (empty when
    the process would exit cleanly).
    """
    deadline = time.monotonic() + timeout
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is current or thread is threading.main_thread():
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        thread.join(remaining)
    return [t.name for t in threading.enumerate() if t is not current and t.is_alive()]


# completion counting -------------------------------------------------------------------


class Countdown:
    """Counts hits from any thread and sets :attr:`done` once ``target`` is reached.

    ``hit`` takes no lock (``deque.append`` and ``len`` are atomic in CPython),
    so counting deliveries on many threads does not add a lock convoy of its
    own to what is measured. :attr:`finished_at` is the ``perf_counter`` time
    at which the target was first seen reached.
    """

    def __init__(self, target: int) -> None:
        self._hits: deque[None] = deque()
        self.target = target
        self.done = threading.Event()
        self.finished_at: float | None = None
        if target <= 0:
            self._finish()

    @property
    def count(self) -> int:
        """Hits so far (may exceed the target if more arrived)."""
        return len(self._hits)

    def hit(self) -> None:
        hits = self._hits
        hits.append(None)
        if len(hits) >= self.target and self.finished_at is None:
            self._finish()

    def retarget(self, target: int) -> None:
        """Change the target (say, fewer operations could be submitted)."""
        self.target = target
        if len(self._hits) >= target and self.finished_at is None:
            self._finish()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the target; True if it was reached."""
        return self.done.wait(timeout)

    def _finish(self) -> None:
        self.finished_at = time.perf_counter()
        self.done.set()


# child processes -----------------------------------------------------------------------


def emit_child_result(result: dict[str, Any]) -> None:
    """Print ``result`` for :func:`run_child` (call once, from the child)."""
    sys.stdout.write(_RESULT_MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


class ChildOutcome:
    """What one child run gave back: its result, or why there is none."""

    def __init__(
        self,
        result: dict[str, Any] | None,
        error: str | None,
        wall_s: float,
        returncode: int | None,
        stderr_tail: str,
    ) -> None:
        self.result = result
        self.error = error
        self.wall_s = wall_s
        self.returncode = returncode
        self.stderr_tail = stderr_tail


def run_child(argv: Sequence[str], timeout: float, tail_lines: int = 20) -> ChildOutcome:
    """Run ``python <argv>`` in :data:`PROJECT_ROOT` and parse what it emitted.

    The child must call :func:`emit_child_result` once. A timeout, a crash or a
    missing result becomes ``error``; the end of stderr is kept for the report.
    """
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, *argv],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else (exc.stderr or "")
        )
        return ChildOutcome(
            None,
            f"child timed out after {timeout:.0f}s",
            time.perf_counter() - started,
            None,
            _tail(stderr, tail_lines),
        )
    wall = time.perf_counter() - started
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_MARKER):
            result = json.loads(line[len(_RESULT_MARKER) :])
    error = None
    if result is None:
        error = f"child exited with code {proc.returncode} and no result"
    elif proc.returncode != 0:
        error = f"child exited with code {proc.returncode}"
    return ChildOutcome(result, error, wall, proc.returncode, _tail(proc.stderr, tail_lines))


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


# statistics and reporting --------------------------------------------------------------


def median(values: Iterable[float | int | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def format_value(value: Any) -> str:
    """A short human form: thousands separators, about three significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], file: Any = None) -> None:
    """Print rows under headers, text left-aligned and numbers right-aligned."""
    out = file or sys.stdout
    cells = [[format_value(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(line(list(headers)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print(line(row), file=out)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: CPUs, Python, platform, date and process limits."""
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "switch_interval_s": sys.getswitchinterval(),
    }
    for key, path in (
        ("threads_max", "/proc/sys/kernel/threads-max"),
        ("max_map_count", "/proc/sys/vm/max_map_count"),
    ):
        try:
            info[key] = int(Path(path).read_text().strip())
        except (OSError, ValueError):
            info[key] = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            info["mem_total_kib"] = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        info["mem_total_kib"] = None
    return info


def save_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, creating the directory; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)
