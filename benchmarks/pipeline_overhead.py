"""Orchestration overhead: the flagship's kfp.local wall time ÷ the sum of its stages' own compute.

- **pipeline**: ``shipyard run train_and_deploy --local`` in a fresh process (every step a
  subprocess, as kfp.local runs them), wall time.
- **compute**: the same stages' ``core`` functions called in one warm process (frameworks
  imported beforehand), same data, parameters and seed; the sum of their times.

The two alternate within each cycle; the figure is the median of the per-cycle ratios. What the
ratio measures beyond 1: subprocess start-up, re-importing torch/mlflow/kserve in every step,
KFP's executor and artifact bookkeeping.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import interleaved, per_cycle_ratios, save, wall

N_TRIALS = 6


def run_pipeline(out: Path) -> float:
    """Wall seconds of one local pipeline run."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "shipyard.cli",
        "run",
        "train_and_deploy",
        "--local",
        "--output",
        str(out),
        "--set",
        f'tune={{"n_trials": {N_TRIALS}}}',
    ]

    def once() -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pipeline run failed: {proc.stderr.strip()[-2000:]}")

    return wall(once)


def run_cores(out: Path) -> dict[str, float]:
    """Seconds of each stage's core call, in this (warm) process."""
    from components.deploy_model import core as deploy
    from components.evaluate_model import core as evaluate
    from components.ingest_data import core as ingest
    from components.quantize_model import core as quantize
    from components.record_outcome import core as record
    from components.register_model import core as register
    from components.split_data import core as split
    from components.train_model import core as train
    from components.tune_hyperparams import core as tune
    from components.validate_data import core as validate

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    p = {k: str(out / k) for k in ("ds", "schema", "train", "val", "test", "study", "model", "baseline", "q")}
    uri = f"sqlite:///{out / 'mlflow.db'}"
    t: dict[str, float] = {}
    t["ingest"] = wall(lambda: ingest.ingest("sklearn:breast_cancer", p["ds"], ingest.IngestConfig()))
    t["validate"] = wall(
        lambda: validate.validate(
            p["ds"], p["schema"], str(out / "v.json"), str(out / "v.md"), validate.ValidateConfig()
        )
    )
    t["split"] = wall(lambda: split.split(p["ds"], p["train"], p["val"], p["test"], split.SplitConfig()))
    best: dict = {}
    t["tune"] = wall(
        lambda: best.update(
            tune.tune(p["train"], p["val"], p["study"], str(out / "t.md"), tune.TuneConfig(n_trials=N_TRIALS))
        )
    )
    t["train"] = wall(
        lambda: train.train(
            p["train"], p["val"], p["model"], p["baseline"], train.TrainConfig.from_dict(best["best_params"])
        )
    )
    t["quantize"] = wall(
        lambda: quantize.quantize(
            p["model"], p["val"], p["q"], str(out / "q.json"), str(out / "q.md"), quantize.QuantizeConfig()
        )
    )
    ev: dict = {}
    t["evaluate"] = wall(
        lambda: ev.update(
            evaluate.evaluate(
                p["q"], p["test"], str(out / "e.json"), str(out / "e.md"), evaluate.EvalConfig(), p["baseline"]
            )
        )
    )
    t["register"] = wall(lambda: register.register(p["q"], "bench", str(out / "e.json"), ev["blessed"], uri))
    t["deploy"] = wall(
        lambda: deploy.deploy(
            p["q"],
            p["q"],
            p["test"],
            "bench",
            str(out / "deployment"),
            str(out / "d.md"),
            deploy.DeployConfig(target="local"),
            evaluation_json=str(out / "e.json"),
        )
    )
    t["record"] = wall(lambda: record.record("SUCCEEDED", "bench", "bench", "", "bench", uri, str(out / "o.json")))
    return t


def main(cycles: int = 3) -> dict:
    """Runs the benchmark and returns its result dict."""
    import kserve  # noqa: F401 - warm every framework so `compute` is the stages' own work
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import torch  # noqa: F401

    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    stages: list[dict[str, float]] = []
    run_cores(work / "warmup")

    def compute() -> float:
        # A new directory each cycle: MLflow keeps its SQLite engine per URI for the process.
        stages.append(run_cores(work / f"cores-{len(stages)}"))
        return sum(stages[-1].values())

    try:
        times = interleaved(cycles, pipeline=lambda: run_pipeline(work / "pipeline"), compute=compute)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = per_cycle_ratios(times, "pipeline", "compute")
    result = {
        "cycles": cycles,
        "n_trials": N_TRIALS,
        "pipeline_s": [round(x, 2) for x in times["pipeline"]],
        "compute_s": [round(x, 2) for x in times["compute"]],
        "stage_compute_s_median": {k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]},
        "overhead_ratio": round(statistics.median(ratios), 3),
        "overhead_ratio_per_cycle": [round(r, 3) for r in ratios],
    }
    save("pipeline_overhead", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
