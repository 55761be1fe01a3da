"""Helpers shared by the benchmarks: interleaved timing and result tables."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "output"


def wall(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def python_wall(code: str) -> float:
    """Seconds a fresh interpreter takes to run ``code`` (start-up included)."""
    return wall(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True))


def interleaved(cycles: int, **cases: Callable[[], float]) -> dict[str, list[float]]:
    """Runs every case once per cycle, alternating, so machine noise hits all cases alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(cycles):
        for name, case in cases.items():
            times[name].append(case())
    return times


def ratio_of_medians(times: dict[str, list[float]], num: str, den: str) -> float:
    """median(num) / median(den)."""
    return statistics.median(times[num]) / statistics.median(times[den])


def per_cycle_ratios(times: dict[str, list[float]], num: str, den: str) -> list[float]:
    """num / den within each cycle (the noise-robust figure)."""
    return [a / b for a, b in zip(times[num], times[den], strict=True)]


def save(name: str, result: dict[str, Any]) -> Path:
    """Writes the result JSON (with machine facts) to benchmarks/output/<name>.json."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.json"
    result = {
        "benchmark": name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **result,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
