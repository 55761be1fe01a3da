"""The MLP's training loop: AdamW, warm-up and cosine decay, early stopping, mixed precision, and
checkpoints it resumes from bit for bit.

:func:`fit_module` trains a :class:`~components.train_model.mlp.TabularMLP` on the encoded
splits. Given a :class:`~components.train_model.checkpoint.CheckpointStore` it saves every
``checkpoint_every_steps`` steps and at each epoch's end everything the rest of the run depends
on — weights, optimizer, schedule, AMP scaler, the global and the shuffling RNG states, the
epoch's row order and the position in it, the early-stopping state — and on start resumes from the
newest intact checkpoint, so a killed run that is started again ends with the weights an
uninterrupted run would have had (on the same machine and thread count).
"""

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from components.train_model.checkpoint import CheckpointStore
from components.train_model.mlp import (
    TabularMLP,
    architecture,
    build_module,
    embedding_counts,
    fill_unseen_from_counts,
)
from components.train_model.stream import (
    CHUNK_ROWS,
    WINDOW_BLOCKS,
    ParquetSplit,
    epoch_plan,
    plan_batches,
    scaling_rows,
    window_loader,
)
from serving.preprocess import Preprocessing
from shipyard.errors import ConfigError, TrainingDivergedError

if TYPE_CHECKING:
    from components.train_model.core import TabularData, TrainConfig

#: TrainConfig.precision values.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Least seconds between two progress lines of the MLP in the step's log.
PROGRESS_EVERY_S = 10.0


def pick_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train: device 'cuda' requested but no CUDA device is available")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision the forward pass runs in: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 on a CUDA device that supports it, fp16 (with a gradient scaler) on one that
    does not, and fp32 on CPU (bf16 autocast runs on CPU too, when asked for).

    Raises:
        ConfigError: ``fp16`` on CPU (no gradient scaling there), or ``bf16`` on a GPU without it.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"train: precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if requested == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError("train: precision 'fp16' needs a CUDA device; use bf16 or fp32 on CPU")
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train: precision 'bf16' is not supported by {torch.cuda.get_device_name(device)}")
    return requested


def auto_batch_size(rows: int) -> int:
    """A power of two near ``rows / 32``, in 32 … 1024 (a few dozen steps per epoch on small data)."""
    return int(min(1024, max(32, 2 ** round(math.log2(max(rows, 1) / 32)))))


@dataclasses.dataclass
class MLPInputs:
    """The MLP's fitted preprocessing and the encoded splits it trains on: in memory (``train_x``,
    ``val_x``) or streamed from their Parquet files (``train_stream``, ``val_stream``)."""

    prep: Preprocessing
    train_x: np.ndarray | None
    val_x: np.ndarray | None
    train_stream: ParquetSplit | None = None
    val_stream: ParquetSplit | None = None

    @property
    def width(self) -> int:
        """Columns of the encoded matrix."""
        return self.train_x.shape[1] if self.train_x is not None else self.prep.width

    @property
    def streamed(self) -> bool:
        return self.train_x is None


@dataclasses.dataclass(frozen=True)
class Distributed:
    """This process's place in a DDP job: its rank among ``world`` processes."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


@dataclasses.dataclass
class Progress:
    """Where a run is: what a checkpoint restores besides the weights and the optimizer.

    ``plan_state`` is the shuffling generator's state the current epoch's plan was drawn from
    (:func:`~components.train_model.stream.epoch_plan`: a few kB, where the row order itself would
    be 8 bytes a row), ``position`` the number of its batches done; ``plan_state`` is None between
    epochs. ``stopped`` is set once training has ended.
    """

    epoch: int = 0
    position: int = 0
    step: int = 0
    plan_state: torch.Tensor | None = None
    best_loss: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    stopped: str = ""


def _robust_scaling(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and the interquartile range / 1.349 (σ of a normal), falling back
    to the standard deviation and then to 1 for (near) constant columns."""
    if x.shape[1] == 0:
        return np.zeros(0, np.float32), np.ones(0, np.float32)
    q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
    return median.astype(np.float32), scale.astype(np.float32)


def _rng_states(gen: torch.Generator) -> dict[str, Any]:
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": gen.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).copy()), *map(float, np_state[2:])],
        "python": _python_state_out(random.getstate()),
    }


def _python_state_out(state: tuple) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_states(states: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    gen.set_state(states["shuffle"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def fit_module(
    train: "TabularData",
    val: "TabularData",
    inputs: MLPInputs,
    config: "TrainConfig",
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None,
    checkpoints: CheckpointStore | None = None,
    epoch_log: Callable[[dict[str, float]], None] | None = None,
    dist: Distributed | None = None,
) -> tuple[TabularMLP, dict[str, Any]]:
    """Trains the MLP (see :func:`components.train_model.core.fit_mlp`), resuming from and saving
    to ``checkpoints`` when given. ``epoch_log`` gets each epoch's figures as it ends (``epoch``,
    ``train_loss``, ``val_loss``, ``lr``, ``seconds``, ``rows_per_second``); they are also the
    summary's ``history`` (:class:`ProgressLine` prints them).

    Streamed inputs (``inputs.train_stream``) are read window by window by
    ``config.loader_workers`` DataLoader workers, with the batches the in-memory path takes
    (:mod:`components.train_model.stream`). Under ``dist`` (a DDP process group is initialized)
    every process takes its share of each batch (rows ``rank::world``) through a
    ``DistributedDataParallel`` wrapper, and all of them score the whole validation split, so
    they take the same decisions; the training loss is averaged over the processes.

    Raises:
        TrainingDivergedError: The training or validation loss became NaN or infinite (the last
            checkpoint, taken before, is kept).
    """
    torch.manual_seed(config.seed)
    task = train.task
    precision = resolve_precision(config.precision, device)
    codes = inputs.prep.code_columns()
    arch = architecture(inputs.width, task, len(train.label_names), config, codes)
    mlp = build_module(arch)
    num = mlp.num_index.numpy()
    n = len(train)
    sample = scaling_rows(n, config.seed)
    if inputs.train_x is not None:
        center, scale = _robust_scaling((inputs.train_x if sample is None else inputs.train_x[sample])[:, num])
    else:
        assert inputs.train_stream is not None
        center, scale = _robust_scaling(inputs.train_stream.take(np.arange(n) if sample is None else sample)[:, num])
    mlp.center.copy_(torch.from_numpy(center))
    mlp.scale.copy_(torch.from_numpy(scale))
    if task == "regression":
        mlp.y_mean.fill_(float(train.y.mean()))
        mlp.y_std.fill_(float(train.y.std()) or 1.0)
    mlp.to(device)

    def targets(y: np.ndarray) -> torch.Tensor:
        if task == "regression":
            return ((torch.from_numpy(y) - mlp.y_mean.cpu()) / mlp.y_std.cpu()).to(device)
        return torch.from_numpy(y).to(device)

    members = config.ensemble
    smoothing = config.label_smoothing

    def train_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if task == "regression":
            return ((out.squeeze(-1) - y.unsqueeze(1)) ** 2).mean()
        flat = out.reshape(-1, out.shape[-1])
        return nn.functional.cross_entropy(flat, y.repeat_interleave(members), label_smoothing=smoothing)

    def ensemble_loss(out: torch.Tensor, y: torch.Tensor) -> float:
        """The served prediction's loss: log loss of the mean probabilities, or MSE of the mean."""
        if task == "regression":
            return float(((out.mean(dim=1).squeeze(-1) - y) ** 2).mean())
        p = torch.softmax(out, dim=-1).mean(dim=1).clamp_min(1e-7)
        return float(nn.functional.nll_loss(torch.log(p), y))

    xt = torch.from_numpy(inputs.train_x).to(device) if inputs.train_x is not None else None
    xv = torch.from_numpy(inputs.val_x).to(device) if inputs.val_x is not None else None
    yt, yv = targets(train.y), targets(val.y)
    batch = config.batch_size or auto_batch_size(n)
    # each window of the plan may end in a short batch: one more step per window at most
    windows = math.ceil(math.ceil(n / config.shuffle_block_rows) / WINDOW_BLOCKS)
    steps_per_epoch = max(1, math.ceil(n / batch) + windows - 1)
    total_steps = steps_per_epoch * config.max_epochs
    warmup = max(1, total_steps // 20)
    opt = torch.optim.AdamW(mlp.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total_steps - warmup))))
        ),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    autocast = torch.autocast(device.type, dtype=_DTYPES.get(precision, torch.float32), enabled=precision != "fp32")
    forward: nn.Module = mlp
    if dist is not None:
        forward = nn.parallel.DistributedDataParallel(
            mlp,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. the embedding of a table without categorical features
        )
        torch.manual_seed(config.seed + 7919 * dist.rank)  # the same initial weights, dropout of its own
    if config.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    gen = torch.Generator().manual_seed(config.seed)
    block_rows = config.shuffle_block_rows
    run = Progress()
    resumed_from = ""
    if checkpoints is not None and (found := checkpoints.latest()) is not None:
        resumed_from, state = found
        mlp.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_states(state["rng"], gen)
        run = Progress(**state["progress"])
        if dist is not None:  # the leader's RNG was saved: each process draws its own dropout again
            torch.manual_seed(config.seed + 7919 * dist.rank + run.step)
        if dist is None or dist.leader:
            print(f"train: resuming the mlp from {resumed_from} (epoch {run.epoch}, step {run.step})", flush=True)

    def save() -> None:
        if checkpoints is None or (dist is not None and not dist.leader):
            return
        checkpoints.save(
            run.step,
            {
                "model": mlp.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_states(gen),
                "progress": dataclasses.asdict(run),
            },
        )

    every = config.checkpoint_every_steps
    start = time.perf_counter() - run.elapsed
    order: torch.Tensor | None = None
    bounds: list[int] = [n]
    while not run.stopped and run.epoch < config.max_epochs:
        epoch = run.epoch
        mlp.train()
        if run.plan_state is None:
            run.plan_state, run.position = gen.get_state(), 0
            order, bounds = epoch_plan(n, gen, block_rows)
        elif order is None:  # resumed inside this epoch: the same plan again, and gen where it was after it
            gen.set_state(run.plan_state)
            order, bounds = epoch_plan(n, gen, block_rows)
        batches = plan_batches(order, bounds, batch)
        out_of_time = False
        epoch_start, loss_sum, rows = time.perf_counter(), 0.0, 0
        for idx, x in _epoch_batches(inputs, xt, order, bounds, batch, batches, run.position, config, device):
            over = bool(config.max_seconds and time.perf_counter() - start > config.max_seconds)
            if dist is not None:
                over = _any_rank(over, device)  # every process stops at the same step
            if over:
                out_of_time = True  # checked per step: one epoch of a large model may take minutes
                break
            if dist is not None:
                if len(idx) < dist.world:  # too few rows to share: every process skips it
                    run.position += 1
                    continue
                x, idx = x[dist.rank :: dist.world], idx[dist.rank :: dist.world]
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = train_loss(forward(x), yt[idx])
            value = loss.item() if dist is None else _mean_over_ranks(loss.detach(), dist.world)
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"train: the mlp's training loss became {value} at epoch {epoch}, step {run.step}; "
                    f"lower lr (now {config.lr:g})"
                    + (f"; the last good checkpoint is kept under {checkpoints.uri}" if checkpoints else "")
                )
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            schedule.step()
            run.step += 1
            run.position += 1
            loss_sum, rows = loss_sum + value * len(idx), rows + len(idx)
            if every and run.step % every == 0 and run.position < len(batches):
                run.elapsed = time.perf_counter() - start
                save()
        mlp.eval()
        with torch.no_grad():
            val_loss = _chunked_loss(mlp, _val_chunks(inputs, xv, device), yv, ensemble_loss)
        if dist is not None:  # two GPUs need not round alike: every process takes process 0's figure
            val_loss = _from_leader(val_loss, device)
        if not math.isfinite(val_loss):
            raise TrainingDivergedError(
                f"train: the mlp's validation loss became {val_loss} at epoch {epoch}; lower lr (now {config.lr:g})"
            )
        seconds = time.perf_counter() - epoch_start
        stats = {
            "epoch": float(epoch),
            "train_loss": loss_sum / max(rows, 1),
            "val_loss": val_loss,
            "lr": float(schedule.get_last_lr()[0]),
            "seconds": seconds,
            "rows_per_second": rows / seconds if seconds > 0 else 0.0,
        }
        run.history.append(stats)
        if epoch_log is not None:
            epoch_log(stats)
        if val_loss < run.best_loss - 1e-7:
            run.best_loss, run.best_epoch = val_loss, epoch
            run.best_state = {k: v.detach().cpu().clone() for k, v in mlp.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        late = out_of_time or bool(config.max_seconds and time.perf_counter() - start > config.max_seconds)
        if dist is not None:
            late = _any_rank(late, device)  # each process's clock differs: they decide together
        if epoch + 1 >= config.min_epochs and epoch - run.best_epoch >= config.patience:
            run.stopped = "patience"
        elif late:
            run.stopped = "max_seconds"
        run.epoch, run.plan_state, run.position = epoch + 1, None, 0
        order = None
        if run.epoch >= config.max_epochs and not run.stopped:
            run.stopped = "max_epochs"
        run.elapsed = time.perf_counter() - start
        save()
    mlp = mlp.cpu()
    if run.best_state is not None:
        mlp.load_state_dict(run.best_state)
    mlp.eval()
    if inputs.train_x is not None:
        unseen = fill_unseen_from_counts(mlp, embedding_counts(mlp, inputs.train_x))
    else:
        assert inputs.train_stream is not None
        unseen = fill_unseen_from_counts(
            mlp, np.sum([embedding_counts(mlp, c) for c in inputs.train_stream.chunks()], axis=0)
        )
    summary = {
        "best_val_loss": run.best_loss,
        "untrained_codes": unseen,
        "best_epoch": run.best_epoch,
        "epochs": run.epoch,
        "stopped": run.stopped or "max_epochs",
        "batch_size": batch,
        "device": device.type,
        "precision": precision,
        "train_seconds": round(time.perf_counter() - start, 3),
        "architecture": arch,
        "history": run.history,
    }
    if inputs.streamed:
        summary["loader"] = {"streamed": True, "workers": config.loader_workers, "block_rows": block_rows}
    if dist is not None:
        summary["processes"] = dist.world
    if resumed_from:
        summary["resumed_from"] = resumed_from
    return mlp, summary


def _epoch_batches(
    inputs: MLPInputs,
    xt: torch.Tensor | None,
    order: torch.Tensor,
    bounds: list[int],
    batch: int,
    batches: list[torch.Tensor],
    position: int,
    config: "TrainConfig",
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's batches from ``position`` on: ``(row indices, encoded rows on device)``."""
    if xt is not None:
        for idx in batches[position:]:
            yield idx, xt[idx.to(device)]
        return
    assert inputs.train_stream is not None
    per_window = [math.ceil(size / batch) for size in bounds]
    first, skip = 0, position
    while first < len(bounds) and skip >= per_window[first]:
        skip, first = skip - per_window[first], first + 1
    if first == len(bounds):
        return
    loader = window_loader(
        inputs.train_stream,
        order,
        bounds,
        first,
        config.shuffle_block_rows,
        config.loader_workers,
        device.type == "cuda",
    )
    at = sum(per_window[:first])
    for w, window in enumerate(loader, start=first):
        offset = 0
        for k in range(per_window[w]):
            idx = batches[at + k]
            if k >= skip:
                yield idx, window[offset : offset + len(idx)].to(device, non_blocking=True)
            offset += len(idx)
        at, skip = at + per_window[w], 0


def _val_chunks(inputs: MLPInputs, xv: torch.Tensor | None, device: torch.device) -> Iterator[torch.Tensor]:
    """The validation split in consecutive chunks of ``CHUNK_ROWS`` rows, on device."""
    if xv is not None:
        yield from (xv.split(CHUNK_ROWS) if len(xv) > CHUNK_ROWS else [xv])
        return
    assert inputs.val_stream is not None
    for chunk in inputs.val_stream.chunks(CHUNK_ROWS):
        yield torch.from_numpy(chunk).to(device)


def _any_rank(flag: bool, device: torch.device) -> bool:
    import torch.distributed as tdist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(value)
    return bool(value.item() > 0)


def _from_leader(value: float, device: torch.device) -> float:
    import torch.distributed as tdist

    held = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.broadcast(held, src=0)
    return float(held.item())


def _mean_over_ranks(loss: torch.Tensor, world: int) -> float:
    import torch.distributed as tdist

    value = loss.float().reshape(1).clone()
    tdist.all_reduce(value)
    return float(value.item()) / world


class ProgressLine:
    """An ``epoch_log`` that prints the epoch's figures to stderr, at most every
    ``PROGRESS_EVERY_S`` seconds (the first and the last epoch always), so long runs stay readable."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.last = -math.inf

    def __call__(self, stats: dict[str, float]) -> None:
        now, epoch = time.monotonic(), int(stats["epoch"]) + 1
        if now - self.last < PROGRESS_EVERY_S and epoch < self.epochs:
            return
        self.last = now
        print(
            f"train: mlp epoch {epoch}/{self.epochs}: train loss {stats['train_loss']:.4g}, "
            f"val loss {stats['val_loss']:.4g}, lr {stats['lr']:.3g}, {stats['rows_per_second']:,.0f} rows/s",
            file=sys.stderr,
            flush=True,
        )


def _chunked_loss(
    mlp: nn.Module,
    chunks: Iterator[torch.Tensor],
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], float],
) -> float:
    """``loss`` over the whole split, computed on the concatenated outputs of its chunks."""
    return loss(torch.cat([mlp(chunk) for chunk in chunks]), y)
