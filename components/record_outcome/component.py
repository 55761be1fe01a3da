from kfp import dsl
from kfp.dsl import Artifact, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_outcome(
    status: dsl.PipelineTaskFinalStatus,
    model_name: str,
    outcome: Output[Artifact],
    tracking_uri: str = "",
    data: str = "",
) -> str:
    """Exit handler: records the run's final state, the failing step and its one-line error, as JSON and in MLflow.

    Args:
        status: Final status of the pipeline (filled in by KFP).
        model_name: Names the MLflow experiment; empty derives it from data.
        outcome: Output: the outcome JSON.
        tracking_uri: MLflow tracking URI (empty: default, see register_model).
        data: The run's data source (the model name derives from it when empty).

    Returns:
        The final state.
    """
    from components.record_outcome import core

    return core.record(
        status.state,
        status.pipeline_job_resource_name,
        status.pipeline_task_name,
        status.error_message,
        model_name,
        tracking_uri,
        outcome.path,
        data,
    )["state"]
