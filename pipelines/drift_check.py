"""Recurring drift check: new data vs the reference profile; retrain and deploy when it drifted.

Schedule it as a recurring run. ``reference_uri`` points at the ``schema`` artifact a
``train_and_deploy`` run's validate step wrote (it holds the drift profile of the data the model
was trained on). When the dataset drifted, ``train_and_deploy`` runs as a nested pipeline on the
new data. This module only wires.
"""

from kfp import dsl

from components.drift_check.component import drift_check
from components.ingest_data.component import ingest_data
from pipelines.train_and_deploy import train_and_deploy

#: Pipeline parameter → the Config class that parses it (checked by the CLI before a run).
OPTIONS = {
    "ingest": "components.ingest_data.core:IngestConfig",
    "drift": "components.drift_check.core:DriftConfig",
}


@dsl.pipeline(
    name="drift-check",
    description="Shipyard: per-column drift of new data against the training reference; retrain and deploy on drift.",
)
def drift_check_pipeline(
    current_data: str,
    reference_uri: str,
    label: str = "target",
    model_name: str = "",
    ingest: dict = {},
    drift: dict = {},
    deploy_target: str = "kubernetes",
    mlflow_tracking_uri: str = "",
):
    """Checks new data for drift and retrains when it drifted.

    Args:
        current_data: The new data: CSV/Parquet path or gs:// URI, or sklearn:NAME.
        reference_uri: URI of the reference: a validate_data schema artifact (with profile/), a
            profile directory, or a Dataset artifact.
        label: The label column (needed to retrain).
        model_name: Registered model name for the retraining run; empty derives it from current_data.
        ingest: ingest_data options.
        drift: drift_check options (drift_share, per_column, ...).
        deploy_target: Where the retrained model goes: kubernetes, local or render.
        mlflow_tracking_uri: MLflow tracking URI for the retraining run.
    """
    reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Artifact, reimport=False)
    current = ingest_data(source=current_data, label=label, options=ingest)
    current.set_caching_options(False)
    checked = drift_check(reference=reference.output, current=current.outputs["dataset"], options=drift)
    checked.set_caching_options(False)
    with dsl.If(checked.outputs["Output"] == True, name="drifted"):  # noqa: E712 (a KFP condition)
        train_and_deploy(
            data=current_data,
            label=label,
            model_name=model_name,
            ingest=ingest,
            deploy_target=deploy_target,
            mlflow_tracking_uri=mlflow_tracking_uri,
        )
