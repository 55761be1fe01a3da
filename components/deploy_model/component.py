from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def deploy_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    test: Input[Dataset],
    model_name: str,
    deployment: Output[Artifact],
    report: Output[Markdown],
    target: str = "kubernetes",
    options: dict = {},
    data: str = "",
) -> str:
    """Checks the blessing, renders the KServe InferenceService and applies it, or smoke-tests it locally.

    Args:
        model: The blessed Model artifact; its URI becomes the storageUri.
        evaluation: evaluate_model's evaluation.json: deploy refuses (NotBlessedError) a model it does not bless.
        test: Test split: rows for the smoke requests.
        model_name: Registered model name (empty derives it from data); the service name derives from it.
        deployment: Output: inferenceservice.yaml (rendered), result.json and server.log (local).
        report: Output: Markdown deployment report.
        target: kubernetes (apply), local (serve on 127.0.0.1, smoke-test V1 and V2, stop) or render.
        options: service_name, namespace, canary_traffic_percent, service_account, min_replicas, deployment_mode,
            resources, gpus, scale_metric, scale_target, tolerations, node_selector, security_context,
            max_replicas, ready_timeout_s, smoke_rows.
        data: The run's data source (the model name derives from it when empty).

    Returns:
        The endpoint (the service URL, or the local URL that answered the smoke test).
    """
    from components.deploy_model import core

    return core.deploy(
        model.path,
        model.uri,
        test.path,
        model_name,
        deployment.path,
        report.path,
        core.DeployConfig.from_dict({**options, "target": target}),
        data,
        evaluation_json=evaluation.path,
    )["endpoint"]
