"""What checkpointing costs the MLP's training: time per epoch with a checkpoint at every epoch's end,
and every 100 optimizer steps, ÷ without, measured side by side (interleaved) in one run.

Each case is one whole fit of the same MLP on the same generated table (fixed epochs: early
stopping off), so the figure includes writing, fsyncing and pruning the checkpoints; a checkpoint
holds the weights, AdamW's two moments, the best epoch's weights and the RNG and data-order state.
Run ``python -m benchmarks.training`` (``--quick``: one cycle, fewer rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import per_cycle_ratios, save, wall

ROWS, FEATURES, EPOCHS = 40_000, 32, 4
MLP = {"width": 256, "depth": 3, "ensemble": 8, "batch_size": 256, "device": "cpu", "num_threads": 1}


def make_splits(root: Path, rows: int) -> tuple[str, str]:
    """A generated binary table written as train and validation Dataset artifacts."""
    import pandas as pd
    from sklearn.datasets import make_classification

    from shipyard.artifacts import infer_schema, write_dataset

    x, y = make_classification(rows + rows // 4, FEATURES, n_informative=12, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)]).assign(y=y)
    out = []
    for name, part in (("train", frame.iloc[:rows]), ("val", frame.iloc[rows:])):
        write_dataset(str(root / name), part.reset_index(drop=True), infer_schema(part, label="y"))
        out.append(str(root / name))
    return out[0], out[1]


def main(cycles: int = 3, rows: int = ROWS) -> dict[str, Any]:
    from components.train_model import checkpoint, core

    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-train-"))
    train_dir, val_dir = make_splits(work, rows)
    tr = core.load_split(train_dir)
    va = core.load_split(val_dir, tr.task, tr.label_names)
    inputs = core.mlp_inputs(tr, va)
    base = {**MLP, "max_epochs": EPOCHS, "min_epochs": EPOCHS, "patience": EPOCHS}
    sizes: dict[str, int] = {}

    def case(name: str, every_steps: int | None) -> float:
        config = core.TrainConfig.from_dict({**base, "checkpoint_every_steps": every_steps or 0})
        store = None
        if every_steps is not None:
            store = checkpoint.CheckpointStore(str(work / "ckpt" / name / str(len(times[name]))))
        seconds = wall(lambda: core.fit_mlp(tr, va, config, inputs=inputs, checkpoints=store))
        if store is not None:
            sizes[name] = max(p.stat().st_size for p in Path(store.uri).iterdir())
        return seconds / EPOCHS

    cases = {"none": None, "every_epoch": 0, "every_100_steps": 100}
    times: dict[str, list[float]] = {name: [] for name in cases}
    case("none", None)  # warm-up: first-call allocations and lazy imports
    for _ in range(cycles):
        for name, every in cases.items():
            times[name].append(case(name, every))
    steps_per_epoch = -(-rows // MLP["batch_size"])
    result = {
        "rows": rows,
        "features": FEATURES,
        "epochs": EPOCHS,
        "steps_per_epoch": steps_per_epoch,
        "mlp": MLP,
        "cycles": cycles,
        "epoch_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "checkpoint_bytes": sizes,
        "ratio_every_epoch": round(statistics.median(per_cycle_ratios(times, "every_epoch", "none")), 4),
        "ratio_every_100_steps": round(statistics.median(per_cycle_ratios(times, "every_100_steps", "none")), 4),
    }
    save("training", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one cycle on 8,000 rows")
    args = parser.parse_args()
    r = main(cycles=1, rows=8000) if args.quick else main()
    print(f"{r['rows']} rows, {r['steps_per_epoch']} steps per epoch, checkpoint of {r['checkpoint_bytes']} bytes")
    print("epoch time with checkpoints ÷ without (median of per-cycle ratios):")
    print(f"  every epoch's end: {r['ratio_every_epoch']:.4f}  (target ≤ 1.05)")
    print(f"  every 100 steps:   {r['ratio_every_100_steps']:.4f}")
