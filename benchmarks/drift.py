"""Drift check: ours (stored reference profile, numpy/scipy) vs Evidently's DataDriftPreset.

Data as in PEERS.md: 100,000 rows × (20 numeric + 5 string categorical), 5 columns shifted in the
current frame. Evidently 0.7.23 runs in its own virtual environment (its pandas must be < 3 and
its dependencies are not ours); the benchmark creates it on first use under benchmarks/.envs/.
Both sides read the same Parquet files; each cycle times one Evidently ``Report.run`` (import
excluded) and one of our checks (profile built once beforehand, timed separately), alternating.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save

ROWS, NUMERIC, CATEGORICAL = 100_000, 20, 5
SHIFTED = ["n0", "n1", "n2", "c0", "c1"]
ENV = Path(__file__).resolve().parent / ".envs" / "evidently"
EVIDENTLY = "evidently==0.7.23"

EVIDENTLY_RUN = r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
t0 = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
seconds = time.perf_counter() - t0
columns = {}
for m in snapshot.dict()["metrics"]:
    cfg = m["config"]
    if cfg.get("type", "").endswith("ValueDrift"):
        pvalue = "p_value" in cfg["method"]
        drifted = m["value"] < cfg["threshold"] if pvalue else m["value"] >= cfg["threshold"]
        columns[cfg["column"]] = {"method": cfg["method"], "score": m["value"], "drifted": bool(drifted)}
print(json.dumps({"seconds": seconds, "columns": columns}))
"""

METHOD_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


def make_frames(seed: int = 0) -> tuple:
    """Reference and current frames; SHIFTED columns move in the current one."""
    import pandas as pd

    rng = np.random.default_rng(seed)

    def frame(shift: bool):
        data = {}
        for i in range(NUMERIC):
            moved = shift and f"n{i}" in SHIFTED
            data[f"n{i}"] = rng.normal(0.5 if moved else 0.0, 1.0 + i / 10, ROWS)
        for i in range(CATEGORICAL):
            p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.05])
            if shift and f"c{i}" in SHIFTED:
                p = p[::-1]
            data[f"c{i}"] = rng.choice([f"v{k}" for k in range(6)], ROWS, p=p)
        return pd.DataFrame(data)

    return frame(False), frame(True)


def ensure_env() -> Path:
    """Creates the Evidently venv once; returns its python."""
    python = ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", EVIDENTLY, "pandas<3"], check=True)
    return python


def main(cycles: int = 3) -> dict:
    """Runs the benchmark and returns its result dict."""
    from components.drift_check import core as drift

    python = ensure_env()
    ref, cur = make_frames()
    work = Path(tempfile.mkdtemp(prefix="shipyard-drift-"))
    ref.to_parquet(work / "ref.parquet")
    cur.to_parquet(work / "cur.parquet")
    script = work / "evidently_run.py"
    script.write_text(EVIDENTLY_RUN)
    t0 = time.perf_counter()
    profile = drift.build_profile(ref, list(ref.columns))
    profile_s = time.perf_counter() - t0
    drift.check(profile, cur, drift.DriftConfig())  # warm-up: scipy's lazy imports (Evidently's import is excluded too)
    ours_s, theirs_s, ratios = [], [], []
    ours = theirs = None
    for _ in range(cycles):
        out = subprocess.run(
            [str(python), str(script), str(work / "ref.parquet"), str(work / "cur.parquet")],
            check=True,
            capture_output=True,
            text=True,
        )
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        ours = drift.check(profile, cur, drift.DriftConfig())
        ours_s.append(time.perf_counter() - t0)
        theirs_s.append(theirs["seconds"])
        ratios.append(ours_s[-1] / theirs_s[-1])
    assert ours is not None and theirs is not None
    mine = {c["column"]: c for c in ours["columns"]}
    disagreements = [
        name
        for name, col in theirs["columns"].items()
        if col["drifted"] != mine[name]["drifted"] or METHOD_NAMES[col["method"]] != mine[name]["method"]
    ]
    max_score_gap = max(abs(col["score"] - mine[name]["score"]) for name, col in theirs["columns"].items())
    result = {
        "rows": ROWS,
        "columns": NUMERIC + CATEGORICAL,
        "shifted": SHIFTED,
        "cycles": cycles,
        "ours_check_s": [round(x, 4) for x in ours_s],
        "evidently_run_s": [round(x, 3) for x in theirs_s],
        "ours_profile_s": round(profile_s, 3),
        "ratio_ours_over_evidently": round(statistics.median(ratios), 4),
        "ratio_incl_profile": round((statistics.median(ours_s) + profile_s) / statistics.median(theirs_s), 4),
        "same_decisions": not disagreements,
        "disagreements": disagreements,
        "drifted_columns": sorted(ours["drifted_columns"]),
        "max_abs_score_gap": max_score_gap,
    }
    save("drift", result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
