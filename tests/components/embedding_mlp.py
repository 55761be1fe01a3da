"""A small MLP with an embedding per categorical code column, written as a torchscript Model artifact.

It stands in for train_model's MLP with categorical embeddings in quantize_model's tests: like it,
the scoring module takes the encoded float32 matrix of :class:`serving.preprocess.Preprocessing`
(``codes`` encoding) and casts the code columns to int64 inside the module, and the artifact keeps
``weights.pt`` (the state_dict) and ``details["architecture"]`` for the rebuild. :func:`build` and
:func:`scoring` are what quantize_model finds as ``train_core.build_module`` / ``scoring_module``
when a test patches them in (:func:`patch_train_core`).
"""

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

KIND = "test-embedding-mlp"


class EmbeddingMLP(nn.Module):
    """Numeric columns and one embedding per code column → Linear → ReLU → Linear (logits)."""

    code_index: torch.Tensor
    numeric_index: torch.Tensor

    def __init__(self, width: int, code_columns: list[int], cardinalities: list[int], dim: int, n_outputs: int):
        super().__init__()
        numeric = [i for i in range(width) if i not in code_columns]
        self.register_buffer("code_index", torch.tensor(code_columns, dtype=torch.long))
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long))
        self.embeddings = nn.ModuleList([nn.Embedding(c, dim) for c in cardinalities])
        self.body = nn.Sequential(
            nn.Linear(len(numeric) + dim * len(code_columns), 16), nn.ReLU(), nn.Linear(16, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x.index_select(1, self.code_index).to(torch.int64)
        parts = [x.index_select(1, self.numeric_index)]
        for i, embedding in enumerate(self.embeddings):
            parts.append(embedding(codes[:, i]))
        return self.body(torch.cat(parts, dim=1))


class Probabilities(nn.Module):
    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(x), dim=-1)


def build(arch: dict[str, Any]) -> EmbeddingMLP:
    return EmbeddingMLP(arch["width"], arch["code_columns"], arch["cardinalities"], arch["dim"], arch["n_outputs"])


def scoring(mlp: nn.Module, task: str) -> nn.Module:
    return Probabilities(mlp)


def patch_train_core(monkeypatch: Any) -> None:
    """Makes train_model's ``build_module``/``scoring_module`` build this module for its architecture."""
    from components.train_model import core as train_core

    build_module, scoring_module = train_core.build_module, train_core.scoring_module
    monkeypatch.setattr(train_core, "build_module", lambda a: build(a) if a.get("kind") == KIND else build_module(a))
    monkeypatch.setattr(
        train_core,
        "scoring_module",
        lambda m, task: scoring(m, task) if isinstance(m, EmbeddingMLP) else scoring_module(m, task),
    )


def write_artifact(path: Path, train_df: Any, prep: Any, schema: Any) -> Path:
    """Fits the module briefly on ``train_df`` (the mixed table, encoded by ``prep``) and writes the
    torchscript artifact (:func:`mixed_artifacts.manifest`)."""
    import mixed_artifacts

    from shipyard import artifacts

    torch.manual_seed(0)
    arch = {
        "kind": KIND,
        "width": prep.width,
        "code_columns": [c for c, _ in prep.code_columns()],
        "cardinalities": [n for _, n in prep.code_columns()],
        "dim": 3,
        "n_outputs": 2,
    }
    mlp = build(arch)
    x = torch.from_numpy(prep.transform_frame(train_df).x)
    y = torch.from_numpy(train_df[mixed_artifacts.LABEL].to_numpy())
    optimizer = torch.optim.Adam(mlp.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    mlp.eval()
    scripted = torch.jit.script(scoring(mlp, "binary").eval())

    def write(tmp: Path) -> None:
        scripted.save(str(tmp / "model.pt"))
        torch.save(mlp.state_dict(), tmp / "weights.pt")

    details = {"family": "mlp", "architecture": arch}
    manifest = dataclasses.replace(
        mixed_artifacts.manifest("torchscript", prep, schema, details), metrics={"val_loss": 0.5}
    )
    artifacts.write_model(path, manifest, write)
    return path
