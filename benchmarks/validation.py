"""Validation throughput and memory on 1,000,000 × 25 (20 float64 + 5 string), as in PEERS.md.

- **throughput**: rows/s of ``validate_data`` (read the Dataset's Parquet, infer the schema, find
  anomalies, write the reports and the drift profile) ÷ rows/s of ``pandas.read_parquet`` on the
  same file, alternating in one process. Target ≥ 0.5 (validating costs no more than reading twice).
- **memory**: peak RSS of a fresh process that validates the file ÷ the frame's in-memory size
  (``DataFrame.memory_usage(deep=True)``). Target < 3.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save

ROWS = 1_000_000

MEASURE_RSS = r"""
import json, resource, sys
from components.validate_data import core
from shipyard.artifacts import read_dataset
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
core.validate(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], core.ValidateConfig(model_ready=False))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
df, _ = read_dataset(sys.argv[1])
print(json.dumps({"peak_kib": peak, "start_kib": base, "frame_bytes": int(df.memory_usage(deep=True).sum())}))
"""


def make_dataset(root: Path) -> Path:
    """Writes the 1M × 25 Dataset artifact; returns its directory."""
    import pandas as pd

    from shipyard.artifacts import infer_schema, write_dataset

    rng = np.random.default_rng(0)
    data = {f"n{i}": rng.normal(i, 1 + i / 10, ROWS) for i in range(20)}
    for i in range(5):
        data[f"c{i}"] = rng.choice([f"level-{k}" for k in range(8 + i)], ROWS)
    df = pd.DataFrame(data)
    path = root / "dataset"
    write_dataset(path, df, infer_schema(df, label=None))
    return path


def main(cycles: int = 3) -> dict:
    """Runs the benchmark and returns its result dict."""
    import pandas as pd

    from components.validate_data import core

    work = Path(tempfile.mkdtemp(prefix="shipyard-validate-"))
    try:
        dataset = make_dataset(work)
        read_s, validate_s = [], []
        for i in range(cycles):
            t0 = time.perf_counter()
            pd.read_parquet(dataset / "data.parquet")
            read_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            core.validate(
                str(dataset),
                str(work / f"schema{i}"),
                str(work / f"v{i}.json"),
                str(work / f"v{i}.md"),
                core.ValidateConfig(model_ready=False),
            )
            validate_s.append(time.perf_counter() - t0)
        ratios = [r / v for r, v in zip(read_s, validate_s, strict=True)]  # (rows/validate_s) / (rows/read_s)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE_RSS,
                str(dataset),
                str(work / "rss-schema"),
                str(work / "rss.json"),
                str(work / "rss.md"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rss = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_bytes = rss["peak_kib"] * 1024
    result = {
        "rows": ROWS,
        "columns": 25,
        "cycles": cycles,
        "read_parquet_s": [round(x, 3) for x in read_s],
        "validate_s": [round(x, 3) for x in validate_s],
        "throughput_ratio": round(statistics.median(ratios), 3),
        "frame_mib": round(rss["frame_bytes"] / 2**20, 1),
        "peak_rss_mib": round(peak_bytes / 2**20, 1),
        "memory_ratio": round(peak_bytes / rss["frame_bytes"], 2),
    }
    save("validation", result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
