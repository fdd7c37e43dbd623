"""How channel actors are scheduled: a shared worker pool against a thread per channel.

``Endpoint(actor_mode="pool")`` runs every channel actor's mailbox on a fixed
pool of ``pool_size`` worker threads; ``actor_mode="thread"`` gives each
channel actor a pykka ``ThreadingActor`` thread of its own. This benchmark
runs both modes on the same machine in the same invocation and reports the
ratio pool/thread for what the choice is meant to change:

``idle``
    N joined channels doing nothing (one in-memory connection each): RSS per
    channel (``VmRSS`` delta, channels only and connection + channel), threads
    (``threading.active_count()`` and the kernel's ``Threads``), the time to
    join them all, the time ``Endpoint.stop()`` takes and the threads left
    after it. Thread mode caps a process near 21,800 threads; a mode that
    fails is reported as failed, not crashed on.
``joins``
    joins/s for N joins on open connections (until every join reply arrived),
    then leaves/s (until every channel's ``terminate`` ran).
``fanout-intercept``
    S channels on one topic whose Channel intercepts ``new_msg`` and pushes
    from ``handle_out``: M broadcasts, deliveries/s until all S x M pushes
    reached the transports. The same with a non-intercepted event (the
    fastlane, which never enters a channel actor) for reference.

Every (scenario, mode, repeat) runs in a fresh child process, so RSS and
thread counts start clean and one mode's leftovers cannot slow the other;
modes alternate within each repeat. Completion is counted in the in-memory
transports' sinks and waited for on events with timeouts, never by sleeping.

Usage::

    python -m benchmarks.bench_scheduling                 # full sizes, 3 repeats
    python -m benchmarks.bench_scheduling --quick         # CI smoke test (< 20 s)
    python -m benchmarks.bench_scheduling --scenarios idle --channels 20000 --modes thread
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _util
from channels_actor import Channel, Endpoint, Message, Reply, Socket, SocketHandler, push
from channels_actor.connection import Connection
from channels_actor.serializers.noop import NoopSerializer
from channels_actor.transports.memory import MemoryTransport

SCENARIOS = ("idle", "joins", "fanout-intercept")
MODES = ("pool", "thread")

FULL_SIZES: dict[str, int] = {
    "channels": 10_000,
    "joins": 5_000,
    "subscribers": 1_000,
    "broadcasts": 200,
    "repeat": 3,
}
QUICK_SIZES: dict[str, int] = {
    "channels": 200,
    "joins": 200,
    "subscribers": 100,
    "broadcasts": 20,
    "repeat": 1,
}

FAN_TOPIC = "fan:lobby"
FAN_PAYLOAD = {"body": "x" * 64}
INTERCEPTED_EVENT = "new_msg"
FASTLANE_EVENT = "fast_msg"


@dataclass(frozen=True)
class Metric:
    """One row of the table: ``key`` in a run's metrics, shown as ``label``."""

    key: str
    label: str


TABLE: dict[str, tuple[Metric, ...]] = {
    "idle": (
        Metric("join_all_s", "time to join all (s)"),
        Metric("kib_per_channel", "RSS per channel (KiB)"),
        Metric("kib_per_conn_channel", "RSS per connection+channel (KiB)"),
        Metric("os_threads", "threads (/proc Threads)"),
        Metric("active_threads", "threads (active_count)"),
        Metric("stop_s", "Endpoint.stop() (s)"),
        Metric("leftover_threads", "threads left after stop"),
    ),
    "joins": (
        Metric("joins_per_s", "joins/s"),
        Metric("leaves_per_s", "leaves/s (to terminate)"),
        Metric("stop_s", "Endpoint.stop() (s)"),
        Metric("leftover_threads", "threads left after stop"),
    ),
    "fanout-intercept": (
        Metric("intercept_deliveries_per_s", "intercepted deliveries/s"),
        Metric("intercept_publish_s", "intercepted: publish calls (s)"),
        Metric("fastlane_deliveries_per_s", "fastlane deliveries/s"),
        Metric("os_threads", "threads (/proc Threads)"),
        Metric("leftover_threads", "threads left after stop"),
    ),
}


# ======================================================================================
# child side: one measurement in this process
# ======================================================================================


class IdleChannel(Channel):
    """Accepts every join and counts its ``terminate`` in the run's probe."""

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        probe = socket.assigns.get("probe")
        if probe is not None:
            probe.terminated.hit()


class InterceptChannel(IdleChannel):
    """Intercepts ``new_msg``: every broadcast of it runs ``handle_out`` in each channel."""

    intercept = (INTERCEPTED_EVENT,)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        push(socket, event, payload)
        return ("noreply", socket)


class BenchSocket(SocketHandler):
    channels = {"idle:*": IdleChannel, "fan:*": InterceptChannel}  # noqa: RUF012


class Probe:
    """The sink of every in-memory transport of a run: counts what arrives.

    The run swaps in a fresh :class:`~benchmarks._util.Countdown` before each
    phase, then waits on it.
    """

    def __init__(self) -> None:
        self.replies = _util.Countdown(0)
        self.terminated = _util.Countdown(0)
        self.pushes: dict[str, _util.Countdown] = {}
        self.bad_frames: list[Any] = []

    def sink(self, frame: Any) -> None:
        if type(frame) is Reply:
            if frame.status != "ok":
                self.bad_frames.append(frame)
            self.replies.hit()
        elif type(frame) is Message:
            countdown = self.pushes.get(frame.event)
            if countdown is not None:
                countdown.hit()
            elif frame.event == "phx_error":
                self.bad_frames.append(frame)

    def on_close(self, why: str) -> None:
        """Transport closed by the endpoint (``shutdown``) or a disconnect broadcast."""


class LogCollector(logging.Handler):
    """Keeps WARNING+ records of the runtime so the report can show them."""

    def __init__(self, keep: int = 5) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []
        self._keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < self._keep:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


def make_endpoint(mode: str, pool_size: int) -> Endpoint:
    endpoint = Endpoint(actor_mode=mode, pool_size=pool_size)
    endpoint.start_runtime()
    return endpoint


def open_connections(endpoint: Endpoint, count: int, probe: Probe) -> list[Connection]:
    """``count`` in-memory connections, each with its own transport, all sinking to ``probe``."""
    base = Socket(
        assigns={"probe": probe},
        endpoint=endpoint,
        handler=BenchSocket(),
        serializer=NoopSerializer(),
        pubsub=endpoint.pubsub,
    )
    return [
        endpoint.open_connection(base, MemoryTransport(probe.sink, probe.on_close))
        for _ in range(count)
    ]


def submit_joins(
    connections: Sequence[Connection], topic_of: Callable[[int], str]
) -> tuple[int, str | None]:
    """Send ``phx_join`` on each connection; stop at the first failure (thread limit).

    Returns how many joins were submitted and the error, if any.
    """
    for index, connection in enumerate(connections):
        ref = str(index + 1)
        try:
            connection.receive(Message(topic_of(index), "phx_join", {}, ref, ref))
        except Exception as exc:  # RuntimeError("can't start new thread") in thread mode
            return index, f"{type(exc).__name__}: {exc} (at join {index + 1})"
    return len(connections), None


def join_all(
    connections: Sequence[Connection],
    probe: Probe,
    topic_of: Callable[[int], str],
    timeout: float,
) -> dict[str, Any]:
    """Join one topic per connection and wait for every reply; returns the timing."""
    probe.replies = countdown = _util.Countdown(len(connections))
    started = time.perf_counter()
    submitted, error = submit_joins(connections, topic_of)
    submit_s = time.perf_counter() - started
    if submitted < len(connections):
        countdown.retarget(submitted)
    if not countdown.wait(timeout):
        error = error or f"only {countdown.count} of {submitted} join replies within {timeout:.0f}s"
    elapsed = (countdown.finished_at or time.perf_counter()) - started
    return {
        "submitted": submitted,
        "replied": countdown.count,
        "submit_s": submit_s,
        "join_all_s": elapsed,
        "joins_per_s": submitted / elapsed if elapsed > 0 else None,
        "error": error,
    }


def stop_endpoint(endpoint: Endpoint, stop_timeout: float) -> dict[str, Any]:
    """``Endpoint.stop()``, then wait for every other thread to end."""
    started = time.perf_counter()
    endpoint.stop(stop_timeout)
    stop_s = time.perf_counter() - started
    leftovers = _util.wait_other_threads(stop_timeout)
    return {
        "stop_s": stop_s,
        "leftover_threads": len(leftovers),
        "leftover_thread_names": leftovers[:10],
        "threads_after_stop": _util.os_threads(),
    }


def measure_threads() -> dict[str, int]:
    return {"os_threads": _util.os_threads(), "active_threads": threading.active_count()}


def run_idle(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    count = params["channels"]
    endpoint = make_endpoint(mode, params["pool_size"])
    probe = Probe()
    gc.collect()
    rss_start = _util.rss_kib()
    connections = open_connections(endpoint, count, probe)
    gc.collect()
    rss_connections = _util.rss_kib()
    joined = join_all(connections, probe, lambda i: f"idle:{i}", params["timeout"])
    gc.collect()
    rss_joined = _util.rss_kib()
    threads = measure_threads()
    alive = endpoint.channel_count(params["timeout"])
    channels = max(joined["replied"], 1)
    metrics: dict[str, Any] = {
        "channels": count,
        **joined,
        **threads,
        "alive_channels": alive,
        "rss_start_kib": rss_start,
        "rss_connections_kib": rss_connections,
        "rss_joined_kib": rss_joined,
        "kib_per_channel": (rss_joined - rss_connections) / channels,
        "kib_per_conn_channel": (rss_joined - rss_start) / channels,
    }
    metrics.update(stop_endpoint(endpoint, params["stop_timeout"]))
    del connections, endpoint
    gc.collect()
    metrics["rss_after_stop_kib"] = _util.rss_kib()
    metrics["bad_frames"] = len(probe.bad_frames)
    return metrics


def run_joins(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    count = params["joins"]
    endpoint = make_endpoint(mode, params["pool_size"])
    probe = Probe()
    connections = open_connections(endpoint, count, probe)
    joined = join_all(connections, probe, lambda i: f"idle:{i}", params["timeout"])
    metrics: dict[str, Any] = {"joins": count, **joined, **measure_threads()}
    if joined["error"] is None:
        metrics.update(leave_all(connections, probe, params["timeout"]))
    metrics["alive_channels_after_leave"] = endpoint.channel_count(params["timeout"])
    metrics.update(stop_endpoint(endpoint, params["stop_timeout"]))
    metrics["bad_frames"] = len(probe.bad_frames)
    return metrics


def leave_all(connections: Sequence[Connection], probe: Probe, timeout: float) -> dict[str, Any]:
    """``phx_leave`` on every connection; done when every channel's ``terminate`` ran."""
    count = len(connections)
    probe.replies = replies = _util.Countdown(count)
    probe.terminated = terminated = _util.Countdown(count)
    started = time.perf_counter()
    for index, connection in enumerate(connections):
        join_ref = str(index + 1)
        connection.receive(Message(f"idle:{index}", "phx_leave", {}, f"leave-{index}", join_ref))
    submit_s = time.perf_counter() - started
    error = None
    if not (replies.wait(timeout) and terminated.wait(timeout)):
        error = (
            f"{replies.count} leave replies and {terminated.count} terminates "
            f"of {count} within {timeout:.0f}s"
        )
    done_at = terminated.finished_at or time.perf_counter()
    replied_at = replies.finished_at or time.perf_counter()
    return {
        "leave_submit_s": submit_s,
        "leave_replies_s": replied_at - started,
        "leave_terminated_s": done_at - started,
        "leaves_per_s": count / (done_at - started),
        "error": error,
    }


def run_fanout(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    subscribers, broadcasts = params["subscribers"], params["broadcasts"]
    endpoint = make_endpoint(mode, params["pool_size"])
    probe = Probe()
    connections = open_connections(endpoint, subscribers, probe)
    joined = join_all(connections, probe, lambda _i: FAN_TOPIC, params["timeout"])
    metrics: dict[str, Any] = {
        "subscribers": subscribers,
        "broadcasts": broadcasts,
        "join_all_s": joined["join_all_s"],
        "error": joined["error"],
        **measure_threads(),
    }
    if joined["error"] is None:
        # Each join told the registry Subscribe before replying, so this sees them all.
        metrics["pubsub_subscriptions"] = endpoint.pubsub.stats(params["timeout"])[1]
        countdowns = {}
        for label, event in (("intercept", INTERCEPTED_EVENT), ("fastlane", FASTLANE_EVENT)):
            result, countdowns[label] = fan_out(
                endpoint, probe, event, subscribers, broadcasts, params["timeout"]
            )
            metrics.update({f"{label}_{key}": value for key, value in result.items()})
            if result["error"] and metrics["error"] is None:
                metrics["error"] = f"{label}: {result['error']}"
    metrics.update(stop_endpoint(endpoint, params["stop_timeout"]))
    if joined["error"] is None:
        # Everything sent has arrived by now: more than expected means duplicates.
        for label, countdown in countdowns.items():
            metrics[f"{label}_delivered_final"] = countdown.count
    metrics["bad_frames"] = len(probe.bad_frames)
    return metrics


def fan_out(
    endpoint: Endpoint,
    probe: Probe,
    event: str,
    subscribers: int,
    broadcasts: int,
    timeout: float,
) -> tuple[dict[str, Any], _util.Countdown]:
    """Broadcast ``event`` ``broadcasts`` times; wait for every subscriber's delivery."""
    expected = subscribers * broadcasts
    probe.pushes[event] = countdown = _util.Countdown(expected)
    started = time.perf_counter()
    for _ in range(broadcasts):
        endpoint.broadcast(FAN_TOPIC, event, FAN_PAYLOAD)
    publish_s = time.perf_counter() - started
    error = None
    if not countdown.wait(timeout):
        error = f"only {countdown.count} of {expected} deliveries within {timeout:.0f}s"
    elapsed = (countdown.finished_at or time.perf_counter()) - started
    return {
        "expected": expected,
        "delivered": countdown.count,
        "publish_s": publish_s,
        "elapsed_s": elapsed,
        "deliveries_per_s": countdown.count / elapsed,
        "error": error,
    }, countdown


RUNNERS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "idle": run_idle,
    "joins": run_joins,
    "fanout-intercept": run_fanout,
}


def child_main(spec: dict[str, Any]) -> None:
    """Run one measurement and emit it; exit without waiting on leaked threads."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    collector = LogCollector()
    logging.getLogger().addHandler(collector)
    started = time.perf_counter()
    try:
        metrics = RUNNERS[spec["scenario"]](spec["mode"], spec["params"])
    except Exception:
        metrics = {"error": traceback.format_exc(limit=8)}
    metrics["child_s"] = time.perf_counter() - started
    metrics["log_warnings"] = collector.count
    metrics["log_first"] = collector.first
    _util.emit_child_result(metrics)
    if metrics.get("leftover_threads") or "stop_s" not in metrics:
        # Threads the endpoint left behind would keep the process alive; the
        # report shows them, so leave without joining them.
        sys.stderr.flush()
        os._exit(3)


# ======================================================================================
# parent side: run the children, aggregate, print, save
# ======================================================================================


def run_matrix(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every (scenario, repeat, mode) in a child; modes alternate inside a repeat."""
    params = {
        "channels": args.channels,
        "joins": args.joins,
        "subscribers": args.subscribers,
        "broadcasts": args.broadcasts,
        "pool_size": args.pool_size,
        "timeout": args.timeout,
        "stop_timeout": args.stop_timeout,
    }
    child_timeout = 3 * args.timeout + 2 * args.stop_timeout + 120
    runs: list[dict[str, Any]] = []
    for scenario in args.scenarios:
        for repeat in range(args.repeat):
            for mode in args.modes:
                spec = {"scenario": scenario, "mode": mode, "params": params}
                outcome = _util.run_child(
                    ["-m", "benchmarks.bench_scheduling", "--child", json.dumps(spec)],
                    child_timeout,
                )
                run = record_run(scenario, mode, repeat, outcome)
                runs.append(run)
                status = "ok" if run["ok"] else f"FAILED: {first_line(run['error'])}"
                print(
                    f"  {scenario:<17} {mode:<6} #{repeat + 1}  {outcome.wall_s:6.1f} s  {status}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def record_run(
    scenario: str, mode: str, repeat: int, outcome: _util.ChildOutcome
) -> dict[str, Any]:
    metrics = outcome.result or {}
    error = metrics.get("error") or outcome.error
    return {
        "scenario": scenario,
        "mode": mode,
        "repeat": repeat + 1,
        "ok": error is None,
        "error": error,
        "wall_s": outcome.wall_s,
        "returncode": outcome.returncode,
        "metrics": metrics,
        "stderr_tail": outcome.stderr_tail,
    }


def first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def summarize(
    runs: list[dict[str, Any]], scenarios: Sequence[str], modes: Sequence[str]
) -> dict[str, Any]:
    """Medians per scenario, metric and mode (successful runs only), and pool/thread ratios."""
    summary: dict[str, Any] = {}
    for scenario in scenarios:
        rows: dict[str, Any] = {}
        for metric in TABLE[scenario]:
            row: dict[str, Any] = {}
            for mode in modes:
                good = [
                    r for r in runs if r["scenario"] == scenario and r["mode"] == mode and r["ok"]
                ]
                row[mode] = _util.median(r["metrics"].get(metric.key) for r in good)
            row["ratio_pool_thread"] = _util.ratio(row.get("pool"), row.get("thread"))
            rows[metric.key] = row
        summary[scenario] = rows
    return summary


def failures(runs: list[dict[str, Any]], scenario: str, mode: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["scenario"] == scenario and r["mode"] == mode and not r["ok"]]


def print_report(
    runs: list[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace
) -> None:
    headers = ["scenario", "metric", *[f"{m} median" for m in args.modes], "ratio pool/thread"]
    rows: list[list[Any]] = []
    notes: list[str] = []
    for scenario in args.scenarios:
        failed = {mode: failures(runs, scenario, mode) for mode in args.modes}
        for mode, bad in failed.items():
            for run in bad:
                notes.append(f"{scenario} {mode} #{run['repeat']}: {first_line(run['error'])}")
        for metric in TABLE[scenario]:
            row: list[Any] = [scenario, metric.label]
            for mode in args.modes:
                value = summary[scenario][metric.key][mode]
                total = args.repeat
                if failed[mode] and value is None:
                    value = f"FAILED {len(failed[mode])}/{total}"
                elif failed[mode]:
                    value = f"{_util.format_value(value)} ({len(failed[mode])}/{total} failed)"
                row.append(value)
            row.append(summary[scenario][metric.key]["ratio_pool_thread"])
            rows.append(row)
    sizes = (
        f"channels={args.channels} joins={args.joins} subscribers={args.subscribers} "
        f"broadcasts={args.broadcasts} pool_size={args.pool_size} repeat={args.repeat}"
    )
    print(f"\nbench_scheduling ({sizes})\n")
    _util.print_table(headers, rows)
    print(
        "\nratio pool/thread: below 1 on times, memory and threads, above 1 on rates, favours pool"
    )
    warnings = [
        (
            r["scenario"],
            r["mode"],
            r["repeat"],
            r["metrics"].get("log_warnings", 0),
            r["metrics"].get("log_first", []),
        )
        for r in runs
        if r["metrics"].get("log_warnings")
    ]
    for scenario, mode, repeat, count, first in warnings:
        notes.append(f"{scenario} {mode} #{repeat}: {count} runtime warning(s); first: {first[:1]}")
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"  - {note}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scheduling",
        description="Pool vs thread-per-channel scheduling of channel actors (ratios pool/thread).",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: pool,thread")
    parser.add_argument("--channels", type=int, help="idle: joined channels (default 10000)")
    parser.add_argument("--joins", type=int, help="joins: joins then leaves (default 5000)")
    parser.add_argument("--subscribers", type=int, help="fanout-intercept: channels (default 1000)")
    parser.add_argument("--broadcasts", type=int, help="fanout-intercept: broadcasts (default 200)")
    parser.add_argument("--repeat", type=int, help="runs per scenario and mode (default 3)")
    parser.add_argument("--pool-size", type=int, default=8, help="pool mode workers (default 8)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds to wait for each phase to complete (default 180)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds given to Endpoint.stop() and to threads ending (default 30)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and one repeat: a CI smoke test"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to save results (default benchmarks/results/scheduling.json, "
        "scheduling-quick.json with --quick)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return args
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.scenarios = split_choice(parser, args.scenarios, SCENARIOS, "--scenarios")
    args.modes = split_choice(parser, args.modes, MODES, "--modes")
    if args.json is None:
        name = "scheduling-quick.json" if args.quick else "scheduling.json"
        args.json = _util.RESULTS_DIR / name
    return args


def split_choice(
    parser: argparse.ArgumentParser, text: str, allowed: Sequence[str], flag: str
) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        parser.error(f"{flag}: unknown {unknown or text!r}; choose from {', '.join(allowed)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(json.loads(args.child))
        return
    started = time.perf_counter()
    runs = run_matrix(args)
    summary = summarize(runs, args.scenarios, args.modes)
    wall = time.perf_counter() - started
    print_report(runs, summary, args)
    config = {
        key: getattr(args, key)
        for key in (
            "scenarios",
            "modes",
            "channels",
            "joins",
            "subscribers",
            "broadcasts",
            "repeat",
            "pool_size",
            "timeout",
            "stop_timeout",
            "quick",
        )
    }
    path = _util.save_json(
        Path(args.json),
        {
            "benchmark": "bench_scheduling",
            "machine": _util.machine_info(),
            "config": config,
            "wall_s": wall,
            "medians": summary,
            "runs": runs,
        },
    )
    print(f"\nwall time {wall:.1f} s; results saved to {path}")


if __name__ == "__main__":
    main()
