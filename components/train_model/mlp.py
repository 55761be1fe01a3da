"""The PyTorch MLP family: the module and its artifact.

:class:`TabularMLP` takes the encoded float32 matrix of the family's fitted preprocessing: robust
scaling with smooth clipping and periodic embeddings of numeric columns, learned embeddings of
categorical codes, and a packed ensemble of members sharing one backbone (after RealMLP,
Holzmüller et al. 2024, and TabM, Gorishniy et al. 2025); :mod:`components.train_model.loop`
trains it. The artifact
keeps TorchScript (``model.pt``, what is served) and the ``state_dict`` (``weights.pt``, from which
quantization rebuilds the module with :func:`build_module`). The data, the options and the choice
between families are in :mod:`components.train_model.core`.
"""

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from serving.preprocess import Preprocessing
from shipyard.artifacts import ModelManifest, read_model_manifest, write_model

if TYPE_CHECKING:
    from components.train_model.core import TabularData, TrainConfig

TORCHSCRIPT_FILE = "model.pt"
STATE_DICT_FILE = "weights.pt"


class TabularMLP(nn.Module):
    """A packed ensemble MLP over the encoded matrix.

    Numeric columns: ``z = (x - center) / scale``, softly clipped to about ±3
    (``z / sqrt(1 + (z/3)²)``), then each column's ``z`` beside its periodic embedding
    ``ReLU(W·[cos 2πfz, sin 2πfz] + b)`` (learned frequencies ``f`` per column). Categorical code
    columns: one learned embedding per code. The concatenated features are scaled by one learned
    vector per ensemble member, go through the shared ``[Linear → ReLU → Dropout] × depth`` backbone
    and one output head per member. :meth:`forward` gives each member's output ``[n, members, outputs]``;
    the serving heads average them.
    """

    center: torch.Tensor
    scale: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    num_index: torch.Tensor
    cat_index: torch.Tensor
    cat_offset: torch.Tensor
    cat_max: torch.Tensor

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        width: int,
        depth: int,
        dropout: float,
        categorical: list[list[int]] | None = None,
        n_frequencies: int = 0,
        frequency_scale: float = 0.1,
        embedding_dim: int = 8,
        ensemble: int = 1,
    ):
        super().__init__()
        cats = [(int(c), int(k)) for c, k in (categorical or [])]
        cat_cols = {c for c, _ in cats}
        num_cols = [i for i in range(n_features) if i not in cat_cols]
        self.n_num, self.n_cat, self.periodic = len(num_cols), len(cats), n_frequencies > 0 and len(num_cols) > 0
        self.register_buffer("num_index", torch.tensor(num_cols, dtype=torch.long))
        self.register_buffer("center", torch.zeros(len(num_cols)))
        self.register_buffer("scale", torch.ones(len(num_cols)))
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))
        cards = [k for _, k in cats]
        offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64) if cards else np.zeros(0, np.int64)
        self.register_buffer("cat_index", torch.tensor([c for c, _ in cats], dtype=torch.long))
        self.register_buffer("cat_offset", torch.from_numpy(offsets))
        self.register_buffer("cat_max", torch.tensor([k - 1 for k in cards], dtype=torch.float32))
        n_freq = max(n_frequencies, 1)
        self.frequencies = nn.Parameter(torch.randn(max(len(num_cols), 1), n_freq) * frequency_scale)
        bound = 1.0 / math.sqrt(2 * n_freq)
        self.periodic_weight = nn.Parameter(
            torch.empty(max(len(num_cols), 1), 2 * n_freq, embedding_dim).uniform_(-bound, bound)
        )
        self.periodic_bias = nn.Parameter(torch.empty(max(len(num_cols), 1), embedding_dim).uniform_(-bound, bound))
        self.embedding = nn.Embedding(max(sum(cards), 1), embedding_dim)
        size = len(num_cols) * (1 + (embedding_dim if self.periodic else 0)) + len(cats) * embedding_dim
        size = max(size, 1)
        signs = torch.randint(0, 2, (ensemble, size)).float() * 2 - 1  # TabM: random ±1 adapters
        self.member_scale = nn.Parameter(signs)
        layers: list[nn.Module] = []
        width_in = size
        for _ in range(depth):
            layers += [nn.Linear(width_in, width), nn.ReLU(), nn.Dropout(dropout)]
            width_in = width
        self.body = nn.Sequential(*layers)
        head_bound = 1.0 / math.sqrt(width_in)
        self.head_weight = nn.Parameter(torch.empty(ensemble, width_in, n_outputs).uniform_(-head_bound, head_bound))
        self.head_bias = nn.Parameter(torch.zeros(ensemble, n_outputs))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated numeric and categorical embeddings ``[n, size]``."""
        parts: list[torch.Tensor] = []
        if self.n_num > 0:
            z = (torch.index_select(x, 1, self.num_index) - self.center) / self.scale
            z = z / torch.sqrt(1.0 + (z / 3.0) ** 2)
            parts.append(z)
            if self.periodic:
                v = (2.0 * math.pi) * z.unsqueeze(-1) * self.frequencies
                p = torch.cat([torch.cos(v), torch.sin(v)], dim=-1)
                e = torch.relu(torch.einsum("bnf,nfd->bnd", p, self.periodic_weight) + self.periodic_bias)
                parts.append(e.flatten(1))
        if self.n_cat > 0:
            codes = torch.minimum(torch.clamp(torch.index_select(x, 1, self.cat_index), min=0.0), self.cat_max)
            parts.append(self.embedding(codes.long() + self.cat_offset).flatten(1))
        if len(parts) == 0:
            return torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).unsqueeze(1) * self.member_scale  # [n, members, size]
        h = self.body(h)
        return torch.einsum("bkh,kho->bko", h, self.head_weight) + self.head_bias


class ClassifierScores(nn.Module):
    """Serving head: the class probabilities, averaged over the ensemble members."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(x), dim=-1).mean(dim=1)


class RegressorScores(nn.Module):
    """Serving head: the members' mean prediction in the label's own units."""

    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, mlp: TabularMLP):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("y_mean", mlp.y_mean.clone())
        self.register_buffer("y_std", mlp.y_std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).mean(dim=1).squeeze(-1) * self.y_std + self.y_mean


def architecture(
    n_features: int,
    task: str,
    n_classes: int,
    config: "TrainConfig",
    categorical: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The constructor arguments recorded in ``model.json`` to rebuild the module.

    Args:
        n_features: Columns of the encoded matrix.
        task: The task.
        n_classes: Classes (ignored for regression).
        config: Hyperparameters.
        categorical: ``(column, cardinality)`` of the categorical code columns
            (:meth:`Preprocessing.code_columns`).
    """
    return {
        "n_features": n_features,
        "n_outputs": 1 if task == "regression" else n_classes,
        "width": config.width,
        "depth": config.depth,
        "dropout": config.dropout,
        "categorical": [[int(c), int(k)] for c, k in (categorical or [])],
        "n_frequencies": config.n_frequencies,
        "frequency_scale": config.frequency_scale,
        "embedding_dim": config.embedding_dim,
        "ensemble": config.ensemble,
    }


def build_module(arch: dict[str, Any]) -> TabularMLP:
    """Builds an untrained TabularMLP from :func:`architecture`'s dict."""
    return TabularMLP(
        arch["n_features"],
        arch["n_outputs"],
        arch["width"],
        arch["depth"],
        arch["dropout"],
        categorical=arch.get("categorical", []),
        n_frequencies=arch.get("n_frequencies", 0),
        frequency_scale=arch.get("frequency_scale", 0.1),
        embedding_dim=arch.get("embedding_dim", 8),
        ensemble=arch.get("ensemble", 1),
    )


def scoring_module(mlp: nn.Module, task: str) -> nn.Module:
    """Wraps the MLP with the head that turns its members' outputs into what is served."""
    return RegressorScores(mlp) if task == "regression" else ClassifierScores(mlp)  # type: ignore[arg-type]


def fill_unseen_embeddings(mlp: TabularMLP, train_x: np.ndarray) -> int:
    """Gives every categorical code that never occurs in ``train_x`` (the unknown bucket without
    rare training values, the missing bucket without training nulls) the count-weighted mean of
    its feature's trained embeddings, instead of the random initialization no gradient moved. An
    unseen category then scores as an average known one. Returns how many codes were filled.
    """
    if mlp.n_cat == 0:
        return 0
    return fill_unseen_from_counts(mlp, embedding_counts(mlp, train_x))


def embedding_counts(mlp: TabularMLP, x: np.ndarray) -> np.ndarray:
    """How often each embedding row (categorical code) occurs in the encoded rows ``x`` (summed
    over chunks of a streamed split, they give :func:`fill_unseen_from_counts` its counts)."""
    if mlp.n_cat == 0:
        return np.zeros(0, np.int64)
    codes = np.minimum(np.clip(x[:, mlp.cat_index.numpy()], 0, None), mlp.cat_max.numpy()).astype(np.int64)
    return np.bincount((codes + mlp.cat_offset.numpy()).ravel(), minlength=mlp.embedding.num_embeddings)


def fill_unseen_from_counts(mlp: TabularMLP, counts: np.ndarray) -> int:
    """:func:`fill_unseen_embeddings` given the training rows' :func:`embedding_counts`."""
    if mlp.n_cat == 0:
        return 0
    starts = mlp.cat_offset.numpy().tolist()
    sizes = (mlp.cat_max.numpy().astype(np.int64) + 1).tolist()
    filled = 0
    with torch.no_grad():
        weight = mlp.embedding.weight
        for start, size in zip(starts, sizes, strict=True):
            n = torch.from_numpy(counts[start : start + size].astype(np.float32))
            if bool((n > 0).all()) or not bool((n > 0).any()):
                continue
            rows = weight[start : start + size]
            mean = (rows * n.unsqueeze(1)).sum(dim=0) / n.sum()
            rows[n == 0] = mean
            filled += int((n == 0).sum())
    return filled


def save_torch_model(
    model_dir: str,
    mlp: TabularMLP,
    data: "TabularData",
    arch: dict[str, Any],
    metrics: dict[str, float],
    details: dict[str, Any],
    preprocessing: Preprocessing | None = None,
) -> ModelManifest:
    """Writes a ``torchscript`` Model artifact (TorchScript + state_dict) atomically."""
    scripted = torch.jit.script(scoring_module(mlp, data.task).eval())

    def build(tmp: Path) -> None:
        scripted.save(str(tmp / TORCHSCRIPT_FILE))
        torch.save(mlp.state_dict(), tmp / STATE_DICT_FILE)

    manifest = data.manifest(
        "torchscript",
        metrics,
        {**details, "architecture": arch, "framework": {"torch": torch.__version__}},
        preprocessing,
    )
    return write_model(model_dir, manifest, build)


def load_torch_weights(model_dir: str | Path) -> TabularMLP:
    """Rebuilds the MLP of a ``torchscript`` artifact from its architecture and ``state_dict``."""
    manifest = read_model_manifest(model_dir)
    mlp = build_module(manifest.details["architecture"])
    mlp.load_state_dict(torch.load(Path(model_dir) / STATE_DICT_FILE, map_location="cpu", weights_only=True))
    return mlp.eval()
