"""The ``fanout-cluster`` scenario: two channels_actor nodes that meet in Redis.

A run starts a ``redis-server`` of its own (:class:`~benchmarks._procs.RedisProcess`:
a free port, no persistence), two ``benchmarks.servers channels_actor`` processes
with ``--redis URL --node-name bench-node<i>`` (``RedisPubSub(URL, name)``), and
one load generator. The clients are split evenly between the nodes, node 1 first,
so the publisher (the first client) is on node 1: each broadcast is dispatched
there and crosses Redis once to node 2. The phases and their figures are the
``fanout`` scenario's (:func:`benchmarks.network.measure_fanout`), with the CPU of
both nodes summed, and beside them Redis's CPU over each phase (``utime + stime``
from ``/proc/<pid>/stat``). Everything is killed at the end, and on errors.

The single-node figures it is compared to are ``run_fanout("channels_actor", ...)``
of the same invocation; the caller passes half their saturation rate as
``latency_rate`` so that both latencies are measured at the same offered rate.
"""

from __future__ import annotations

import contextlib
from typing import Any

from benchmarks._procs import LoadgenProcess, RedisProcess, ServerProcess
from benchmarks.network import connect_clients, connect_error, measure_fanout

__all__ = ["NODES", "cluster_figures", "combined", "run_fanout_cluster"]

NODES = 2
SYSTEM = "channels_actor"
#: Figures of the nodes' ``stats`` that add up over the cluster.
SUMMED = (
    "cpu_s",
    "user_s",
    "sys_s",
    "ctx_voluntary",
    "ctx_involuntary",
    "threads",
    "rss_kib",
    "connections",
)
#: (mark of the phase, prefix of its metrics, key of its result in the metrics)
PHASES = (("window", "", "saturate"), ("one", "one_", "one"), ("latency", "latency_", "latency"))


def run_fanout_cluster(
    subscribers: int, params: dict[str, Any], *, latency_rate: float | None = None
) -> dict[str, Any]:
    """``subscribers`` clients on one topic, split between two nodes behind Redis.

    ``latency_rate`` (deliveries/s) is the rate the latency phase offers; the
    single-node run's half saturation, so the two p99s compare like with like
    (default: half the saturation measured here).
    """
    metrics: dict[str, Any] = {"subscribers": subscribers, "nodes": NODES}
    options = params.get("server_options", {}).get(SYSTEM)
    with contextlib.ExitStack() as stack:
        # entered in this order, left in the reverse: Redis goes last
        redis = stack.enter_context(RedisProcess())
        metrics["redis_pid"] = redis.pid
        servers = [
            stack.enter_context(
                ServerProcess(
                    SYSTEM,
                    options,
                    extra_args=["--redis", redis.url, "--node-name", f"bench-node{i + 1}"],
                )
            )
            for i in range(NODES)
        ]
        metrics["server_pids"] = [server.pid for server in servers]
        lg = stack.enter_context(LoadgenProcess())
        shares = split(subscribers, NODES)
        metrics["clients_per_node"] = shares
        results = []
        for server, share in zip(servers, shares, strict=True):
            connected = connect_clients(lg, server, share, "fan:lobby", params)
            results.append(connected)
            error = connect_error(connected)
            if error:
                metrics["connect"] = results
                metrics["error"] = f"node {len(results)}: {error}"
                return metrics
        metrics["connect"] = results
        elapsed = sum(r["elapsed_s"] for r in results)
        metrics["connect_per_s"] = subscribers / elapsed if elapsed > 0 else None

        def probe() -> dict[str, Any]:
            return combined([server.stats() for server in servers], redis)

        marks: dict[str, dict[str, Any]] = {}
        name = f"fanout-cluster-{subscribers}"
        pids = {f"{name}-node{i + 1}": server.pid for i, server in enumerate(servers)}
        measure_fanout(
            lg, probe, pids, subscribers, params, metrics, latency_rate=latency_rate, marks=marks
        )
        cluster_figures(metrics, marks)
    return metrics


def combined(readings: list[dict[str, Any]], redis: RedisProcess | None) -> dict[str, Any]:
    """The nodes' stats as one server's (:data:`SUMMED`), each node's under ``nodes``, and
    Redis's CPU seconds as ``redis_cpu_s``."""
    total: dict[str, Any] = {key: sum(r.get(key) or 0 for r in readings) for key in SUMMED}
    total["monotonic"] = readings[0]["monotonic"]
    total["nodes"] = readings
    total["redis_cpu_s"] = None if redis is None else redis.cpu_s()
    return total


def split(count: int, parts: int) -> list[int]:
    """``count`` as evenly as can be over ``parts``, the larger shares first."""
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def cluster_figures(metrics: dict[str, Any], marks: dict[str, dict[str, Any]]) -> None:
    """Redis's CPU per phase, each node's CPU while saturating, and the adapters' counts."""
    for mark, prefix, result in PHASES:
        start, end = marks.get(f"{mark}_start"), marks.get(f"{mark}_end")
        deliveries = (metrics.get(result) or {}).get("deliveries")
        if not (start and end and deliveries):
            continue
        wall = end["monotonic"] - start["monotonic"]
        if start.get("redis_cpu_s") is not None and end.get("redis_cpu_s") is not None:
            redis = end["redis_cpu_s"] - start["redis_cpu_s"]
            metrics[f"{prefix}redis_cpu_us_per_delivery"] = redis * 1e6 / deliveries
            metrics[f"{prefix}redis_cpu_us_per_broadcast"] = (
                redis * 1e6 * metrics["subscribers"] / deliveries
            )
            metrics[f"{prefix}redis_cpu_util"] = redis / wall if wall > 0 else None
        if mark == "window" and wall > 0:
            for i, (before, after) in enumerate(zip(start["nodes"], end["nodes"], strict=True)):
                metrics[f"node{i + 1}_cpu_util"] = (after["cpu_s"] - before["cpu_s"]) / wall
    final = marks.get("final")
    if final and all("connections" in node for node in final["nodes"]):  # asked, not /proc
        for counter in ("pubsub_lost", "pubsub_refused", "pubsub_outages", "pubsub_malformed"):
            metrics[counter] = sum(node.get(counter) or 0 for node in final["nodes"])
