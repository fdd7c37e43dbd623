"""The ``inprocess`` scenario: the runtime's own fan-out cost, with no network at all.

An :class:`~channels_actor.Endpoint` (pool mode, its defaults) with N
in-memory connections joined to one topic; ``endpoint.broadcast`` M times,
then wait until every connection's transport got every frame. Done twice:
with an event that is not intercepted (the fastlane: the PubSub registry
writes a shared frame to each connection) and with one that is (each of the N
channel actors runs ``handle_out`` and pushes). Reports deliveries/s and the
process CPU time per delivery (every thread, user + system).

The connection, channel and probe helpers are those of
``benchmarks.bench_scheduling``; each measurement runs in a fresh child
process (``python -m benchmarks.inprocess '<json spec>'``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

from benchmarks import _util


def measure(subscribers: int, deliveries: int, timeout: float) -> dict[str, Any]:
    from benchmarks import bench_scheduling as bs

    endpoint = bs.make_endpoint("pool", 8)
    probe = bs.Probe()
    metrics: dict[str, Any] = {"subscribers": subscribers}
    try:
        connections = bs.open_connections(endpoint, subscribers, probe)
        joined = bs.join_all(connections, probe, lambda _i: bs.FAN_TOPIC, timeout)
        if joined["error"]:
            metrics["error"] = joined["error"]
            return metrics
        broadcasts = max(5, deliveries // subscribers)
        # warm up both paths (first frames, pool threads)
        for event in (bs.FASTLANE_EVENT, bs.INTERCEPTED_EVENT):
            bs.fan_out(endpoint, probe, event, subscribers, 2, timeout)
        for label, event in (("fastlane", bs.FASTLANE_EVENT), ("intercept", bs.INTERCEPTED_EVENT)):
            cpu0 = time.process_time()
            result, countdown = bs.fan_out(endpoint, probe, event, subscribers, broadcasts, timeout)
            cpu = time.process_time() - cpu0
            delivered = countdown.count
            metrics[f"{label}_deliveries_per_s"] = result["deliveries_per_s"]
            metrics[f"{label}_cpu_us_per_delivery"] = cpu * 1e6 / delivered if delivered else None
            metrics[f"{label}_broadcasts"] = broadcasts
            metrics[f"{label}_delivered"] = delivered
            metrics[f"{label}_expected"] = result["expected"]
            metrics[f"{label}_elapsed_s"] = result["elapsed_s"]
            if result["error"] and "error" not in metrics:
                metrics["error"] = f"{label}: {result['error']}"
        metrics["threads"] = _util.os_threads()
        metrics["bad_frames"] = len(probe.bad_frames)
    finally:
        endpoint.stop(10)
    return metrics


def run(subscribers: int, deliveries: int, timeout: float) -> dict[str, Any]:
    """Measure in a fresh child process; returns its metrics (with ``error`` on failure)."""
    spec = json.dumps({"subscribers": subscribers, "deliveries": deliveries, "timeout": timeout})
    outcome = _util.run_child(["-m", "benchmarks.inprocess", spec], timeout * 3 + 60)
    metrics = dict(outcome.result or {})
    if outcome.error and not metrics.get("error"):
        metrics["error"] = f"{outcome.error}: {outcome.stderr_tail[-500:]}"
    return metrics


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(sys.argv[1])
    try:
        metrics = measure(int(spec["subscribers"]), int(spec["deliveries"]), float(spec["timeout"]))
    except Exception:
        metrics = {"error": traceback.format_exc(limit=6)}
    _util.emit_child_result(metrics)


if __name__ == "__main__":
    main()
