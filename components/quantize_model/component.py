from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def quantize_model(
    model: Input[Model],
    val: Input[Dataset],
    quantized: Output[Model],
    report: Output[Markdown],
    table: Output[Artifact],
    options: dict = {},
) -> NamedTuple("QuantizeOutputs", [("variant", str), ("size_ratio", float)]):
    """Builds fp32/int8 TorchScript and ONNX variants, measures them, and picks one by rule.

    Args:
        model: The trained torchscript Model.
        val: Validation split for the metric and latency sample.
        quantized: Output: the chosen variant as a Model artifact.
        report: Output: Markdown table of size, latency and metric per variant.
        table: Output: the same table as JSON.
        options: variants, objective (latency|size), max_metric_drop, latency_repeats, batch_size.
    """
    from components.quantize_model import core

    r = core.quantize(
        model.path, val.path, quantized.path, table.path, report.path, core.QuantizeConfig.from_dict(options)
    )
    return (r["variant"], r["size_ratio"])
