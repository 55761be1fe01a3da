"""Post-training quantization and export: a table of variants and a stated rule to pick one.

From a ``torchscript`` Model artifact (which keeps its ``state_dict``) this builds up to four
variants: ``fp32-torchscript`` (the original), ``int8-torchscript`` (PyTorch dynamic int8 on the
Linear layers), ``fp32-onnx`` (``torch.onnx.export``) and ``int8-onnx`` (ONNX Runtime dynamic int8).
Each is loaded through :func:`serving.formats.load_model` — the loader the server uses — and
measured for the size of the file the server loads, single-row and batch latency, and validation
metrics. Only the fp32 original keeps the ``state_dict`` beside its TorchScript file; the other
variants hold just what is served, and name the original as their ``parent``.

**The rule**: among the variants whose primary metric is no worse than the fp32 original's by
more than ``max_metric_drop``, pick the one with the lowest single-row latency (``objective=
latency``) or the smallest file (``objective=size``); a near tie (within 5%) goes to the smaller
file. A ``sklearn-skops`` model has no variants and passes through unchanged.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serving.formats import WEIGHTS_FILE, LoadedModel, load_model
from shipyard import attempts
from shipyard import metrics as task_metrics
from shipyard.artifacts import ModelManifest, read_dataset, read_model_manifest, write_json, write_model, write_text
from shipyard.config import Config, require
from shipyard.errors import ArtifactError
from shipyard.report import markdown_table
from shipyard.tasks import LOWER_IS_BETTER, PRIMARY_METRIC

VARIANTS = ("fp32-torchscript", "int8-torchscript", "fp32-onnx", "int8-onnx")


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(Config):
    """Which variants to build and how to choose.

    Attributes:
        variants: Variant names to build (``fp32-torchscript`` is always measured as reference).
        objective: ``latency`` or ``size``.
        max_metric_drop: Largest allowed loss on the task's primary metric versus fp32.
        latency_repeats: Timed single-row calls per variant (median reported).
        batch_size: Rows in the batch-latency measurement.
    """

    section = "quantize"
    variants: tuple = VARIANTS
    objective: str = "latency"
    max_metric_drop: float = 0.01
    latency_repeats: int = 200
    batch_size: int = 64

    def validate(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        require(not unknown, self.section, f"variants: unknown {unknown}; expected some of {list(VARIANTS)}")
        require(self.objective in ("latency", "size"), self.section, "objective must be latency or size")
        require(self.max_metric_drop >= 0, self.section, "max_metric_drop must be >= 0")
        require(
            self.latency_repeats >= 5 and self.batch_size >= 1,
            self.section,
            "latency_repeats must be >= 5 and batch_size >= 1",
        )


def _median_us(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(min(20, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def measure(model: LoadedModel, df: Any, y: np.ndarray, config: QuantizeConfig, where: str) -> dict[str, Any]:
    """Size, single-row and batch latency (µs, median) and metrics of one loaded variant.

    The raw rows ``df`` go through the variant's own preprocessing (from its ``model.json``), as
    the server applies it; the latencies time the model on the encoded rows (the preprocessing is
    the same for every variant, so it would only add noise to the comparison).
    """
    weights = model.path / WEIGHTS_FILE[model.manifest.format]
    x = model.encode_frame(df, where).x
    batch = x[: config.batch_size]
    one = x[:1]
    return {
        "bytes": weights.stat().st_size,
        "latency_us_1": _median_us(lambda: model.scores(one), config.latency_repeats),
        f"latency_us_{len(batch)}": _median_us(lambda: model.scores(batch), max(5, config.latency_repeats // 4)),
        "metrics": task_metrics.compute(model.manifest.task, y, model.scores(x)),
    }


def choose(table: dict[str, dict[str, Any]], task: str, config: QuantizeConfig) -> tuple[str, str]:
    """Applies the rule in the module docstring; returns ``(variant, reason)``."""
    primary = PRIMARY_METRIC[task] if PRIMARY_METRIC[task] in table["fp32-torchscript"]["metrics"] else "accuracy"
    ref = table["fp32-torchscript"]["metrics"][primary]
    sign = -1.0 if primary in LOWER_IS_BETTER else 1.0
    eligible = [
        v for v, row in table.items() if sign * (ref - row["metrics"][primary]) <= config.max_metric_drop + 1e-12
    ]
    key = "latency_us_1" if config.objective == "latency" else "bytes"
    best = min(eligible, key=lambda v: table[v][key])
    near = [v for v in eligible if table[v][key] <= table[best][key] * 1.05]
    pick = min(near, key=lambda v: (table[v]["bytes"], table[v][key]))
    reason = (
        f"lowest {'single-row latency' if key == 'latency_us_1' else 'file size'} among variants within "
        f"{config.max_metric_drop:g} {primary} of fp32 ({len(eligible)}/{len(table)} eligible)"
        + ("; near tie broken by size" if pick != best else "")
    )
    return pick, reason


def rebuild_module(source_dir: Path, manifest: ModelManifest) -> Any:
    """The source's scoring module rebuilt from its ``state_dict`` (``weights.pt``) and
    ``details["architecture"]`` by train_model's ``build_module`` and ``scoring_module``: it takes
    the encoded float32 matrix (categorical codes included) and gives what is served.

    Raises:
        ArtifactError: The artifact lacks ``weights.pt`` or ``details.architecture``.
    """
    import torch

    from components.train_model import core as train_core

    arch = require_rebuildable(source_dir, manifest)
    state = torch.load(source_dir / train_core.STATE_DICT_FILE, map_location="cpu", weights_only=True)
    mlp = train_core.build_module(arch)
    mlp.load_state_dict(state)
    mlp.eval()
    return train_core.scoring_module(mlp, manifest.task).eval()


def require_rebuildable(source_dir: Path, manifest: ModelManifest) -> dict[str, Any]:
    """``details["architecture"]``, once the artifact is known to hold what :func:`rebuild_module` needs.

    Raises:
        ArtifactError: The artifact lacks ``weights.pt`` or ``details.architecture``.
    """
    from components.train_model.core import STATE_DICT_FILE

    arch = manifest.details.get("architecture")
    if STATE_DICT_FILE not in manifest.files or not isinstance(arch, dict):
        raise ArtifactError(
            f"{source_dir}: a torchscript model to quantize needs {STATE_DICT_FILE} and "
            "details.architecture in model.json (as train_model writes them)"
        )
    return arch


def _build_variant(name: str, source_dir: Path, manifest: ModelManifest, out: Path, sample: np.ndarray) -> None:
    """Writes variant ``name`` of the source to ``out``; ``sample`` is encoded rows for the ONNX export.

    Every variant's ``model.json`` keeps the source's ``input_schema`` and ``preprocessing``, so it
    takes the same raw rows.
    """
    import torch

    if name == "fp32-torchscript":
        shutil.copytree(source_dir, out)
        return
    scorer = rebuild_module(source_dir, manifest)
    details = {**manifest.details, "variant": name}
    fmt = "onnx" if name.endswith("onnx") else "torchscript"
    variant_manifest = dataclasses.replace(manifest, format=fmt, details=details)

    def build(tmp: Path) -> None:
        if name == "int8-torchscript":
            with warnings.catch_warnings():  # torch 2.13 deprecates quantized tensors in favour of torchao
                warnings.simplefilter("ignore", UserWarning)
                quantized = torch.ao.quantization.quantize_dynamic(scorer, {torch.nn.Linear}, dtype=torch.qint8)
            torch.jit.script(quantized).save(str(tmp / WEIGHTS_FILE["torchscript"]))
            return
        # One export serves both ONNX variants (the exporter is the slow part: seconds).
        fp32 = out.parent / f".{source_dir.name}.fp32.onnx"
        if not fp32.exists():
            torch.onnx.export(
                scorer,
                (torch.from_numpy(sample[:2]),),
                str(fp32),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        onnx_path = tmp / WEIGHTS_FILE["onnx"]
        if name == "fp32-onnx":
            shutil.copy2(fp32, onnx_path)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(fp32), str(onnx_path), weight_type=QuantType.QInt8)

    write_model(out, variant_manifest, build)


@attempts.step
def quantize(
    model_dir: str, val_dir: str, output_dir: str, report_json: str, report_md: str, config: QuantizeConfig
) -> dict[str, Any]:
    """Builds and measures the variants, writes the chosen one as the output Model artifact.

    Returns:
        ``{"variant", "reason", "size_ratio", "table"}`` where ``size_ratio`` is the chosen
        variant's weights size divided by the fp32 original's.
    """
    import logging

    import torch

    from components.evaluate_model.core import labels_of

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    source = Path(model_dir)
    manifest = read_model_manifest(source)
    parent = {"path": str(source), "format": manifest.format, "model_json_sha256": _sha(source)}
    if manifest.format != "torchscript":
        write_model(output_dir, dataclasses.replace(manifest, parent=parent), _copier(source, manifest.files))
        family = manifest.details.get("family")
        what = f"format {manifest.format}" + (f" (family {family})" if family else "")
        note = f"{what} has no quantized variants; passed through unchanged"
        result = {"variant": manifest.format, "reason": note, "size_ratio": 1.0, "table": {}}
        write_json(report_json, result)
        summary = markdown_table(
            ["variant", "format", "family", "chosen"], [("as trained", manifest.format, family, "✔")]
        )
        write_text(
            report_md,
            f"# Quantization\n\n{note[0].upper()}{note[1:]}: it is served as trained, with its fitted preprocessing."
            f"\n\n{summary}",
        )
        return result
    require_rebuildable(source, manifest)  # before the data is read: the artifact's fault comes first
    reference = load_model(source)
    val_df, _ = read_dataset(val_dir)
    where = str(val_dir)
    val_y = labels_of(reference, val_df, where)
    sample = reference.encode_frame(val_df, where).x
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # serving runs one request per thread; measure the same way
    work = Path(tempfile.mkdtemp(prefix="shipyard-quantize-"))
    try:
        table: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(("fp32-torchscript", *config.variants)):
            _build_variant(name, source, manifest, work / name, sample)
            table[name] = measure(load_model(work / name), val_df, val_y, config, where)
        pick, reason = choose(table, manifest.task, config)
        chosen = work / pick
        chosen_manifest = read_model_manifest(chosen)
        write_model(
            output_dir,
            dataclasses.replace(chosen_manifest, parent=parent, metrics={**manifest.metrics, **table[pick]["metrics"]}),
            _copier(chosen, chosen_manifest.files),
        )
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    ref = table["fp32-torchscript"]
    ratio = table[pick]["bytes"] / ref["bytes"]
    write_json(report_json, {"variant": pick, "reason": reason, "size_ratio": ratio, "table": table})
    primary = PRIMARY_METRIC[manifest.task]
    rows = [
        (
            v,
            r["bytes"],
            f"{r['bytes'] / ref['bytes']:.2f}",
            round(r["latency_us_1"], 1),
            round(next(val for key, val in r.items() if key.startswith("latency_us_") and key != "latency_us_1"), 1),
            r["metrics"].get(primary),
            "✔" if v == pick else "",
        )
        for v, r in table.items()
    ]
    write_text(
        report_md,
        f"# Quantization\n\nChosen: **{pick}** — {reason}.\n\n"
        + markdown_table(
            [
                "variant",
                "bytes",
                "size ratio",
                "µs/row (batch 1)",
                f"µs/batch ({config.batch_size})",
                primary,
                "chosen",
            ],
            rows,
        ),
    )
    return {"variant": pick, "reason": reason, "size_ratio": ratio, "table": table}


def _copier(source: Path, files: dict[str, str]) -> Callable[[Path], None]:
    def copy(tmp: Path) -> None:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, tmp / name)

    return copy


def _sha(root: Path) -> str:
    from shipyard.artifacts import MODEL_FILE, sha256_file

    return sha256_file(root / MODEL_FILE)
