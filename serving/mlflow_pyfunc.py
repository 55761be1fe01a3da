"""A Shipyard Model artifact as an MLflow Model: the ``python_function`` flavor over the safe loader.

:func:`save_pyfunc` writes an MLflow Model directory (``MLmodel``, requirements, the signature and
an input example) whose ``python_function`` flavor is :class:`ShipyardPyfunc`. The Shipyard
artifact itself is copied unchanged under ``artifacts/shipyard`` (:data:`shipyard.registry.SHIPYARD_SUBDIR`),
and :meth:`ShipyardPyfunc.load_context` opens it with :func:`serving.formats.load_model`: every
file is checked against its sha256 first and no pickle is loaded. The model is saved as *code*
(MLflow's models-from-code): the directory holds a three-line Python file that imports this class
from the installed package and hands it to ``mlflow.models.set_model``, so the MLflow Model holds no
pickle either; it loads wherever Shipyard is installed (the Shipyard images, or ``pip install -e .``).

``predict`` takes a DataFrame of raw rows (the model's input features, nulls where the signature
allows them) and returns what the server's answer holds: per class a column of probabilities named
by the label (classification), or one column ``prediction`` (regression), in float64 of the same
float32 scores the server returns.

Importing this module imports MLflow; nothing in ``serving`` imports it.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PythonModel

from shipyard.artifacts import ModelManifest, read_model_manifest
from shipyard.registry import SHIPYARD_ARTIFACT, SHIPYARD_SUBDIR

#: The regression output column.
PREDICTION = "prediction"
#: The file MLflow's models-from-code runs to get the model (written into the MLflow Model dir).
_LOADER_CODE = (
    "# Written by Shipyard (serving/mlflow_pyfunc.py): the model is the Shipyard artifact under\n"
    f"# {SHIPYARD_SUBDIR}, loaded by Shipyard's hash-checked loader; no pickle.\n"
    "from mlflow.models import set_model\n\n"
    "from serving.mlflow_pyfunc import ShipyardPyfunc\n\n"
    "set_model(ShipyardPyfunc())\n"
)
#: Where a format's loader comes from (pip requirement names), beside shipyard and mlflow.
_FORMAT_REQUIREMENTS = {
    "sklearn-skops": ("scikit-learn", "skops"),
    "torchscript": ("torch",),
    "onnx": ("onnxruntime",),
    "keras": ("tensorflow",),
    "tflite": ("tensorflow",),
}


class ShipyardPyfunc(PythonModel):  # type: ignore[misc]
    """The ``python_function`` flavor of a Shipyard model: load through the safe loader, score raw rows."""

    def load_context(self, context: Any) -> None:
        """Verifies and loads the Shipyard artifact the MLflow Model carries.

        Raises:
            ArtifactError / IntegrityError / UnsafeArtifactError: As :func:`serving.formats.load_model`.
        """
        from serving.formats import load_model

        self._model = load_model(context.artifacts[SHIPYARD_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Scores raw rows as the server does (MLflow reads the ``pd.DataFrame`` hint: rows come as a frame).

        Args:
            context: MLflow's model context (unused after loading).
            model_input: A DataFrame with the model's input features (extra columns are ignored).
            params: Unused; MLflow passes the signature's params.

        Returns:
            A DataFrame: one float column per class, named by its label, or ``prediction``.

        Raises:
            DataValidationError: A feature is missing, of the wrong type, or null where it may not be.
        """
        model = self._model
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        scores = model.score_frame(model_input, "model input")
        index = model_input.index
        if model.is_classifier:
            return pd.DataFrame(scores.astype("float64"), columns=output_names(model.manifest), index=index)
        return pd.DataFrame({PREDICTION: scores.astype("float64")}, index=index)


def output_names(manifest: ModelManifest) -> list[str]:
    """The output columns: one per class (the label as text), or ``prediction`` for regression."""
    if manifest.task == "regression":
        return [PREDICTION]
    return [str(label) for label in manifest.label_names]


def signature(manifest: ModelManifest, model_json: str = "model.json") -> Any:
    """The MLflow signature of a Shipyard model: its raw input features and its outputs.

    Each feature is a column of its training dtype (``double`` for floats, ``long`` for integers,
    ``boolean``, ``string``); a feature the model accepts nulls in (its preprocessing imputes them,
    or codes them as missing) is not ``required``.

    Args:
        manifest: The model's ``model.json``.
        model_json: Where the manifest came from, for messages.

    Returns:
        An ``mlflow.models.ModelSignature``.

    Raises:
        DataValidationError: The manifest holds a malformed ``preprocessing``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    from serving.preprocess import Preprocessing

    prep = (
        Preprocessing.plain(manifest.feature_names)
        if manifest.preprocessing is None
        else Preprocessing.from_dict(manifest.preprocessing, model_json)
    )
    columns = {c.name: c for c in manifest.input_schema}
    inputs: list[ColSpec | TensorSpec] = []
    for f in prep.features:
        dtype = columns[f.name].dtype if f.name in columns else f.dtype
        nullable = f.nullable or (f.name in columns and columns[f.name].nullable)
        inputs.append(ColSpec(_mlflow_type(dtype, f.kind), f.name, required=not nullable))
    outputs: list[ColSpec | TensorSpec] = [ColSpec("double", name) for name in output_names(manifest)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _mlflow_type(dtype: str, kind: str) -> str:
    d = dtype.lower()
    if d in ("bool", "boolean"):
        return "boolean"
    if d.startswith(("int", "uint")):
        return "long"
    if d.startswith("float") or (kind == "numeric" and d not in ("object", "string", "str", "category")):
        return "double"
    return "string"


def requirements(manifest: ModelManifest) -> list[str]:
    """The pip requirements written beside the model: mlflow, pandas, numpy and the format's framework,
    pinned to the versions installed here where they are installed.

    Shipyard itself is not listed: it is not on PyPI, and a ``shipyard`` requirement would have an
    environment manager install whatever package of that name PyPI holds. The model loads where
    Shipyard is installed (its images, or ``pip install -e .``): ``mlflow models serve
    --env-manager local``.
    """
    from importlib import metadata

    out: list[str] = []
    for name in ("mlflow", "pandas", "numpy", *_FORMAT_REQUIREMENTS.get(manifest.format, ())):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def save_pyfunc(model_dir: str | Path, path: str | Path, input_example: Any = None) -> dict[str, Any]:
    """Writes the MLflow Model of the Shipyard artifact at ``model_dir`` into the new directory ``path``.

    Args:
        model_dir: The Shipyard Model artifact (verified here before anything is written).
        path: The MLflow Model directory to create (must not exist).
        input_example: A few raw rows (a DataFrame of the input features), or None.

    Returns:
        ``{"signature": {"inputs", "outputs"} as MLflow writes them, "requirements": [...]}``.

    Raises:
        ArtifactError / IntegrityError: The artifact is malformed or altered.
        DataValidationError: Its ``model.json`` holds a malformed ``preprocessing``.
    """
    manifest = read_model_manifest(model_dir, verify=True)
    sig = signature(manifest, f"{model_dir}/model.json")
    reqs = requirements(manifest)
    if input_example is not None:
        input_example = input_example[[c.name for c in manifest.input_schema]].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="shipyard-pyfunc-") as tmp:
        code = Path(tmp) / "shipyard_model.py"
        code.write_text(_LOADER_CODE)
        carried = Path(tmp) / SHIPYARD_ARTIFACT  # MLflow keeps the directory's name: artifacts/shipyard
        shutil.copytree(model_dir, carried)
        with warnings.catch_warnings():
            # MLflow suggests type hints on predict and an input example; the signature is explicit here.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=str(code),
                artifacts={SHIPYARD_ARTIFACT: str(carried)},
                signature=sig,
                input_example=input_example,
                pip_requirements=reqs,
                metadata={"shipyard_format": manifest.format, "shipyard_task": manifest.task},
            )
    return {"signature": sig.to_dict(), "requirements": reqs}


def example_rows(frames: Sequence[Any], features: Sequence[str], rows: int = 5) -> Any:
    """The first ``rows`` rows of the first frame that has every feature (the input example), or None."""
    for df in frames:
        if df is not None and all(f in df.columns for f in features) and len(df):
            return df[list(features)].head(rows).reset_index(drop=True)
    return None
