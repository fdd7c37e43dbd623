"""The benchmark programs still run (smoke sizes); their numbers are not asserted here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_bench_scheduling_quick(tmp_path: Path) -> None:
    out = tmp_path / "scheduling.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scheduling", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["medians"], "no medians recorded"
    assert "FAILED" not in proc.stdout


def test_network_benchmarks_quick(tmp_path: Path) -> None:
    out = tmp_path / "network.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--peers", "", "--no-progress",
         "--json", str(out), "--plot", str(tmp_path / "network.png")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    checks = {t["target"]: t["met"] for t in result["targets"]}
    assert checks["fanout: nothing lost"] and checks["fanout: in order"]
    assert checks["fanout-intercept: nothing lost"] and checks["fanout-intercept: in order"]
    if shutil.which("redis-server") or os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
        assert checks["fanout-cluster: nothing lost"] and checks["fanout-cluster: in order"]
        check_cluster_runs(result)
        for system in ("serve-1worker", "serve-2workers"):
            assert checks[f"fanout-intercept-workers {system}: nothing lost"]
            assert checks[f"fanout-intercept-workers {system}: in order"]
        check_workers_runs(result)


def check_cluster_runs(result: dict) -> None:
    """fanout-cluster: both nodes got half the clients, Redis's CPU was read, and the
    latency phase offered the two nodes the single node's half saturation rate."""
    runs = {r["system"]: r for r in result["runs"] if r["scenario"] == "fanout-cluster"}
    single, cluster = runs["channels_actor"], runs["channels_actor-2nodes"]
    assert single["ok"] and cluster["ok"], cluster["metrics"].get("error")
    metrics = cluster["metrics"]
    size = cluster["size"]
    assert metrics["clients_per_node"] == [size - size // 2, size // 2]
    assert metrics["redis_cpu_util"] is not None and metrics["node2_cpu_util"] > 0
    assert metrics["pubsub_lost"] == 0 and metrics["pubsub_refused"] == 0
    offered = metrics["latency_rate_deliveries_per_s"]
    assert abs(offered - 0.5 * single["metrics"]["deliveries_per_s"]) < 1e-6 * offered
    ratios = result["ratios"]["fanout-cluster"][str(size)]["channels_actor-2nodes"]
    assert set(ratios["p99_ms"]) == {"channels_actor"}


def test_batched_baseline_one_in_flight_and_unpaced_quick(tmp_path: Path) -> None:
    """bare-batched runs and is the first ratio; the one-in-flight phase has C deliveries
    in flight; the unpaced publisher's run reports its checks; every fan-out row shows
    its phase's deliveries in flight and server CPU per delivery."""
    out = tmp_path / "network.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "fanout", "fanout-unpaced", "--quick",
         "--peers", "bare-batched", "--sizes", "20", "--unpaced-sizes", "10",
         "--unpaced-count", "300", "--duration", "0.3", "--warmup", "0.1", "--no-progress",
         "--json", str(out), "--plot", str(tmp_path / "network.png")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    failed = [(r["label"], r["metrics"].get("error")) for r in result["runs"] if not r["ok"]]
    assert not failed, failed
    fanout = result["medians"]["fanout"]["20"]
    for system in ("channels_actor", "bare-batched"):
        one = fanout[system]
        assert one["one_in_flight_deliveries"] == 20
        assert one["one_deliveries_per_s"] > 0 and one["one_broadcast_ms"] > 0
        assert one["one_cpu_us_per_delivery"] > 0
        assert one["in_flight_deliveries"] > 0 and one["server_cpu_us_per_delivery"] > 0
        assert one["latency_cpu_us_per_delivery"] > 0
    ratios = result["ratios"]["fanout"]["20"]["channels_actor"]["deliveries_per_s"]
    assert next(iter(ratios)) == "bare-batched"
    unpaced = result["medians"]["fanout-unpaced"]["10"]
    for system in ("channels_actor", "bare-batched"):
        cell = unpaced[system]
        assert cell["unpaced_broadcasts"] == 300
        assert cell["unpaced_lost"] == 0 and cell["unpaced_order_errors"] == 0
        assert cell["unpaced_clients_closed"] == 0
        assert cell["unpaced_cpu_us_per_delivery"] > 0
    checks = {t["target"]: t["met"] for t in result["targets"]}
    assert checks["fanout-unpaced: nothing lost"] and checks["fanout-unpaced: no client closed"]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("scenario"))
    assert "in flight" in header and "CPU us/dlv" in header
    assert header.index("/ bare-batched") < header.index("/ bare ")


def check_workers_runs(result: dict) -> None:
    """fanout-intercept-workers: serve --workers 2 had both workers serving clients (as
    counted from /proc), Redis's CPU was read, and its latency phase offered the one
    worker's half saturation rate."""
    runs = {r["system"]: r for r in result["runs"] if r["scenario"] == "fanout-intercept-workers"}
    one, two = runs["serve-1worker"], runs["serve-2workers"]
    assert one["ok"] and two["ok"], (one["metrics"].get("error"), two["metrics"].get("error"))
    size = two["size"]
    assert one["metrics"]["clients_per_node"] == [size]
    split = two["metrics"]["clients_per_node"]
    assert len(split) == 2 and sum(split) == size and min(split) > 0, split
    assert two["metrics"]["redis_cpu_util"] is not None and two["metrics"]["node2_cpu_util"] > 0
    assert one["metrics"]["server_ctx_switches_per_delivery"] > 0
    offered = two["metrics"]["latency_rate_deliveries_per_s"]
    assert abs(offered - 0.5 * one["metrics"]["deliveries_per_s"]) < 1e-6 * offered
