"""The ``fanout-intercept-workers`` scenario: ``channels-actor serve --workers N``.

Intercepted fan-out runs ``handle_out`` once per subscriber in Python: it is
CPU-bound under the GIL, where a second process should help. A run serves
``benchmarks.servers:serve_app`` with ``channels-actor serve --workers N`` on a
free port (:class:`~benchmarks._procs.ServeProcess`); with more than one worker,
each is a node of a ``RedisPubSub`` on a redis-server the run starts for itself.
All the clients join ``fani:lobby`` through the one port, so the kernel
(``SO_REUSEPORT``) decides which worker each lands on, as in a deployment; the
split is counted from ``/proc`` at the end. The phases are the ``fanout``
scenario's (:func:`benchmarks.network.measure_fanout`), with the CPU of every
worker summed from ``/proc/<pid>/stat`` (the workers have no control channel).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from benchmarks import _pidstats
from benchmarks._procs import LoadgenProcess, RedisProcess, ServeProcess
from benchmarks.cluster import cluster_figures, combined
from benchmarks.network import connect_clients, connect_error, measure_fanout
from benchmarks.servers import OPTIONS_ENV, REDIS_ENV

__all__ = ["APP", "run_fanout_workers"]

APP = "benchmarks.servers:serve_app"


def run_fanout_workers(
    workers: int,
    subscribers: int,
    params: dict[str, Any],
    *,
    latency_rate: float | None = None,
) -> dict[str, Any]:
    """``subscribers`` clients on one intercepted topic of ``serve --workers workers``.

    ``latency_rate`` (deliveries/s) is the rate the latency phase offers: the
    one-worker run's half saturation, so that the p99s compare like with like
    (default: half the saturation measured here).
    """
    metrics: dict[str, Any] = {"subscribers": subscribers, "workers": workers}
    options = params.get("server_options", {}).get("channels_actor") or []
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisProcess()) if workers > 1 else None
        env = {OPTIONS_ENV: json.dumps(list(options)), REDIS_ENV: redis.url if redis else ""}
        serve = stack.enter_context(ServeProcess(APP, workers, env))
        pids = serve.pids
        metrics["worker_pids"] = pids
        lg = stack.enter_context(LoadgenProcess())
        connected = connect_clients(lg, serve, subscribers, "fani:lobby", params)
        metrics["connect"] = connected
        metrics["connect_per_s"] = connected["per_s"]
        error = connect_error(connected)
        if error:
            metrics["error"] = error
            return metrics
        metrics["clients_per_node"] = _pidstats.established_on_port(pids, serve.port)
        metrics["busiest_worker_clients"] = max(metrics["clients_per_node"])

        def probe() -> dict[str, Any]:
            return combined([_pidstats.pid_stats(pid) for pid in pids], redis)

        marks: dict[str, dict[str, Any]] = {}
        name = f"fanout-intercept-workers{workers}-{subscribers}"
        profiled = {f"{name}-worker{i + 1}": pid for i, pid in enumerate(pids)}
        measure_fanout(
            lg,
            probe,
            profiled,
            subscribers,
            params,
            metrics,
            latency_rate=latency_rate,
            marks=marks,
        )
        cluster_figures(metrics, marks)
        if serve.restarts and not metrics.get("error"):
            metrics["error"] = f"{serve.restarts} worker(s) restarted during the run"
    return metrics
