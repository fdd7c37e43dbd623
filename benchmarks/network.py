"""One measurement of a network scenario: a fresh server process and a fresh load generator.

Each function starts the server under test (``benchmarks.servers``) and the
load generator (``benchmarks.loadgen``) as two processes, drives the load
generator with commands, reads the server's own CPU time, RSS and threads
through its control channel, and returns a flat dict of metrics (``error``
set when something went wrong). Both processes are stopped before it returns,
whatever happened. :func:`measure_fanout` is the fan-out phases on clients
already joined, whatever serves them (``benchmarks.cluster`` runs them on two
nodes behind Redis).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._procs import ChildError, LoadgenProcess, ServeProcess, ServerProcess

__all__ = [
    "PROTOCOLS",
    "connect_clients",
    "connect_error",
    "measure_fanout",
    "run_fanout",
    "run_idle",
    "run_joins",
    "run_unpaced",
]

PROTOCOLS = {
    "channels_actor": "phoenix",
    "bare-batched": "plain",
    "bare": "plain",
    "bare-sendall": "plain",
    "websockets": "plain",
    "socketio": "socketio",
}
#: Systems that have a notion of joining a topic on an open socket.
JOINABLE = ("channels_actor", "socketio")


def machine_cpu() -> tuple[float, int, int] | None:
    """(monotonic time, busy jiffies, all jiffies) of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (time.monotonic(), sum(values) - idle, sum(values))


def machine_busy(
    start: tuple[float, int, int] | None, end: tuple[float, int, int] | None
) -> float | None:
    """Cores busy on the whole machine between two :func:`machine_cpu` readings."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    import os

    hz = os.sysconf("SC_CLK_TCK")
    return (end[1] - start[1]) / hz / (end[0] - start[0])


def connect_timeout(count: int) -> float:
    return 60.0 + count / 100.0


def connect_clients(
    lg: LoadgenProcess,
    server: ServerProcess | ServeProcess,
    count: int,
    topic: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    return lg.command(
        "connect",
        connect_timeout(count) + 30,
        port=server.port,
        proto=PROTOCOLS[server.kind],
        n=count,
        k=params["concurrency"],
        topic=topic,
        timeout=connect_timeout(count),
    )


def connect_error(result: dict[str, Any]) -> str | None:
    if result["joined"] == result["requested"]:
        return None
    return (
        f"only {result['joined']} of {result['requested']} clients joined "
        f"({result['failed']} failed, {result['timed_out']} timed out; errors {result['errors']})"
    )


class _Profiler:
    """py-spy on the server during the measured window, when asked and available."""

    def __init__(self, directory: str | None, name: str, pid: int, seconds: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.path: Path | None = None
        exe = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
        if directory is None or not Path(exe).exists():
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"{name}.txt"
        self.args = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--output",
            str(self.path),
        ]

    def start(self) -> None:
        if self.path is not None:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def finish(self) -> str | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return str(self.path)


def _window_cpu(
    metrics: dict[str, Any],
    prefix: str,
    marks: dict[str, dict[str, Any]],
    mark: str,
    deliveries: int,
) -> None:
    """``<prefix>cpu_us_per_delivery`` (and ``<prefix>cpu_util``): the server's CPU
    between the events ``<mark>_start`` and ``<mark>_end``, per delivery counted there."""
    start, end = marks.get(f"{mark}_start"), marks.get(f"{mark}_end")
    if not (start and end and deliveries):
        return
    cpu = end["cpu_s"] - start["cpu_s"]
    wall = end["monotonic"] - start["monotonic"]
    metrics[f"{prefix}cpu_us_per_delivery"] = cpu * 1e6 / deliveries
    metrics[f"{prefix}cpu_util"] = cpu / wall if wall > 0 else None


def run_fanout(
    system: str,
    subscribers: int,
    params: dict[str, Any],
    *,
    intercept: bool = False,
    latency_rate: float | None = None,
) -> dict[str, Any]:
    """The chat pattern: ``subscribers`` clients on one topic, one of them publishing.

    One server, every client on it; the phases are :func:`measure_fanout`'s.
    ``latency_rate`` (deliveries/s) is the rate the latency phase offers
    (default: half the saturation rate measured here).
    """
    metrics: dict[str, Any] = {"subscribers": subscribers}
    topic = "fani:lobby" if intercept else "fan:lobby"
    options = params.get("server_options", {}).get(system)
    with ServerProcess(system, options) as server, LoadgenProcess() as lg:
        metrics["server_pid"] = server.pid
        connected = connect_clients(lg, server, subscribers, topic, params)
        metrics["connect_per_s"] = connected["per_s"]
        metrics["connect"] = connected
        error = connect_error(connected)
        if error:
            metrics["error"] = error
            return metrics
        name = f"{'fanout-intercept' if intercept else 'fanout'}-{system}-{subscribers}"
        measure_fanout(
            lg,
            server.stats,
            {name: server.pid},
            subscribers,
            params,
            metrics,
            latency_rate=latency_rate,
        )
    return metrics


def measure_fanout(
    lg: LoadgenProcess,
    probe: Callable[[], dict[str, Any]],
    profile_pids: dict[str, int],
    subscribers: int,
    params: dict[str, Any],
    metrics: dict[str, Any],
    *,
    latency_rate: float | None = None,
    marks: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The phases of a fan-out run on clients already joined; fills ``metrics``.

    Saturation deliveries/s (bounded window of broadcasts in flight), the
    server's CPU per delivery in that window; then one broadcast in flight
    (each published once every client has the last: no coalescing, the full
    per-broadcast cost); then latency at ``latency_rate`` deliveries/s (half
    the saturation rate by default), paced, and a check that every client got
    every broadcast once, in order. Each phase records the deliveries in
    flight it ran at and the server's CPU per delivery in it.

    ``probe()`` reads the servers' figures (``cpu_s``, ``sys_s``, ``monotonic``,
    the context switches, ``threads``, ``rss_kib``: :func:`benchmarks.servers.process_stats`,
    summed over the nodes of a cluster); ``marks`` gets its reading at every
    event the load generator marks (``window_start``, ``latency_end``, ...).
    """
    marks = {} if marks is None else marks
    profilers = [
        _Profiler(params.get("profile_dir"), name, pid, params["duration"])
        for name, pid in profile_pids.items()
    ]
    machine_marks: dict[str, tuple[float, int, int] | None] = {}

    def on_event(event: dict[str, Any]) -> None:
        marks[event["event"]] = probe()
        machine_marks[event["event"]] = machine_cpu()
        if event["event"] == "window_start":
            for profiler in profilers:
                profiler.start()

    sat = lg.command(
        "saturate",
        params["warmup"] + params["duration"] + 300,
        on_event=on_event,
        warmup=params["warmup"],
        duration=params["duration"],
        window=params.get("window"),
        ramp_start=params["ramp_start"],
        ramp_probes=params["ramp_probes"],
        ramp_probe_s=params["ramp_probe_s"],
        stall_s=params["stall_s"],
    )
    profiles = [p for p in (profiler.finish() for profiler in profilers) if p]
    if profiles:
        metrics["profile"] = profiles[0] if len(profiles) == 1 else profiles
    metrics["saturate"] = sat
    metrics["in_flight_deliveries"] = sat["in_flight_deliveries"]
    rate = sat["deliveries_per_s"]
    metrics["deliveries_per_s"] = rate
    metrics["loadgen_cpu_util"] = sat["loadgen_cpu_util"]
    start, end = marks.get("window_start"), marks.get("window_end")
    if start and end and sat["deliveries"]:
        cpu = end["cpu_s"] - start["cpu_s"]
        wall = end["monotonic"] - start["monotonic"]
        metrics["server_cpu_us_per_delivery"] = cpu * 1e6 / sat["deliveries"]
        metrics["server_cpu_util"] = cpu / wall if wall > 0 else None
        metrics["server_sys_share"] = (end["sys_s"] - start["sys_s"]) / cpu if cpu > 0 else None
        switches = (end["ctx_voluntary"] + end["ctx_involuntary"]) - (
            start["ctx_voluntary"] + start["ctx_involuntary"]
        )
        metrics["server_ctx_switches_per_delivery"] = switches / sat["deliveries"]
        machine = machine_busy(machine_marks.get("window_start"), machine_marks.get("window_end"))
        metrics["machine_busy_cores"] = machine
        if machine is not None and wall > 0:
            # what the rest of the machine (other tenants) used meanwhile; a cluster's
            # Redis is not one of them
            redis = (end.get("redis_cpu_s") or 0.0) - (start.get("redis_cpu_s") or 0.0)
            metrics["others_cores"] = machine - (cpu + redis) / wall - sat["loadgen_cpu_util"]
    metrics["loadgen_cpu_us_per_delivery"] = sat.get("loadgen_cpu_us_per_delivery")
    if sat.get("error"):
        metrics["error"] = f"saturate: {sat['error']}"
        metrics["lost"] = sat["lost_total"] + sat["duplicates_total"]
        return metrics
    if params.get("one_duration"):
        one = lg.command(
            "saturate",
            params["one_warmup"] + params["one_duration"] + 300,
            on_event=on_event,
            mark="one",
            window=1,
            warmup=params["one_warmup"],
            duration=params["one_duration"],
            stall_s=params["stall_s"],
        )
        metrics["one"] = one
        metrics["one_deliveries_per_s"] = one["deliveries_per_s"]
        metrics["one_broadcast_ms"] = one["broadcast_ms"]
        metrics["one_in_flight_deliveries"] = one["in_flight_deliveries"]
        metrics["one_loadgen_cpu_util"] = one["loadgen_cpu_util"]
        _window_cpu(metrics, "one_", marks, "one", one["deliveries"])
        if one.get("error"):
            metrics["error"] = f"one in flight: {one['error']}"
            metrics["lost"] = one["lost_total"] + one["duplicates_total"]
            return metrics
    offered = 0.5 * rate if latency_rate is None else latency_rate
    broadcasts_per_s = offered / subscribers
    lat = lg.command(
        "latency",
        4 * params["duration"] + 200,
        on_event=on_event,
        rate=broadcasts_per_s,
        warmup=params["warmup"],
        duration=params["duration"],
        min_broadcasts=params["min_broadcasts"],
        max_duration=max(3 * params["duration"], 10.0),
        stall_s=params["stall_s"],
    )
    metrics["latency"] = lat
    metrics["latency_rate_deliveries_per_s"] = broadcasts_per_s * subscribers
    metrics["latency_in_flight_deliveries"] = lat.get("in_flight_deliveries")
    _window_cpu(metrics, "latency_", marks, "latency", lat["deliveries"])
    metrics["p50_ms"] = lat["p50_ms"]
    metrics["p99_ms"] = lat["p99_ms"]
    metrics["latency_loadgen_cpu_util"] = lat["loadgen_cpu_util"]
    metrics["lost"] = lat["lost_total"] + lat["duplicates_total"]
    metrics["order_errors"] = lat["order_errors_total"]
    metrics["broadcasts_checked"] = lat["published_total"]
    final = probe()
    metrics["server_threads"] = final["threads"]
    metrics["server_rss_kib"] = final["rss_kib"]
    marks["final"] = final
    problems = []
    if lat.get("error"):
        problems.append(f"latency: {lat['error']}")
    if metrics["lost"]:
        problems.append(f"{lat['lost_total']} lost, {lat['duplicates_total']} duplicated")
    if lat.get("clients_closed"):
        problems.append(f"{lat['clients_closed']} clients closed by the server")
    if problems:
        metrics["error"] = "; ".join(problems)
    return metrics


def run_unpaced(system: str, subscribers: int, params: dict[str, Any]) -> dict[str, Any]:
    """An unpaced publisher: ``subscribers`` clients on one topic, client 0 writes
    ``unpaced_count`` broadcasts as fast as the server reads them, every client parses
    every frame. Whether every client got every broadcast, in order, and how many the
    server closed (and how); the rate, in flight and server CPU per delivery meanwhile.
    """
    metrics: dict[str, Any] = {"subscribers": subscribers}
    options = params.get("server_options", {}).get(system)
    with ServerProcess(system, options) as server, LoadgenProcess() as lg:
        metrics["server_pid"] = server.pid
        connected = connect_clients(lg, server, subscribers, "fan:lobby", params)
        metrics["connect"] = connected
        error = connect_error(connected)
        if error:
            metrics["error"] = error
            return metrics
        marks: dict[str, dict[str, Any]] = {}

        def on_event(event: dict[str, Any]) -> None:
            marks[event["event"]] = server.stats()

        flood = lg.command(
            "flood",
            params["stall_s"] * 2 + 400,
            on_event=on_event,
            count=params["unpaced_count"],
            stall_s=params["stall_s"],
        )
        metrics["flood"] = flood
        metrics["unpaced_broadcasts"] = flood["published"]
        for key in ("deliveries_per_s", "broadcasts_per_s", "loadgen_cpu_util"):
            metrics[f"unpaced_{key}"] = flood[key]
        metrics["unpaced_in_flight_deliveries"] = flood["in_flight_mean"]
        metrics["unpaced_in_flight_max"] = flood["in_flight_max"]
        _window_cpu(metrics, "unpaced_", marks, "unpaced", flood["deliveries"])
        metrics["unpaced_clients_closed"] = flood["clients_closed"]
        metrics["unpaced_close_reasons"] = flood["close_reasons"]
        metrics["unpaced_publisher_closed"] = flood["publisher_closed"]
        # what any client missed, the closed ones included, and what came twice
        metrics["unpaced_lost"] = flood["lost"] + flood["missed_by_closed"] + flood["duplicated"]
        metrics["unpaced_order_errors"] = flood["order_errors"] + flood["corrupt_frames"]
        final = server.stats()
        metrics["server_threads"] = final["threads"]
        metrics["server_rss_kib"] = final["rss_kib"]
        if flood.get("error"):
            # The figures above are the result (losses and closes included); an error
            # here means the phase itself could not finish.
            metrics["error"] = f"unpaced: {flood['error']}"
    return metrics


def run_joins(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """New connections that upgrade and join, as fast as ``concurrency`` allows; then
    joins/s on open sockets (channels_actor and socketio)."""
    metrics: dict[str, Any] = {}
    count = params["joins_new"]
    options = params.get("server_options", {}).get(system)
    with ServerProcess(system, options) as server, LoadgenProcess() as lg:
        before = server.stats()
        connected = connect_clients(lg, server, count, "j:{i}", params)
        after = server.stats()
        metrics["connect"] = connected
        metrics["conns_per_s"] = connected["per_s"]
        metrics["connect_p99_ms"] = connected["connect_p99_ms"]
        if connected["joined"]:
            metrics["server_cpu_us_per_conn"] = (
                (after["cpu_s"] - before["cpu_s"]) * 1e6 / connected["joined"]
            )
        error = connect_error(connected)
        if error:
            metrics["error"] = error
            return metrics
    if system not in JOINABLE:
        return metrics
    sockets, per_socket = params["joins_sockets"], params["joins_per_socket"]
    with ServerProcess(system, options) as server, LoadgenProcess() as lg:
        connected = connect_clients(lg, server, sockets, "j:{i}", params)
        error = connect_error(connected)
        if error:
            metrics["error"] = f"open sockets: {error}"
            return metrics
        before = server.stats()
        joined = lg.command("join_topics", 300, per_socket=per_socket, timeout=240)
        after = server.stats()
        metrics["join_topics"] = joined
        metrics["joins_per_s"] = joined["joins_per_s"]
        if joined["replies"]:
            metrics["server_cpu_us_per_join"] = (
                (after["cpu_s"] - before["cpu_s"]) * 1e6 / joined["replies"]
            )
        if joined.get("error") or joined.get("errors"):
            metrics["error"] = joined.get("error") or f"{joined['errors']} joins refused"
    return metrics


def run_idle(system: str, count: int, params: dict[str, Any]) -> dict[str, Any]:
    """``count`` connections, each with one joined channel (or the peer's equivalent),
    held open: server RSS per connection and threads."""
    metrics: dict[str, Any] = {"connections": count}
    options = params.get("server_options", {}).get(system)
    with ServerProcess(system, options) as server, LoadgenProcess() as lg:
        nofile = min(int(server.hello.get("nofile", 0)), int(lg.hello.get("nofile", 0)))
        if nofile < count + 100:
            metrics["error"] = (
                f"RLIMIT_NOFILE is {nofile} after raising it to the hard limit; "
                f"{count} connections need at least {count + 100} (raise `ulimit -Hn`)"
            )
            return metrics
        before = server.stats()
        connected = connect_clients(lg, server, count, "idle:{i}", params)
        metrics["connect"] = connected
        metrics["connect_s"] = connected["elapsed_s"]
        # let lazy work settle (handshake threads, queued joins), still answering pings
        lg.command("idle", 60, seconds=params["idle_settle_s"])
        after = server.stats()
        joined = connected["joined"]
        metrics["joined"] = joined
        metrics["rss_before_kib"] = before["rss_kib"]
        metrics["rss_after_kib"] = after["rss_kib"]
        metrics["server_threads"] = after["threads"]
        metrics["server_connections"] = after.get("connections")
        if joined:
            metrics["kib_per_conn"] = (after["rss_kib"] - before["rss_kib"]) / joined
        error = connect_error(connected)
        if error:
            metrics["error"] = error
    return metrics


def safe(run: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one measurement; a failure becomes ``{"error": ...}`` instead of an exception."""
    started = time.perf_counter()
    try:
        metrics = dict(run(*args, **kwargs))
    except ChildError as exc:
        metrics = {"error": str(exc)}
    except Exception as exc:
        import traceback

        metrics = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    metrics["wall_s"] = time.perf_counter() - started
    return metrics
