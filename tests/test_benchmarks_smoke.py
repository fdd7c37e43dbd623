"""The benchmark programs still run (smoke sizes); their numbers are not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_bench_scheduling_quick(tmp_path: Path) -> None:
    out = tmp_path / "scheduling.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scheduling", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
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
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    checks = {t["target"]: t["met"] for t in result["targets"]}
    assert checks["fanout: nothing lost"] and checks["fanout: in order"]
    assert checks["fanout-intercept: nothing lost"] and checks["fanout-intercept: in order"]
