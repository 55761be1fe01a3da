"""The one table of model formats: what each ``model.json`` format is, in facts only.

Every place that needs to know the formats reads this table: :mod:`shipyard.artifacts` (which
formats a manifest may name), :mod:`serving.formats` (the weights file; its loaders are keyed by
this table and a test checks every format has one), :mod:`serving.model` (one model class per
format, checked the same way), :mod:`serving.config` (adaptive batching under ``auto``) and
:mod:`serving.rollout.isvc` (the KServe ``modelFormat`` names and which formats the serving
image advertises). The kernel imports nothing of ``serving``, so the table holds no code, only
names and flags.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelFormat:
    """One model format.

    Attributes:
        name: The ``format`` in ``model.json``.
        weights_file: The weights file the artifact directory holds.
        extra: The optional dependency set (``pip install '.[EXTRA]'``) the loader needs; empty
            when the base install loads it.
        batched: Whether ``batching=auto`` serves it with adaptive batching.
        in_image: Whether the serving image (no extras) serves it, so the ClusterServingRuntime
            advertises it.
    """

    name: str
    weights_file: str
    extra: str = ""
    batched: bool = False
    in_image: bool = True

    @property
    def kserve_name(self) -> str:
        """The KServe ``modelFormat`` name of the Shipyard ServingRuntime (``shipyard-onnx``...)."""
        return f"shipyard-{self.name}"


#: Every model format, by ``model.json`` name.
FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("sklearn-skops", "model.skops"),
        ModelFormat("torchscript", "model.pt", batched=True),
        ModelFormat("onnx", "model.onnx", batched=True),
        ModelFormat("tflite", "model.tflite", extra="tf", in_image=False),
        ModelFormat("keras", "model.keras", extra="tf", in_image=False),
    )
}
