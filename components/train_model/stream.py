"""The MLP's rows streamed from a split's Parquet file instead of one tensor in memory.

Both paths share one epoch plan (:func:`epoch_plan`): the rows fall into blocks of
``block_rows`` consecutive rows; each epoch shuffles the blocks, takes them ``WINDOW_BLOCKS`` at
a time and shuffles the rows inside each window; batches never cross a window. In memory the
batches index the encoded matrix; streamed (:class:`ParquetSplit`, :func:`window_loader`), a
``DataLoader`` whose workers read each window's row groups, encode them with the model's
preprocessing and hand the window over in plan order (pinned on CUDA), so the same seed gives
the same batches, and the same weights, either way. A table of at most ``block_rows`` rows is one
window: the plan is then a plain permutation of the rows, as it always was.

Shipyard's splits are written in row groups of :data:`shipyard.artifacts.ROW_GROUP_ROWS` rows,
the default block, so one block is one row group; other layouts work, reading more.
"""

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from serving.preprocess import Preprocessing
from shipyard.artifacts import ROW_GROUP_ROWS

#: Rows per shuffling block (the default of TrainConfig.shuffle_block_rows).
BLOCK_ROWS = ROW_GROUP_ROWS
#: Blocks whose rows are shuffled together: the rows a streamed window holds in memory.
WINDOW_BLOCKS = 4
#: Most training rows the MLP's robust scaling is estimated on (a seeded sample above it).
SCALING_ROWS = 200_000
#: Rows per validation chunk (both paths score the validation split in these chunks).
CHUNK_ROWS = 8192


def epoch_plan(n: int, gen: torch.Generator, block_rows: int = BLOCK_ROWS) -> tuple[torch.Tensor, list[int]]:
    """One epoch's row order and its windows' sizes (see the module docstring)."""
    blocks = max(1, math.ceil(n / block_rows))
    if blocks == 1:
        return torch.randperm(n, generator=gen), [n]
    block_order = torch.randperm(blocks, generator=gen).tolist()
    parts, bounds = [], []
    for w in range(0, blocks, WINDOW_BLOCKS):
        rows = torch.cat(
            [torch.arange(b * block_rows, min(n, (b + 1) * block_rows)) for b in block_order[w : w + WINDOW_BLOCKS]]
        )
        parts.append(rows[torch.randperm(len(rows), generator=gen)])
        bounds.append(len(rows))
    return torch.cat(parts), bounds


def plan_batches(order: torch.Tensor, bounds: list[int], batch: int) -> list[torch.Tensor]:
    """The epoch's batches: each window's rows split into ``batch`` rows (the last one shorter)."""
    out: list[torch.Tensor] = []
    for segment in order.split(bounds):
        out.extend(segment.split(batch))
    return out


def scaling_rows(n: int, seed: int) -> np.ndarray | None:
    """The training rows the robust scaling is estimated on: all (None) up to ``SCALING_ROWS``,
    else a sorted seeded sample of that many."""
    if n <= SCALING_ROWS:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, SCALING_ROWS, replace=False))


def encode_frame(prep: Preprocessing, frame: Any, where: str) -> np.ndarray:
    """What :func:`components.train_model.core.encode` gives for these rows of a split."""
    if prep.identity:
        return frame.to_numpy(dtype=np.float32)
    return prep.transform_frame(frame, where).x


class ParquetSplit:
    """A split's ``data.parquet`` read by row ranges and encoded with ``prep``.

    Opened lazily in each process that reads (DataLoader workers fork with it); the last row
    group read is kept, so consecutive ranges inside one group decode it once.
    """

    def __init__(self, path: str, features: list[str], prep: Preprocessing, name: str):
        import pyarrow.parquet as pq

        self.path, self.features, self.prep, self.name = path, list(features), prep, name
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.rows = int(self.starts[-1])
        self.width = prep.width
        self._file: Any = None
        self._pid = -1
        self._cached: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return self.rows

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": -1, "_cached": None}

    def _group(self, i: int) -> Any:
        import pyarrow.parquet as pq

        if self._pid != os.getpid():
            self._file, self._pid, self._cached = pq.ParquetFile(self.path), os.getpid(), None
        if self._cached is None or self._cached[0] != i:
            self._cached = (i, self._file.read_row_group(i, columns=self.features))
        return self._cached[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` … ``stop - 1`` encoded: float32 ``[rows, prep.width]``."""
        import pyarrow as pa

        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        i = first
        while i < len(self.starts) - 1 and self.starts[i] < stop:
            lo, hi = max(start, int(self.starts[i])), min(stop, int(self.starts[i + 1]))
            pieces.append(self._group(i).slice(lo - int(self.starts[i]), hi - lo))
            i += 1
        if not pieces:
            return np.zeros((0, self.width), np.float32)
        table = pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
        if self.prep.identity:  # numbers without nulls: straight from Arrow, as pandas would cast them
            out = np.empty((table.num_rows, len(self.features)), np.float32)
            for j, name in enumerate(self.features):
                out[:, j] = table.column(name).to_numpy()
            return out
        frame = table.to_pandas()
        if list(frame.columns) != self.features:
            frame = frame[self.features]
        return encode_frame(self.prep, frame, f"{self.name} rows {start}..{stop - 1}")

    def take(self, rows: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
        """The encoded rows ``rows`` (sorted), in that order, reading one block at a time."""
        out = np.empty((len(rows), self.width), np.float32)
        blocks = rows // block_rows
        for b in np.unique(blocks).tolist():
            mask = blocks == b
            start = b * block_rows
            out[mask] = self.read(start, min(self.rows, start + block_rows))[rows[mask] - start]
        return out

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
        """The split encoded in consecutive chunks of ``size`` rows."""
        for start in range(0, self.rows, size):
            yield self.read(start, min(self.rows, start + size))


class _Windows(torch.utils.data.Dataset):
    """Item ``i``: window ``first + i`` of the plan, its rows encoded in plan order."""

    def __init__(self, split: ParquetSplit, order: torch.Tensor, bounds: list[int], first: int, block_rows: int):
        self.split, self.block_rows, self.first = split, block_rows, first
        offsets = np.concatenate([[0], np.cumsum(bounds)]).astype(np.int64)
        self.windows = [order[offsets[w] : offsets[w + 1]].numpy() for w in range(first, len(bounds))]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        rows = self.windows[i]
        blocks = rows // self.block_rows
        present = np.unique(blocks)
        base = np.zeros(int(present.max()) + 1, np.int64)
        parts, at = [], 0
        for b in present.tolist():
            start = b * self.block_rows
            part = self.split.read(start, min(self.split.rows, start + self.block_rows))
            base[b] = at - start
            parts.append(part)
            at += len(part)
        dense = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(np.take(dense, base[blocks] + rows, axis=0))


def window_loader(
    split: ParquetSplit,
    order: torch.Tensor,
    bounds: list[int],
    first: int,
    block_rows: int,
    workers: int,
    pin: bool,
) -> torch.utils.data.DataLoader:
    """The windows ``first`` … of an epoch's plan, read and encoded by ``workers`` processes."""
    return torch.utils.data.DataLoader(
        _Windows(split, order, bounds, first, block_rows),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2 if workers else None,
        # its own generator: seeding the workers must not draw from the global RNG (dropout's)
        generator=torch.Generator().manual_seed(0),
    )
