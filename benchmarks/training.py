"""The MLP's training costs, each measured side by side (interleaved) in one run.

``checkpoint``: time per epoch with a checkpoint at every epoch's end, and every 100 optimizer
steps, ÷ without. Each case is one whole fit of the same MLP on the same generated table (fixed
epochs: early stopping off), so the figure includes writing, fsyncing and pruning the
checkpoints; a checkpoint holds the weights, AdamW's two moments, the best epoch's weights and the
RNG and data-order state.

``stream``: rows per second of one epoch's batches streamed from the split's Parquet row groups by
2 DataLoader workers (read, encoded, handed over in plan order) ÷ rows per second of indexing
the in-memory encoded tensor with the same plan (no training in either: the loader alone).

``ddp``: the training loop's seconds per optimizer step with 2 gloo processes (``processes: 2``,
each taking half of every batch) ÷ with one process, one torch thread per process (launch
excluded: the summary's ``train_seconds``; the launch is reported apart).

Run ``python -m benchmarks.training [--only checkpoint|stream|ddp]`` (``--quick``: one cycle,
fewer rows).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import interleaved, per_cycle_ratios, save, wall

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


#: Rows of the loader benchmark: enough that starting the workers (once per epoch) is amortized, as on
#: the tables streaming is for (at 400,000 rows the two forks cost more than the epoch's reads).
STREAM_ROWS, STREAM_BATCH = 2_000_000, 1024


def stream_main(cycles: int = 3, rows: int = STREAM_ROWS) -> dict[str, Any]:
    """Streamed ÷ in-memory rows per second of one epoch's batches (see the module docstring)."""
    import torch

    from components.train_model import core, stream
    from components.train_model.loop import _epoch_batches

    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-stream-"))
    train_dir, val_dir = make_splits(work, rows)
    tr = core.load_split(train_dir)
    va = core.load_split(val_dir, tr.task, tr.label_names)
    device = torch.device("cpu")
    torch.set_num_threads(1)  # as each worker has
    memory = core.mlp_inputs(tr, va, core.TrainConfig(stream="off"))
    streamed = core.mlp_inputs(tr, va, core.TrainConfig(stream="on"))
    xt = torch.from_numpy(memory.train_x)

    def epoch(inputs: Any, x: torch.Tensor | None, workers: int) -> float:
        config = core.TrainConfig(stream="on" if x is None else "off", loader_workers=workers)
        order, bounds = stream.epoch_plan(rows, torch.Generator().manual_seed(0), config.shuffle_block_rows)
        batches = stream.plan_batches(order, bounds, STREAM_BATCH)
        t0 = time.perf_counter()
        seen = sum(
            len(b) for _, b in _epoch_batches(inputs, x, order, bounds, STREAM_BATCH, batches, 0, config, device)
        )
        assert seen == rows
        return rows / (time.perf_counter() - t0)

    cases = {"memory": lambda: epoch(memory, xt, 0), "stream_2_workers": lambda: epoch(streamed, None, 2)}
    cases["stream_0_workers"] = lambda: epoch(streamed, None, 0)
    epoch(streamed, None, 2)  # warm-up: the page cache and the first fork
    rates = interleaved(cycles, **cases)
    result = {
        "rows": rows,
        "features": FEATURES,
        "batch": STREAM_BATCH,
        "row_group_rows": int(streamed.train_stream.starts[1]) if streamed.train_stream else 0,
        "cycles": cycles,
        "rows_per_s": {k: [round(v) for v in vs] for k, vs in rates.items()},
        "ratio_2_workers": round(statistics.median(per_cycle_ratios(rates, "stream_2_workers", "memory")), 4),
        "ratio_0_workers": round(statistics.median(per_cycle_ratios(rates, "stream_0_workers", "memory")), 4),
    }
    shutil.rmtree(work, ignore_errors=True)
    save("training_stream", result)
    return result


DDP_ROWS, DDP_EPOCHS = 40_000, 2


def ddp_main(cycles: int = 3, rows: int = DDP_ROWS) -> dict[str, Any]:
    """Seconds per optimizer step, 2 gloo processes ÷ 1 (see the module docstring)."""
    import os

    from components.train_model import core

    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-ddp-"))
    train_dir, val_dir = make_splits(work, rows)
    tr = core.load_split(train_dir)
    va = core.load_split(val_dir, tr.task, tr.label_names)
    base = {**MLP, "max_epochs": DDP_EPOCHS, "min_epochs": DDP_EPOCHS, "patience": DDP_EPOCHS}
    cpus = os.cpu_count() or 1
    launches: list[float] = []

    def case(processes: int) -> float:
        config = core.TrainConfig.from_dict({**base, "processes": processes})
        t0 = time.perf_counter()
        _, info = core.fit_mlp(tr, va, config)
        if processes > 1:
            launches.append(time.perf_counter() - t0 - info["train_seconds"])
        steps = info["epochs"] * -(-rows // MLP["batch_size"])
        return float(info["train_seconds"]) / steps

    times = interleaved(cycles, one=lambda: case(1), two=lambda: case(2))
    result = {
        "rows": rows,
        "epochs": DDP_EPOCHS,
        "mlp": MLP,
        "cpus": cpus,
        "cycles": cycles,
        "step_ms": {k: [round(1000 * x, 3) for x in v] for k, v in times.items()},
        "launch_s": [round(x, 2) for x in launches],
        "ratio_two_over_one": round(statistics.median(per_cycle_ratios(times, "two", "one")), 4),
    }
    shutil.rmtree(work, ignore_errors=True)
    save("training_ddp", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one cycle, fewer rows")
    parser.add_argument("--only", choices=["checkpoint", "stream", "ddp"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["checkpoint", "stream", "ddp"])
    if "checkpoint" in only:
        r = main(cycles=1, rows=8000) if args.quick else main()
        print(f"{r['rows']} rows, {r['steps_per_epoch']} steps per epoch, checkpoint of {r['checkpoint_bytes']} bytes")
        print("epoch time with checkpoints ÷ without (median of per-cycle ratios):")
        print(f"  every epoch's end: {r['ratio_every_epoch']:.4f}  (target ≤ 1.05)")
        print(f"  every 100 steps:   {r['ratio_every_100_steps']:.4f}")
    if "stream" in only:
        r = stream_main(cycles=1, rows=400_000) if args.quick else stream_main()
        print(f"loader: {r['rows']} rows × {r['features']}, batch {r['batch']}, row groups of {r['row_group_rows']}")
        print(f"  rows/s per cycle: {r['rows_per_s']}")
        print(f"  streamed (2 workers) ÷ in-memory indexing: {r['ratio_2_workers']:.4f}  (target ≥ 0.5)")
        print(f"  streamed (no worker) ÷ in-memory indexing: {r['ratio_0_workers']:.4f}")
    if "ddp" in only:
        r = ddp_main(cycles=1, rows=8000) if args.quick else ddp_main()
        print(f"ddp: {r['rows']} rows, {r['epochs']} epochs, {r['cpus']} CPUs; step ms {r['step_ms']}")
        print(f"  launch seconds: {r['launch_s']}")
        print(f"  2 gloo processes ÷ 1 process, seconds per step: {r['ratio_two_over_one']:.4f}")
