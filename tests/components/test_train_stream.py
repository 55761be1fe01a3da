"""The MLP's rows streamed from Parquet row groups, and the MLP trained by two DDP processes.

Streamed and in-memory runs share one epoch plan, so the same seed gives the same weights either
way, whatever the file's row-group layout; a streamed run resumes mid-epoch like an in-memory
one. ``processes: 2`` on CPU launches ``torchrun`` with two gloo processes: the result has the
single-process model's structure and artifact, and a loss close to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from components.train_model import checkpoint, core, distributed, stream
from shipyard.artifacts import DATA_FILE, infer_schema, read_model_manifest, write_dataset
from shipyard.errors import ConfigError, TrainingDivergedError

SMALL = {
    "width": 16,
    "depth": 1,
    "ensemble": 2,
    "max_epochs": 3,
    "min_epochs": 3,
    "patience": 3,
    "batch_size": 64,
    "device": "cpu",  # one process even where several GPUs are visible
}


# --- the epoch plan --------------------------------------------------------------------------------


def test_a_table_of_one_block_is_a_plain_permutation():
    order, bounds = stream.epoch_plan(500, torch.Generator().manual_seed(4), block_rows=1000)
    assert bounds == [500] and torch.equal(order, torch.randperm(500, generator=torch.Generator().manual_seed(4)))


def test_windows_hold_whole_blocks_and_batches_never_cross_them():
    n, block = 2_345, 100
    order, bounds = stream.epoch_plan(n, torch.Generator().manual_seed(0), block_rows=block)
    assert sorted(order.tolist()) == list(range(n)) and sum(bounds) == n
    assert len(bounds) == -(-24 // stream.WINDOW_BLOCKS)  # 24 blocks, four to a window
    batches = stream.plan_batches(order, bounds, 64)
    at = 0
    for size in bounds:
        window = order[at : at + size]
        blocks, counts = np.unique((window // block).numpy(), return_counts=True)
        assert len(blocks) <= stream.WINDOW_BLOCKS  # and every block whole:
        assert counts.tolist() == [min(block, n - b * block) for b in blocks.tolist()]
        at += size
    edges = np.cumsum(bounds).tolist()
    seen = 0
    for b in batches:
        start = seen
        seen += len(b)
        assert not any(start < e < seen for e in edges), "a batch crosses a window"
    assert seen == n


# --- streamed = in memory ------------------------------------------------------------------------


def _mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    city = rng.choice(["oslo", "rome", "lima", "kyiv"], n).astype(object)
    city[rng.random(n) < 0.05] = None
    logit = a + np.nan_to_num(b) + (city == "rome") * 1.5
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"a": a, "b": b, "city": city, "y": y})


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Train and validation Dataset artifacts of a mixed table (numbers with nulls, strings)."""
    root = tmp_path_factory.mktemp("stream")
    train, val = _mixed(3_000, 0), _mixed(700, 1)
    schema = infer_schema(train, label="y")
    write_dataset(str(root / "train"), train, schema)
    write_dataset(str(root / "val"), val, schema)
    # the same rows in small row groups that no block boundary lines up with
    for name, frame in (("train", train), ("val", val)):
        (root / f"{name}-groups").mkdir()
        (root / f"{name}-groups" / "schema.json").write_bytes((root / name / "schema.json").read_bytes())
        frame.to_parquet(root / f"{name}-groups" / DATA_FILE, index=False, row_group_size=97)
    return root


def _load(root, suffix=""):
    tr = core.load_split(str(root / f"train{suffix}"))
    return tr, core.load_split(str(root / f"val{suffix}"), tr.task, tr.label_names)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("layout", ["", "-groups"])
def test_streamed_rows_train_the_same_weights_as_the_in_memory_matrix(splits, layout):
    tr, va = _load(splits, layout)
    config = {**SMALL, "shuffle_block_rows": 256, "dropout": 0.2, "seed": 5}
    memory, mem_info = core.fit_mlp(tr, va, core.TrainConfig.from_dict({**config, "stream": "off"}))
    streamed, info = core.fit_mlp(tr, va, core.TrainConfig.from_dict({**config, "stream": "on", "loader_workers": 2}))
    assert info["loader"] == {"streamed": True, "workers": 2, "block_rows": 256} and "loader" not in mem_info
    _same_weights(memory, streamed)
    assert [h["val_loss"] for h in info["history"]] == [h["val_loss"] for h in mem_info["history"]]
    assert info["untrained_codes"] == mem_info["untrained_codes"]


def test_auto_streams_only_above_the_size_bound(splits):
    tr, va = _load(splits)
    assert not core.mlp_inputs(tr, va, core.TrainConfig()).streamed
    assert core.mlp_inputs(tr, va, core.TrainConfig(stream_above_mb=0.01)).streamed
    assert not core.mlp_inputs(tr, va).streamed  # tuning keeps its matrix


def test_stream_on_needs_a_split_read_from_a_dataset(splits):
    tr, va = _load(splits)
    bare = core.TabularData(tr.x, tr.y, tr.feature_names, tr.label, tr.label_names, tr.task, tr.input_schema, tr.frame)
    with pytest.raises(ConfigError, match="stream 'on' needs splits read from Dataset artifacts"):
        core.mlp_inputs(bare, va, core.TrainConfig(stream="on"))


def test_a_streamed_run_resumes_mid_epoch_to_the_same_weights(splits, tmp_path):
    tr, va = _load(splits)
    config = core.TrainConfig.from_dict(
        {**SMALL, "stream": "on", "loader_workers": 1, "shuffle_block_rows": 256, "checkpoint_every_steps": 7}
    )
    whole, _ = core.fit_mlp(tr, va, config)

    class Preempted(Exception):
        pass

    def preempt(epoch: int, loss: float) -> None:
        if epoch == 1:
            raise Preempted

    store = checkpoint.CheckpointStore(str(tmp_path), keep=100)
    with pytest.raises(Preempted):
        core.fit_mlp(tr, va, config, on_epoch=preempt, checkpoints=store)
    steps = sorted(int(p.name[5:17]) for p in tmp_path.iterdir())
    assert steps[-1] % 7 == 0  # the newest one is a step checkpoint inside epoch 1
    resumed, info = core.fit_mlp(tr, va, config, checkpoints=checkpoint.CheckpointStore(str(tmp_path), keep=100))
    assert info["resumed_from"].endswith(checkpoint.checkpoint_name(steps[-1]))
    _same_weights(whole, resumed)


def test_the_train_step_streams_and_removes_its_checkpoints_once_it_succeeds(splits, tmp_path):
    config = {**SMALL, "families": ["mlp"], "candidate": "mlp", "selection": "validation", "stream": "on"}
    ckpt = tmp_path / "ckpt"
    summary = core.train(
        str(splits / "train"),
        str(splits / "val"),
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**config, "checkpoint_uri": str(ckpt)}),
    )
    training = read_model_manifest(str(tmp_path / "model")).details["training"]
    assert training["loader"]["streamed"] is True and summary["candidate"] == "mlp"
    assert ckpt.is_dir() and list(ckpt.iterdir()) == []  # the run's own directory is gone


def test_a_split_reads_any_range_across_row_groups(splits):
    tr, _ = _load(splits, "-groups")
    prep = core.fit_preprocessing(tr, "mlp")
    whole = core.encode(prep, tr)
    split = stream.ParquetSplit(tr.source, tr.feature_names, prep, "train split")
    assert len(split) == len(tr) and split.starts[1] == 97
    np.testing.assert_array_equal(split.read(90, 300), whole[90:300])
    rows = np.array([0, 5, 96, 97, 1000, 2999])
    np.testing.assert_array_equal(split.take(rows, block_rows=256), whole[rows])
    np.testing.assert_array_equal(np.concatenate(list(split.chunks(1000))), whole)


def test_a_numeric_split_is_read_straight_from_arrow_as_pandas_would_cast_it(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    prep = core.fit_preprocessing(tr, "mlp")
    assert prep.identity
    split = stream.ParquetSplit(tr.source, tr.feature_names, prep, "train split")
    np.testing.assert_array_equal(np.concatenate(list(split.chunks(100))), core.encode(prep, tr))


# --- two DDP processes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_model_and_artifact(baseline_artifacts, tmp_path):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    config = {**SMALL, "max_epochs": 8, "min_epochs": 8, "patience": 8, "device": "cpu", "dropout": 0.0}
    single, one = core.fit_mlp(tr, va, core.TrainConfig.from_dict(config))
    epochs: list[dict] = []
    ddp, two = core.fit_mlp(tr, va, core.TrainConfig.from_dict({**config, "processes": 2}), epoch_log=epochs.append)
    assert two["processes"] == 2 and "processes" not in one
    assert [e["epoch"] for e in epochs] == list(range(8)) and epochs == two["history"]  # each once, in order
    assert two["architecture"] == one["architecture"] and two["epochs"] == one["epochs"] == 8
    assert {k: v.shape for k, v in ddp.state_dict().items()} == {k: v.shape for k, v in single.state_dict().items()}
    assert len(two["history"]) == 8
    # each process takes half of every batch: the same updates up to how the halves' means combine
    assert abs(two["best_val_loss"] - one["best_val_loss"]) <= 0.1 * one["best_val_loss"] + 0.02
    for model, info, name in ((single, one, "one"), (ddp, two, "two")):
        core.save_torch_model(str(tmp_path / name), model, tr, info["architecture"], {}, {"family": "mlp"}, None)
    first, second = read_model_manifest(str(tmp_path / "one")), read_model_manifest(str(tmp_path / "two"))
    assert first.format == second.format == "torchscript" and set(first.files) == set(second.files)


def test_the_epoch_follower_passes_on_complete_lines_once_and_waits_for_a_half_written_one(tmp_path):
    path, seen = tmp_path / "epochs.jsonl", []
    follow = distributed._EpochFollower(path, seen.append)
    follow()  # no file yet
    path.write_text('{"epoch": 0, "val_loss": 0.5}\n{"epoch": 1, "val_')
    follow()
    assert seen == [{"epoch": 0, "val_loss": 0.5}]
    with open(path, "a") as f:
        f.write('loss": 0.25}\n')
    follow()
    follow()
    assert seen == [{"epoch": 0, "val_loss": 0.5}, {"epoch": 1, "val_loss": 0.25}]


@pytest.mark.slow
def test_a_diverging_ddp_run_raises_the_typed_error(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    config = core.TrainConfig.from_dict({**SMALL, "device": "cpu", "processes": 2, "lr": 1e30})
    with pytest.raises(TrainingDivergedError, match="loss became"):
        core.fit_mlp(tr, va, config)


def test_processes_beyond_the_gpus_or_with_a_tuner_are_refused(baseline_artifacts):
    from components.train_model import distributed

    if not torch.cuda.is_available():
        assert distributed.processes(0, torch.device("cpu")) == 1
        assert distributed.processes(3, torch.device("cpu")) == 3
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    with pytest.raises(ConfigError, match="cannot report each epoch to a tuner"):
        core.fit_mlp(tr, va, core.TrainConfig(device="cpu", processes=2), on_epoch=lambda e, v: None)
