"""Checkpoints and resume of the MLP: atomic files, damaged ones skipped, a SIGKILLed run resumed
to the same weights (on a local path and under ``gs://``), divergence, mixed precision, and
degenerate labels refused up front."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from components.train_model import checkpoint, core
from shipyard import storage
from shipyard.artifacts import infer_schema, read_model_manifest, write_dataset
from shipyard.errors import ConfigError, DataValidationError, StorageError, TrainingDivergedError

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"width": 16, "depth": 1, "ensemble": 2, "max_epochs": 4, "min_epochs": 4, "patience": 4}
#: Long enough that a kill after the first checkpoint lands well before the end (about 300 steps).
LONG = {"width": 32, "depth": 2, "ensemble": 4, "max_epochs": 30, "min_epochs": 30, "patience": 30, "batch_size": 32}


# --- the store -----------------------------------------------------------------------------------


def test_a_checkpoint_round_trips_and_only_the_newest_are_kept(tmp_path):
    store = checkpoint.CheckpointStore(str(tmp_path / "ck"), keep=2)
    for step in (3, 6, 9):
        store.save(step, {"step": step, "w": torch.full((4,), float(step))})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [checkpoint.checkpoint_name(s) for s in (6, 9)]
    uri, state = store.latest()
    assert uri.endswith(checkpoint.checkpoint_name(9)) and state["step"] == 9
    assert torch.equal(state["w"], torch.full((4,), 9.0))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) - 7], "truncated checkpoint"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "sha256 does not match"),
        (lambda b: b"x" * len(b), "not a Shipyard checkpoint"),
    ],
)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, capsys, damage, message):
    store = checkpoint.CheckpointStore(str(tmp_path), keep=3)
    store.save(1, {"step": 1})
    newest = Path(store.save(2, {"step": 2}))
    newest.write_bytes(damage(newest.read_bytes()))
    with pytest.raises(StorageError, match=message):
        checkpoint.decode(newest.read_bytes(), str(newest))
    uri, state = store.latest()
    assert state["step"] == 1 and uri.endswith(checkpoint.checkpoint_name(1))
    assert f"skipping checkpoint {newest}" in capsys.readouterr().err and newest.exists()


def test_no_checkpoint_and_a_killed_writers_temporary_file(tmp_path, capsys):
    (tmp_path / ".ckpt-000000000004.pt.abc.tmp").write_bytes(b"half")
    store = checkpoint.CheckpointStore(str(tmp_path))
    assert store.latest() is None and list(tmp_path.iterdir()) == []
    assert "removing the unfinished checkpoint" in capsys.readouterr().err


def test_a_scheme_other_than_gs_is_refused(tmp_path):
    with pytest.raises(StorageError, match="s3:// scheme is not supported"):
        checkpoint.CheckpointStore("s3://bucket/ckpt")


# --- resume is exact -------------------------------------------------------------------------------


def _fit(baseline_artifacts, config: dict, store=None):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    return core.fit_mlp(tr, va, core.TrainConfig.from_dict(config), checkpoints=store)


def test_resuming_from_a_mid_epoch_checkpoint_gives_the_same_weights(baseline_artifacts, tmp_path):
    config = {**SMALL, "checkpoint_every_steps": 5, "seed": 3, "dropout": 0.2}
    whole, _ = _fit(baseline_artifacts, config)
    store = checkpoint.CheckpointStore(str(tmp_path), keep=100)
    _fit(baseline_artifacts, config, store)
    names = sorted(p.name for p in tmp_path.iterdir())
    mid = [n for n in names if int(n[5:17]) % 5 == 0][1]  # a step checkpoint inside an epoch
    for later in names[names.index(mid) + 1 :]:
        (tmp_path / later).unlink()
    resumed, info = _fit(baseline_artifacts, config, checkpoint.CheckpointStore(str(tmp_path), keep=100))
    assert info["resumed_from"].endswith(mid)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_finished_run_resumes_to_its_result_without_training(baseline_artifacts, tmp_path):
    store = checkpoint.CheckpointStore(str(tmp_path))
    first, info = _fit(baseline_artifacts, SMALL, store)
    again, info2 = _fit(baseline_artifacts, SMALL, checkpoint.CheckpointStore(str(tmp_path)))
    assert info2["epochs"] == info["epochs"] and info2["best_epoch"] == info["best_epoch"] and "resumed_from" in info2
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())


_CHILD = """
import json, sys
from components.train_model import core
train_dir, val_dir, out, config = sys.argv[1:5]
summary = core.train(train_dir, val_dir, out + "/model", out + "/baseline",
                     core.TrainConfig.from_dict(json.loads(config)))
print(json.dumps({"epochs": summary.get("epochs")}))
"""


def _start(baseline_artifacts, out: Path, config: dict, stall: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(checkpoint.STALL_ENV, None)
    if stall:
        env[checkpoint.STALL_ENV] = str(stall)
    args = [str(baseline_artifacts["train"]), str(baseline_artifacts["val"]), str(out), json.dumps(config)]
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 240.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the training process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {limit:.0f} s")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_a_run_sigkilled_mid_epoch_and_mid_write_resumes_to_the_uninterrupted_artifact(baseline_artifacts, tmp_path):
    base = {**LONG, "families": ["mlp"], "candidate": "mlp", "selection": "validation", "device": "cpu"}
    whole = tmp_path / "whole"
    proc = _start(baseline_artifacts, whole, base)
    proc.communicate(timeout=600)
    assert proc.returncode == 0

    ckpt = tmp_path / "ckpt"
    config = {**base, "checkpoint_uri": str(ckpt), "checkpoint_every_steps": 7, "checkpoint_keep": 3}
    out = tmp_path / "killed"

    def files(pattern: str) -> list[Path]:
        return sorted(ckpt.glob(f"*/{pattern}"))

    proc = _start(baseline_artifacts, out, config)  # 1: killed while training, after its second checkpoint
    _wait_for(lambda: len(files("ckpt-*.pt")) >= 2, proc, "a second checkpoint")
    _kill(proc)
    done = files("ckpt-*.pt")[-1].name
    proc = _start(baseline_artifacts, out, config, stall=120)  # 2: killed half-way through writing one
    _wait_for(lambda: bool(files(".ckpt-*.tmp")), proc, "a checkpoint being written")
    _kill(proc)
    assert files(".ckpt-*.tmp") and not (out / "model").exists()
    proc = _start(baseline_artifacts, out, config)  # 3: runs to the end
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert "removing the unfinished checkpoint" in stderr.decode()
    assert "resuming the mlp from" in stdout.decode() + stderr.decode()
    assert not files("*ckpt-*")  # the step succeeded: no retry will resume from them

    a, b = read_model_manifest(whole / "model"), read_model_manifest(out / "model")
    assert a.files[core.STATE_DICT_FILE] == b.files[core.STATE_DICT_FILE]  # weights.pt: byte for byte
    # model.pt (TorchScript): the same tensors byte for byte and the same answers; torch writes a
    # random serialization id and its generated code in an order that varies between processes.
    assert _torchscript_tensors(whole / "model") == _torchscript_tensors(out / "model")
    x = torch.from_numpy(core.load_split(str(baseline_artifacts["val"])).x)
    scores = [torch.jit.load(str(d / "model" / core.TORCHSCRIPT_FILE))(x) for d in (whole, out)]
    assert torch.equal(*scores)
    trained_a, trained_b = a.details["training"], b.details["training"]
    assert trained_b["resumed_from"] > done or trained_b["resumed_from"].endswith(done)
    for key in ("best_val_loss", "best_epoch", "epochs", "stopped"):
        assert trained_a[key] == trained_b[key], key
    assert a.metrics == b.metrics


def _torchscript_tensors(model_dir: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(model_dir / core.TORCHSCRIPT_FILE) as z:
        return {n.split("/", 1)[1]: z.read(n) for n in z.namelist() if "/data/" in n or n.endswith("data.pkl")}


# --- gs:// (over HTTP, against a GCS emulator) ---------------------------------------------------


@pytest.mark.serving
def test_checkpoints_under_a_gs_prefix_are_pruned_skipped_when_damaged_and_resumed_exactly(
    baseline_artifacts, gcs, tmp_path, capsys
):
    pruned = checkpoint.CheckpointStore(f"{gcs}/pruned", keep=2)
    for step in (3, 6, 9):
        pruned.save(step, {"step": step})
    assert storage.list_gcs(f"{gcs}/pruned/") == [f"{gcs}/pruned/{checkpoint.checkpoint_name(s)}" for s in (6, 9)]

    config = {**SMALL, "checkpoint_every_steps": 5, "seed": 3, "dropout": 0.2}
    whole, _ = _fit(baseline_artifacts, config)
    _fit(baseline_artifacts, config, checkpoint.CheckpointStore(f"{gcs}/ck", keep=100))
    uris = storage.list_gcs(f"{gcs}/ck/")
    steps = [int(u.rsplit("/", 1)[1][5:17]) for u in uris]
    mid = [u for u, step in zip(uris, steps, strict=True) if step % 5 == 0][1]  # a step checkpoint inside an epoch
    for later in uris[uris.index(mid) + 1 :]:
        storage.delete(later)
    # a newer checkpoint whose upload was cut short: skipped, with a warning, for the one before
    torn = tmp_path / checkpoint.checkpoint_name(steps[uris.index(mid)] + 1)
    torn.write_bytes(storage.fetch(mid, str(tmp_path / "down")).read_bytes()[:-100])
    storage.upload(torn, f"{gcs}/ck/{torn.name}")
    capsys.readouterr()

    store = checkpoint.CheckpointStore(f"{gcs}/ck", keep=100)
    resumed, info = _fit(baseline_artifacts, config, store)
    assert info["resumed_from"] == mid
    assert f"skipping checkpoint {gcs}/ck/{torn.name}" in capsys.readouterr().err
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    store.clear()
    assert storage.list_gcs(f"{gcs}/ck/") == []


@pytest.mark.serving
def test_the_train_step_checkpoints_to_gs_and_removes_them_once_it_succeeds(baseline_artifacts, gcs, tmp_path, capsys):
    config = {**SMALL, "families": ["mlp"], "candidate": "mlp", "selection": "validation", "device": "cpu"}
    splits = [str(baseline_artifacts[s]) for s in ("train", "val")]
    out = [str(tmp_path / "model"), str(tmp_path / "baseline")]
    core.train(*splits, *out, core.TrainConfig.from_dict({**config, "checkpoint_uri": f"{gcs}/jobs/"}))
    assert re.search(rf"train: mlp checkpoints in {gcs}/jobs/mlp-[0-9a-f]{{16}}\n", capsys.readouterr().err)
    assert storage.list_gcs(f"{gcs}/jobs/") == []
    assert read_model_manifest(tmp_path / "model").details["training"]["epochs"] == SMALL["max_epochs"]


# --- divergence, precision, degenerate labels ------------------------------------------------------


def test_a_loss_that_becomes_infinite_stops_training_and_keeps_the_last_good_checkpoint(baseline_artifacts, tmp_path):
    store = checkpoint.CheckpointStore(str(tmp_path), keep=5)
    with pytest.raises(TrainingDivergedError, match=r"training loss became (nan|inf) at epoch 0, step \d+; lower lr"):
        _fit(baseline_artifacts, {**SMALL, "lr": 1e30, "checkpoint_every_steps": 1}, store)
    found = store.latest()
    assert found is not None
    assert all(bool(torch.isfinite(v).all()) for v in found[1]["model"].values() if v.is_floating_point())


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused_there(baseline_artifacts):
    mlp, info = _fit(baseline_artifacts, {**SMALL, "precision": "bf16"})
    assert info["precision"] == "bf16" and np.isfinite(info["best_val_loss"]) and info["best_val_loss"] < 0.69
    assert next(mlp.parameters()).dtype == torch.float32  # the master weights stay fp32
    _, fp32 = _fit(baseline_artifacts, SMALL)
    assert fp32["precision"] == "fp32"  # auto on CPU
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device"):
        _fit(baseline_artifacts, {**SMALL, "precision": "fp16"})
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp16"):
        core.TrainConfig.from_dict({"precision": "fp8"})


@pytest.mark.parametrize(
    ("label", "task", "message"),
    [
        (["yes"] * 40, "auto", "label column 'y' has 1 distinct value"),
        ([2.5] * 40, "regression", "label column 'y' has 1 distinct value"),
    ],
)
def test_a_single_class_or_constant_target_is_refused_before_training(tmp_path, label, task, message):
    frame = pd.DataFrame({"a": np.arange(40, dtype=float), "y": label})
    for split in ("train", "val"):
        write_dataset(str(tmp_path / split), frame, infer_schema(frame, label="y"))
    with pytest.raises(DataValidationError, match=message):
        core.train(
            str(tmp_path / "train"),
            str(tmp_path / "val"),
            str(tmp_path / "model"),
            str(tmp_path / "baseline"),
            core.TrainConfig.from_dict({"task": task, "checkpoint_uri": str(tmp_path / "ckpt")}),
        )
    assert not (tmp_path / "model").exists() and not (tmp_path / "ckpt").exists()
