"""Figures of another process, read from ``/proc``: for the processes the benchmark
starts but cannot ask (redis-server, the workers of ``channels-actor serve``).

CPU times come in clock ticks (``SC_CLK_TCK``, usually 10 ms), so figures over
short windows are coarse. Standard library only.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["cpu_s", "established_on_port", "pid_stats"]

_STATUS = ("VmRSS", "Threads", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")


def _times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of ``pid`` and its threads, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # after the command name (which may hold spaces and parentheses), utime
            # and stime are the 12th and 13th fields: the 14th and 15th of the line
            fields = stat.read().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None once it is gone)."""
    times = _times(pid)
    return None if times is None else times[0] + times[1]


def pid_stats(pid: int) -> dict[str, Any]:
    """What ``benchmarks.servers.process_stats`` reports of itself, for ``pid``: CPU
    seconds (user, system, both), RSS, threads, context switches, and the time now."""
    user, system = _times(pid) or (0.0, 0.0)
    status = _status(f"/proc/{pid}/status")
    # the process's status counts the switches of its main thread only: add its threads'
    for key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
        status[key] = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        threads = []
    for tid in threads:
        task = _status(f"/proc/{pid}/task/{tid}/status")
        for key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            status[key] += task.get(key, 0)
    return {
        "cpu_s": user + system,
        "user_s": user,
        "sys_s": system,
        "rss_kib": status.get("VmRSS", 0),
        "threads": status.get("Threads", 0),
        "ctx_voluntary": status.get("voluntary_ctxt_switches", 0),
        "ctx_involuntary": status.get("nonvoluntary_ctxt_switches", 0),
        "monotonic": time.monotonic(),
    }


def _status(path: str) -> dict[str, int]:
    """The :data:`_STATUS` figures of a ``/proc/.../status`` file (empty once it is gone)."""
    status: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                key, _, rest = line.partition(":")
                if key in _STATUS:
                    status[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return status


def established_on_port(pids: list[int], port: int) -> list[int]:
    """How many established TCP connections to local ``port`` each of ``pids`` holds
    (IPv4): the sockets of ``/proc/net/tcp`` matched to each process's descriptors."""
    inodes: set[str] = set()
    try:
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rpartition(":")[2], 16) == port:
                    inodes.add(inode)
    except (OSError, ValueError, StopIteration):
        return [0 for _ in pids]
    counts = []
    for pid in pids:
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    count += 1
        except OSError:
            pass
        counts.append(count)
    return counts
