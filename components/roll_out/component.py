from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def roll_out(
    model: Input[Model],
    test: Input[Dataset],
    deployment: Input[Artifact],
    model_name: str,
    version: int,
    rollout: Output[Artifact],
    report: Output[HTML],
    target: str = "kubernetes",
    options: dict = {},
    tracking_uri: str = "",
    data: str = "",
) -> str:
    """Rolls the deployed version out as a canary against @champion; promotes it or rolls it back.

    Args:
        model: The deployed Model artifact (the canary).
        test: Test split: the rows of the local target's load.
        deployment: deploy_model's output (result.json: target, service).
        model_name: Registered model name (empty derives it from data).
        version: The registered version (register_model's output).
        rollout: Output: rollout.json and rollout.html (and, locally, the processes' logs and load.json).
        report: Output: the RolloutReport as HTML (timeline of steps, weights, metric values, decisions).
        target: kubernetes, local or render (as deploy_model's).
        options: policy (steps, interval_s, checks, thresholds, webhooks...), champion_alias, load_rate,
            load_rows, load_threads, namespace, service_name, mode (serverless or raw), prometheus_url.
        tracking_uri: MLflow tracking URI (empty: $MLFLOW_TRACKING_URI or the embedded default).
        data: The run's data source (the model name derives from it when empty).

    Returns:
        The outcome: Succeeded or Skipped (a rollback fails the step with RolloutAbortedError).
    """
    from components.roll_out import core

    return core.roll_out(
        model.path,
        test.path,
        deployment.path,
        model_name,
        version,
        tracking_uri,
        rollout.path,
        report.path,
        core.RollOutConfig.from_dict({**options, "target": target}),
        data,
    )["phase"]
