"""The flagship pipeline: ingest → validate → split → tune → train → quantize → evaluate → register → deploy → roll out.

Deploy and roll out run only when evaluation blessed the model (``dsl.If``); the rollout promotes
the version to ``champion`` or rolls it back and fails the run; an ``ExitHandler`` records the
run's outcome whatever happens. Every choice is a run parameter, except where tuning and training
run on a cluster and how they are retried (the steps that may lose their node to a GPU or spot
preemption): compile-time settings read from ``SHIPYARD_*`` environment variables when this module
is imported (``shipyard compile`` sets them from its flags), the GPU request and the retry count in
:mod:`shipyard.images`, CPU and memory, node selector, tolerations, the checkpoint PVC and the retry
backoff in :mod:`shipyard.placement`; this module only wires. An empty ``model_name`` is derived
from ``data`` inside the steps that use it (:func:`shipyard.names.resolve_model_name`).
"""

from kfp import dsl

from components.deploy_model.component import deploy_model
from components.evaluate_model.component import evaluate_model
from components.ingest_data.component import ingest_data
from components.quantize_model.component import quantize_model
from components.record_outcome.component import record_outcome
from components.register_model.component import register_model
from components.roll_out.component import roll_out
from components.split_data.component import split_data
from components.train_model.component import train_model
from components.tune_hyperparams.component import tune_hyperparams
from components.validate_data.component import validate_data
from shipyard import placement

#: Pipeline parameter → the Config class that parses it inside its component, so the CLI can
#: reject a typo in an options dict before any step runs (and before any retry waits).
OPTIONS = {
    "ingest": "components.ingest_data.core:IngestConfig",
    "validation": "components.validate_data.core:ValidateConfig",
    "split": "components.split_data.core:SplitConfig",
    "tune": "components.tune_hyperparams.core:TuneConfig",
    "train": "components.train_model.core:TrainConfig",
    "quantize": "components.quantize_model.core:QuantizeConfig",
    "evaluate": "components.evaluate_model.core:EvalConfig",
    "deploy": "components.deploy_model.core:DeployConfig",
    "rollout": "components.roll_out.core:RollOutConfig",
    "model_card": "shipyard.modelcard:CardConfig",
}


@dsl.pipeline(
    name="train-and-deploy",
    description="Shipyard flagship: validated data → tuned MLP, GBDT and linear baseline → the best on validation "
    "→ quantized → evaluated → registered in MLflow → KServe InferenceService and a metric-gated canary rollout "
    "when blessed.",
)
def train_and_deploy(
    data: str = "sklearn:breast_cancer",
    label: str = "target",
    model_name: str = "",
    seed: int = 0,
    ingest: dict = {},
    validation: dict = {},
    split: dict = {},
    tune: dict = {},
    train: dict = {},
    quantize: dict = {},
    evaluate: dict = {},
    deploy: dict = {},
    rollout: dict = {},
    model_card: dict = {},
    deploy_target: str = "kubernetes",
    schema_uri: str = "",
    mlflow_tracking_uri: str = "",
):
    """Trains, evaluates and (when blessed) deploys a tabular model.

    Args:
        data: CSV/Parquet path or gs:// URI, or sklearn:NAME (breast_cancer, wine, iris, digits, diabetes).
        label: The label column.
        model_name: Registered model name; the InferenceService name derives from it. Empty derives it
            from data: the dataset name or the file stem as a DNS-1035 label (sklearn:diabetes → diabetes).
        seed: Seed for the split, the tuner and training.
        ingest: ingest_data options (id_columns, categorical, numeric, roles, csv_delimiter).
        validation: validate_data options (min_rows, max_domain_size, severity, fail_on_error, model_ready:
            every feature usable by training and every class with enough rows).
        split: split_data options (train, val, test, stratify).
        tune: tune_hyperparams options (n_trials, timeout_s, search_space, base, storage, ...).
        train: train_model overrides over the tuned parameters (e.g. device; candidate: best, mlp, gbdt
            or linear; families).
        quantize: quantize_model options (variants, objective, max_metric_drop, ...).
        evaluate: evaluate_model options (thresholds, change_thresholds, comparison, slices, fairness,
            force_bless, threshold_objective, ...).
        deploy: deploy_model options (namespace, canary_traffic_percent, service_account, ...).
        rollout: roll_out options: policy (step_weights, interval_s, checks, failure_threshold, webhooks, ...),
            prometheus_url and mode (kubernetes), load_rate (local).
        model_card: the registered version's model card (intended_use, out_of_scope, limitations, owners, ...).
        deploy_target: kubernetes (apply the InferenceService), local (serve and smoke-test on 127.0.0.1) or render.
        schema_uri: A validation schema.json (path or gs://) to enforce; empty infers one from the data.
        mlflow_tracking_uri: MLflow tracking URI; empty uses $MLFLOW_TRACKING_URI in the step's environment.
    """
    outcome = record_outcome(model_name=model_name, tracking_uri=mlflow_tracking_uri, data=data)
    outcome.set_caching_options(False)
    with dsl.ExitHandler(outcome, name="train-and-deploy-run"):
        ingested = ingest_data(source=data, label=label, options=ingest)
        ingested.set_caching_options(False)  # the same URI may hold new data on the next run
        validated = validate_data(dataset=ingested.outputs["dataset"], options=validation, schema_uri=schema_uri)
        parts = split_data(dataset=ingested.outputs["dataset"], seed=seed, options=split).after(validated)
        tuned = tune_hyperparams(
            train=parts.outputs["train"],
            val=parts.outputs["val"],
            seed=seed,
            options=tune,
            tracking_uri=mlflow_tracking_uri,
        )
        # tuning shares training's CPU and memory, not its GPU nodes (its image has no CUDA) nor the PVC
        placement.RETRY.apply(placement.TRAIN.apply_to_tuning(tuned))
        trained = train_model(
            train=parts.outputs["train"],
            val=parts.outputs["val"],
            tuned=tuned.outputs["best_model"],
            params=tuned.outputs["best_params"],
            overrides=train,
            tracking_uri=mlflow_tracking_uri,
        )
        placement.RETRY.apply(placement.TRAIN.apply_to_training(trained))
        quantized = quantize_model(model=trained.outputs["model"], val=parts.outputs["val"], options=quantize)
        evaluated = evaluate_model(
            model=quantized.outputs["quantized"],
            baseline=trained.outputs["baseline"],
            test=parts.outputs["test"],
            val=parts.outputs["val"],
            options=evaluate,
            model_name=model_name,
            tracking_uri=mlflow_tracking_uri,
            data=data,
        ).set_caching_options(False)  # the champion it compares with lives in the registry, outside the cache key
        registered = register_model(
            model=quantized.outputs["quantized"],
            evaluation=evaluated.outputs["evaluation"],
            model_name=model_name,
            blessed=evaluated.outputs["Output"],
            params=tuned.outputs["best_params"],
            tracking_uri=mlflow_tracking_uri,
            kfp_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            data=data,
            dataset=ingested.outputs["dataset"],
            validation=validated.outputs["anomalies"],
            study=tuned.outputs["study"],
            comparison=trained.outputs["comparison_json"],
            quantization=quantized.outputs["table"],
            example=parts.outputs["test"],
            evaluation_html=evaluated.outputs["html"],
            figures=evaluated.outputs["figures"],
            model_card=model_card,
        ).set_caching_options(False)
        # Branch on the single `Output`: kfp.local 2.17 resolves only `<task>-Output` channels in conditions.
        with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a KFP condition, not a Python test)
            deployed = deploy_model(
                model=quantized.outputs["quantized"],
                evaluation=evaluated.outputs["evaluation"],
                test=parts.outputs["test"],
                model_name=model_name,
                target=deploy_target,
                options=deploy,
                data=data,
            ).set_caching_options(False)
            roll_out(
                model=quantized.outputs["quantized"],
                test=parts.outputs["test"],
                deployment=deployed.outputs["deployment"],
                model_name=model_name,
                version=registered.outputs["version"],
                target=deploy_target,
                options=rollout,
                tracking_uri=mlflow_tracking_uri,
                data=data,
            ).set_caching_options(False)  # the champion it rolls out against lives in the registry
