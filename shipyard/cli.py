"""The ``shipyard`` command: compile, run, serve, render manifests and manage registered models.

User errors (a missing file, an unknown parameter, a bad artifact) print one line and exit
non-zero; only bugs print a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipyard import __version__
from shipyard.errors import ConfigError, ShipyardError

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return int(text)


def _placement_type(check: str, result: bool = False) -> Any:
    """argparse type: ``text`` (or, with ``result``, what it parses to) when :mod:`shipyard.placement`'s
    ``check`` accepts it; its ConfigError becomes the usage error."""

    def parse(text: str) -> Any:
        from shipyard import placement

        try:
            parsed = getattr(placement, check)(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
        return parsed if result else text

    return parse


def _request_limit(quantity: str) -> Any:
    """argparse type: ``REQUEST[:LIMIT]`` of :mod:`shipyard.placement`'s ``quantity`` → ``(request, limit)``.

    One value is both; an empty side is none; the request may not exceed the limit.
    """

    def parse(text: str) -> tuple[str, str]:
        from shipyard import placement

        request, colon, limit = (part.strip() for part in text.partition(":"))
        if not colon:
            limit = request
        size = getattr(placement, quantity)
        try:
            sizes = [size(part) for part in (request, limit) if part]
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
        if len(sizes) == 2 and sizes[0] > sizes[1]:
            raise argparse.ArgumentTypeError(f"{text!r}: the request {request} exceeds the limit {limit}")
        return request, limit

    return parse


def _backoff_factor(text: str) -> str:
    """argparse type: a number >= 1."""
    try:
        factor = float(text)
    except ValueError:
        factor = float("nan")
    if not 1 <= factor < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 1, like 2, got {text!r}")
    return text


def _name(text: str) -> str:
    """argparse type: a model name usable in a URL path."""
    from shipyard.names import GIVEN_NAME

    if not GIVEN_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, '-', '_' and '.' (it becomes a URL path)")
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shipyard",
        description="Kubeflow Pipelines components from raw data to a KServe canary rollout.",
        epilog="Start with: shipyard run train_and_deploy --local",
    )
    p.add_argument("--version", action="version", version=f"shipyard {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser(
        "compile",
        help="write one KFP IR YAML per pipeline, ready to upload in the KFP UI",
        description="Compile pipelines to KFP IR YAML (upload in the KFP UI or with kfp.Client). Where tune and "
        "train run and how they are retried are compile-time settings: each flag below overrides its SHIPYARD_* "
        "environment variable (shipyard/images.py, shipyard/placement.py); a local run ignores them.",
    )
    c.add_argument("--output", default="compiled", help="directory for the YAML files (default: %(default)s)")
    c.add_argument("--pipeline", action="append", help="only this pipeline (repeatable; default: all)")
    c.add_argument("--train-gpus", type=_count, help="GPUs the training step requests (default 1; 0 for CPU only)")
    c.add_argument(
        "--accelerator-type",
        type=_placement_type("check_label_key"),
        metavar="TYPE",
        help="the accelerator's resource name (default nvidia.com/gpu)",
    )
    c.add_argument(
        "--train-cpu",
        type=_request_limit("cpu_quantity"),
        metavar="REQUEST[:LIMIT]",
        help="CPUs the tune and train steps request and may use at most, like 2:8 or 500m; one value sets both; "
        "an empty side sets none (default 2:8)",
    )
    c.add_argument(
        "--train-memory",
        type=_request_limit("memory_quantity"),
        metavar="REQUEST[:LIMIT]",
        help="memory of the tune and train steps, the same way, like 8Gi:16Gi (default 8Gi:16Gi)",
    )
    c.add_argument(
        "--node-selector",
        type=_placement_type("parse_node_selector", result=True),
        action="append",
        metavar="KEY=VALUE",
        help="a node label the training pod must land on (repeatable; default none)",
    )
    c.add_argument(
        "--toleration",
        type=_placement_type("parse_tolerations", result=True),
        action="append",
        metavar="TOLERATION",
        help="a taint the training pod tolerates: key[=value][:Effect] (no value: any value; no effect: any) or "
        "Pod-spec JSON, an object or a list (repeatable; replaces the default, which with GPUs tolerates "
        "the accelerator's resource name, e.g. nvidia.com/gpu:NoSchedule; '[]' for none)",
    )
    c.add_argument(
        "--checkpoint-pvc",
        type=_placement_type("check_pvc_name"),
        metavar="NAME",
        help="a PersistentVolumeClaim mounted on the training step for its checkpoints, so that a retry resumes "
        "(default none)",
    )
    c.add_argument(
        "--checkpoint-mount",
        type=_placement_type("check_mount_path"),
        metavar="PATH",
        help="where that PVC is mounted; the step's $SHIPYARD_CHECKPOINT_URI (default /mnt/checkpoints)",
    )
    c.add_argument(
        "--step-retries",
        type=_count,
        help="retries of the tune and train steps after a preemption (default 2; 0 for none)",
    )
    c.add_argument(
        "--retry-backoff",
        type=_placement_type("duration_seconds"),
        metavar="DURATION",
        help="wait before the first retry, like 30s, 5m or 1h (default 30s)",
    )
    c.add_argument(
        "--retry-backoff-factor",
        type=_backoff_factor,
        metavar="FACTOR",
        help="each next wait is the last one times this, a number >= 1 (default 2)",
    )
    c.add_argument(
        "--retry-max-duration",
        type=_placement_type("duration_seconds"),
        metavar="DURATION",
        help="all attempts together must end within this of the step's first start (Argo's maxDuration also "
        "cuts a running retry short): make it longer than the longest training (default 24h)",
    )
    c.add_argument("--image-tag", help="tag of the Shipyard images (default: the package version)")
    c.add_argument("--image-registry", help="registry of the Shipyard images (default: ghcr.io/shipyard-ml)")

    r = sub.add_parser(
        "run",
        help="run a pipeline locally (kfp.local) or submit it to a KFP cluster",
        description="Run a pipeline. --local runs every step as a subprocess on this machine.",
    )
    r.add_argument("pipeline", metavar="PIPELINE", help="pipeline name (see `shipyard pipelines`)")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="run with kfp.local's SubprocessRunner")
    where.add_argument("--host", help="submit to the KFP API at this URL instead")
    r.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter; VALUE is parsed as JSON when it can be (repeatable)",
    )
    r.add_argument(
        "--output",
        default="shipyard-output",
        help="local runs: artifacts, logs and the MLflow store go here (default: %(default)s)",
    )
    r.add_argument("--verbose", action="store_true", help="stream the components' logs")

    s = sub.add_parser(
        "serve",
        help="serve a model artifact with KServe's ModelServer (V1 and V2 routes)",
        description="Serve a Shipyard model artifact over HTTP until SIGTERM/SIGINT.",
    )
    s.add_argument("model_dir", metavar="MODEL_DIR", help="a Shipyard model artifact directory (with model.json)")
    s.add_argument("--name", required=True, type=_name, help="model name in the routes, e.g. /v1/models/NAME:predict")
    s.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s; 0.0.0.0 in containers)"
    )
    s.add_argument("--port", type=_port, default=8080, help="HTTP port, 1..65535 (default: %(default)s)")
    s.add_argument(
        "--batching",
        choices=("auto", "on", "off"),
        help="adaptive batching (default auto: on for TorchScript/ONNX, off for scikit-learn)",
    )
    s.add_argument("--max-batch-size", type=int, help="most rows per batched model call (default 64)")
    s.add_argument(
        "--max-batch-wait-ms", type=float, help="how long a batch with company may wait for more (default 0)"
    )
    s.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413 (default 8 MiB)")
    s.add_argument("--payload-log", help="write requests and responses as JSON lines to this directory or gs:// URI")
    s.add_argument("--shutdown-delay", type=float, help="seconds readiness is 503 after SIGTERM before stopping")
    s.add_argument("--grace-period", type=float, help="seconds in-flight requests get to finish (default 30)")
    s.add_argument(
        "--fault-error-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="rollout drills only: answer this share (0..1) of inference requests with HTTP 500, deterministically "
        "(the n-th fails when floor(n*R) > floor((n-1)*R)); default 0, off",
    )
    s.add_argument(
        "--fault-delay-ms",
        type=float,
        default=0.0,
        metavar="D",
        help="rollout drills only: every inference request waits D ms before it is answered; default 0, off",
    )
    s.epilog = (
        "Every option but the --fault-* drill flags can also be set as a variable: SHIPYARD_SERVE_BATCHING, "
        "_MAX_BATCH_SIZE, _MAX_BATCH_WAIT_MS, _MAX_BODY_BYTES, _PAYLOAD_LOG, _SHUTDOWN_DELAY_S, _GRACE_PERIOD_S "
        "(flags win)."
    )

    v = sub.add_parser(
        "validate",
        help="validate a CSV/Parquet file (schema, anomalies) and check it for drift against a reference",
        description="Validate DATA as the pipeline's ingest_data and validate_data steps do (the same code: "
        "column roles from --label/--id-columns, options from --validation): infer or enforce a schema, list "
        "anomalies, and with --reference check drift. Exit 0: no error-severity anomaly and no dataset drift; "
        "1: one of them; 2: unusable input or usage error.",
    )
    v.add_argument("data", metavar="DATA", help="a .csv/.csv.gz/.parquet path or gs:// URI, or sklearn:NAME")
    v.add_argument("--label", default="target", help="the label column, as the pipeline's label (default: %(default)s)")
    v.add_argument(
        "--no-label", action="store_true", help="DATA has no label column (e.g. served requests): all are features"
    )
    v.add_argument("--id-columns", default="", metavar="A,B", help="comma-separated id columns (ingest's id_columns)")
    v.add_argument(
        "--validation",
        default="{}",
        metavar="JSON",
        help="validate_data options as the pipeline's validation parameter, e.g. '{\"min_rows\": 100}'",
    )
    v.add_argument("--schema", help="a schema.json (or schema artifact dir) to enforce; default: infer one")
    v.add_argument(
        "--reference", help="drift reference: a data file, a Dataset dir, a schema dir with profile/, or a profile dir"
    )
    v.add_argument(
        "--report", metavar="DIR", help="write schema.json, profile/, validation.{json,md}, drift.{json,md,html} here"
    )
    v.add_argument("--format", choices=("text", "json"), default="text", help="stdout format (default: text)")
    v.add_argument("--delimiter", default=",", help="CSV delimiter, ingest's csv_delimiter (default: ',')")

    m = sub.add_parser(
        "manifests",
        help="render generated Kubernetes manifests (ClusterServingRuntime, example InferenceServices)",
    )
    m.add_argument("--output", default="manifests/generated", help="directory (default: %(default)s)")

    sub.add_parser("pipelines", help="list the pipelines and their parameters")
    _models_parser(sub)
    _rollout_parser(sub)
    return p


def _rollout_parser(sub: Any) -> None:
    """``shipyard rollout start | status | promote | abort`` (serving.rollout, either backend)."""
    g = sub.add_parser(
        "rollout",
        help="progressive canary rollout: start one, see its state, promote it or abort it",
        description="A metric-gated canary rollout (Flagger semantics). --local runs the stable model and the "
        "canary as `shipyard serve` processes on 127.0.0.1 behind HAProxy, scraped by Prometheus; --service "
        "drives a KServe InferenceService.",
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--workdir", help="local: the rollout's directory (logs, state.json, the report)")
    where.add_argument("--service", help="kubernetes: the InferenceService name")
    where.add_argument("--namespace", default="default", help="kubernetes: its namespace (default: %(default)s)")
    where.add_argument(
        "--mode", choices=("serverless", "raw"), default="serverless", help="kubernetes: deployment mode"
    )
    rsub = g.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    st = rsub.add_parser("start", parents=[where], help="run a rollout in the foreground until it ends")
    st.add_argument("--stable", help="local: the stable model: a Model directory or models:/NAME@ALIAS|/VERSION")
    st.add_argument("--canary", help="local: the canary: a Model directory or models:/NAME@ALIAS|/VERSION")
    st.add_argument("--name", type=_name, default="model", help="the served model name (default: %(default)s)")
    st.add_argument("--policy", default="{}", help="rollout policy as JSON, or @FILE holding JSON")
    st.add_argument("--load-rate", type=float, default=0.0, help="local: requests/s of --load-body through HAProxy")
    st.add_argument("--load-body", help="local: a JSON request body (V1) for that load")
    st.add_argument("--prometheus-url", default="", help="kubernetes: the cluster's Prometheus")
    st.add_argument(
        "--task",
        choices=("classification", "regression"),
        default="classification",
        help="kubernetes: the model's task, which picks the default checks (local reads it from the canary)",
    )
    st.add_argument("--tracking-uri", default="", help="MLflow tracking URI for models:/ sources")
    rsub.add_parser("status", parents=[where], help="the rollout's published state")
    rsub.add_parser("promote", parents=[where], help="promote now, skipping the remaining steps")
    rsub.add_parser("abort", parents=[where], help="roll back now (canary weight 0)")


def _models_parser(sub: Any) -> None:
    """``shipyard models list | describe | promote | rollback`` (the MLflow Model Registry)."""
    g = sub.add_parser(
        "models",
        help="registered models: list, describe, promote to champion, roll back",
        description="The MLflow Model Registry as the pipeline fills it. Exit 2 for an unknown model, version or "
        "alias (the message says what exists).",
    )
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--tracking-uri",
        default="",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///$SHIPYARD_HOME/mlflow.db)",
    )
    store.add_argument("--json", action="store_true", help="print JSON instead of text")
    msub = g.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", parents=[store], help="every registered model, its versions and aliases")
    d = msub.add_parser("describe", parents=[store], help="one version: aliases, run, source and its tags")
    d.add_argument("name", metavar="NAME")
    d.add_argument("ref", metavar="VERSION|@ALIAS", nargs="?", default="", help="default: the latest version")
    pr = msub.add_parser(
        "promote", parents=[store], help="move @champion to VERSION; the champion before becomes @previous"
    )
    pr.add_argument("name", metavar="NAME")
    pr.add_argument("version", metavar="VERSION")
    pr.add_argument("--force", action="store_true", help="promote a version registered unblessed too")
    rb = msub.add_parser("rollback", parents=[store], help="move @champion back to @previous")
    rb.add_argument("name", metavar="NAME")


def parse_sets(pipeline: Any, sets: Sequence[str]) -> dict[str, Any]:
    """Turns ``KEY=VALUE`` strings into pipeline arguments, checked against its signature.

    Raises:
        ConfigError: Malformed item, unknown key, or a value of the wrong type.
    """
    params = inspect.signature(pipeline.pipeline_func).parameters
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in params:
            raise ConfigError(
                f"--set {key}: unknown parameter of {pipeline.name}; expected one of: {', '.join(params)}"
            )
        want = params[key].annotation
        want = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list}.get(want, want)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if want is str:
            value = raw
        elif want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(want, type) and not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"--set {key}: expected {want.__name__}, got {raw!r}")
        out[key] = value
    return out


def check_required(pipeline: Any, arguments: dict[str, Any], name: str) -> None:
    """Refuses a run that lacks a pipeline parameter without a default, before anything runs.

    Args:
        pipeline: The ``@dsl.pipeline`` object.
        arguments: The parameters given (``--set``).
        name: The pipeline's name in the CLI, for the message.

    Raises:
        ConfigError: Naming every missing parameter.
    """
    params = inspect.signature(pipeline.pipeline_func).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in arguments]
    if missing:
        sets = " ".join(f"--set {missed}=..." for missed in missing)
        raise ConfigError(
            f"{name}: missing required parameter(s) {', '.join(missing)}; pass {sets} (see `shipyard pipelines`)"
        )


def cmd_compile(args: argparse.Namespace) -> int:
    from shipyard import placement

    # the settings are read from the environment when the pipeline modules are imported, below
    for flag, env in (
        ("train_gpus", "SHIPYARD_TRAIN_GPUS"),
        ("accelerator_type", "SHIPYARD_ACCELERATOR_TYPE"),
        ("checkpoint_pvc", placement.CHECKPOINT_PVC),
        ("checkpoint_mount", placement.CHECKPOINT_MOUNT),
        ("step_retries", "SHIPYARD_STEP_RETRIES"),
        ("retry_backoff", placement.RETRY_BACKOFF),
        ("retry_backoff_factor", placement.RETRY_BACKOFF_FACTOR),
        ("retry_max_duration", placement.RETRY_MAX_DURATION),
        ("image_tag", "SHIPYARD_IMAGE_TAG"),
        ("image_registry", "SHIPYARD_IMAGE_REGISTRY"),
    ):
        if getattr(args, flag) is not None:
            os.environ[env] = str(getattr(args, flag))
    for flag, (request_env, limit_env) in (
        ("train_cpu", (placement.CPU_REQUEST, placement.CPU_LIMIT)),
        ("train_memory", (placement.MEMORY_REQUEST, placement.MEMORY_LIMIT)),
    ):
        if getattr(args, flag) is not None:
            os.environ[request_env], os.environ[limit_env] = getattr(args, flag)
    if args.node_selector is not None:
        os.environ[placement.NODE_SELECTOR] = json.dumps(
            {k: v for labels in args.node_selector for k, v in labels.items()}
        )
    if args.toleration is not None:
        os.environ[placement.TOLERATIONS] = json.dumps([t.to_dict() for given in args.toleration for t in given])
    from kfp import compiler

    import pipelines

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.pipeline or list(pipelines.PIPELINES):
        target = out / f"{name}.yaml"
        compiler.Compiler().compile(pipelines.load(name), str(target))
        print(f"wrote {target}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import pipelines

    pipeline = pipelines.load(args.pipeline)
    arguments = parse_sets(pipeline, args.sets)
    check_required(pipeline, arguments, args.pipeline)
    model_name = pipelines.preflight(args.pipeline, arguments, local=not args.host)
    if args.host:
        from shipyard.submit import submit

        return submit(pipeline, arguments, args.host)
    # the steps inherit it: MLflow artifacts of a database store land under --output
    os.environ.setdefault("SHIPYARD_MLFLOW_ARTIFACT_ROOT", str(Path(args.output).resolve() / "mlartifacts"))
    from shipyard import localrun
    from shipyard.report import text_table

    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    params = inspect.signature(pipeline.pipeline_func).parameters
    store = f"sqlite:///{output / 'mlflow.db'}"
    if "mlflow_tracking_uri" in params:
        arguments.setdefault("mlflow_tracking_uri", store)
    if "deploy_target" in params:
        arguments.setdefault("deploy_target", "local")
    print(f"running {pipeline.name} locally; logs and artifacts under {output}", flush=True)
    from components import tracking

    # KFP 2.17's shape: one MLflow run for the pipeline run, the steps' runs nested under it
    uri = tracking.tracking_uri(arguments.get("mlflow_tracking_uri", ""))
    with tracking.pipeline_run(uri, f"shipyard/{model_name or pipeline.name}", pipeline.name) as parent:
        result = localrun.run(pipeline, arguments, output, verbose=args.verbose)
        if parent is not None:
            parent.failed = result.error is not None
    run_dir, log = result.run_dir, result.log_path
    rows = localrun.summarize(result, localrun.planned_tasks(pipeline))
    print()
    print(
        text_table(
            ["stage", "status", "key figure", "artifacts (run directory/stage/...)"],
            [(r.task, r.status, r.figure, r.where) for r in rows],
        )
    )
    print(f"run directory: {run_dir}")
    print(f"log:           {log}")
    if model_name:
        print(f"model name:    {model_name}")
    if "mlflow_tracking_uri" in params:
        uri = arguments["mlflow_tracking_uri"]
        print(f"MLflow store:  {uri}")
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        print(f"MLflow UI:     {mlflow_bin} ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000")
    result.raise_for_failure()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.config import ServeConfig
    from serving.guard import Faults
    from serving.server import serve

    config = ServeConfig.from_env(
        {
            "batching": args.batching,
            "max_batch_size": args.max_batch_size,
            "max_batch_wait_ms": args.max_batch_wait_ms,
            "max_body_bytes": args.max_body_bytes,
            "payload_log": args.payload_log,
            "shutdown_delay_s": args.shutdown_delay,
            "grace_period_s": args.grace_period,
        }
    )
    faults = Faults(error_rate=args.fault_error_rate, delay_ms=args.fault_delay_ms)
    serve(args.model_dir, args.name, args.host, args.port, config, faults if faults.active else None)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    from components.drift_check import core as drift
    from components.ingest_data import core as ingest
    from components.validate_data import core as validation
    from shipyard.report import text_table

    try:
        options = json.loads(args.validation)
    except ValueError as exc:
        raise ConfigError(
            f"--validation: not JSON ({exc}); expected an object such as '{{\"min_rows\": 100}}'"
        ) from exc
    ids = tuple(c.strip() for c in args.id_columns.split(",") if c.strip())
    ingest_config = ingest.IngestConfig.from_dict(
        {"label": args.label, "id_columns": ids, "csv_delimiter": args.delimiter}
    )
    config = validation.ValidateConfig.from_dict(options)
    label = None if args.no_label else ingest_config.label
    drift_config = drift.DriftConfig()
    out = Path(args.report) if args.report else None
    with tempfile.TemporaryDirectory(prefix="shipyard-validate-") as tmp:
        # Unusable input (file, label, schema, reference) is a usage error (exit 2), not a finding (exit 1).
        try:
            if args.schema:  # a bad --schema is named before the data is read
                validation.load_schema(args.schema)
            df = ingest.read_source(args.data, ingest_config.csv_delimiter)
            if label is not None and label not in df.columns:
                raise ConfigError(
                    f"{args.data}: no column {label!r} to be the label; name it with --label, or pass --no-label"
                )
            dataset = str(Path(tmp) / "dataset")
            ingest.write_frame(df, args.data, dataset, label, ids)
            profile = _reference_profile(args, df, ids, drift_config) if args.reference else None
            schema_dir = out if out is not None else Path(tmp) / "schema"
            summary, anomalies = validation.check_dataset(dataset, str(schema_dir), config, args.schema)
        except ConfigError:
            raise
        except ShipyardError as exc:
            raise ConfigError(str(exc)) from exc
    result: dict[str, Any] = {
        "data": args.data,
        "validation": summary,
        "anomalies": [dataclasses.asdict(a) for a in anomalies],
    }
    if profile is not None:
        result["drift"] = drift.check(profile, df, drift_config)
    failed = summary["errors"] > 0 or bool(result.get("drift", {}).get("dataset_drift"))
    if out is not None:
        validation.write_reports(
            summary, anomalies, out / "validation.json", out / "validation.md", out / "validation.html"
        )
        if "drift" in result:
            drift.write_reports(result["drift"], out / "drift.json", out / "drift.md", out / "drift.html")
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(validation.describe(summary, anomalies, text_table), end="")
        if "drift" in result:
            print("\ndrift: " + drift.describe(result["drift"], text_table), end="")
    return EXIT_FAILURE if failed else 0


def _reference_profile(args: argparse.Namespace, df: Any, ids: tuple[str, ...], config: Any) -> Any:
    """The drift reference: a profile, schema or Dataset directory, or a data file profiled here
    (its feature and label columns that DATA has, as the pipeline's profile holds)."""
    from components.drift_check import core as drift
    from components.ingest_data.core import read_source
    from shipyard import storage

    ref = Path(args.reference)
    data_file = ref.suffix in (".csv", ".gz", ".parquet", ".pq") or args.reference.startswith("sklearn:")
    if ref.is_dir() or not data_file:
        storage.check_supported(args.reference, "a local directory, or a data file (local, gs:// or sklearn:NAME)")
        return drift.load_reference(args.reference, config)
    ref_df = read_source(args.reference, args.delimiter)
    return drift.build_profile(ref_df, [c for c in ref_df.columns if c in df.columns and c not in ids])


def cmd_manifests(args: argparse.Namespace) -> int:
    import yaml

    from serving.rollout.isvc import example_manifests
    from shipyard.artifacts import write_text

    for filename, manifest in example_manifests().items():
        target = Path(args.output) / filename
        write_text(
            target,
            "# Generated by `shipyard manifests` (make manifests); do not edit.\n"
            + yaml.safe_dump(manifest, sort_keys=False),
        )
        print(f"wrote {target}")
    return 0


def cmd_pipelines(args: argparse.Namespace) -> int:
    import pipelines

    print("Set a parameter with --set NAME=VALUE (VALUE is read as JSON where it parses).")
    for name in pipelines.PIPELINES:
        p = pipelines.load(name)
        print(f"\n{name}: {p.description}")
        docs = _param_docs(p.pipeline_func)
        params = list(inspect.signature(p.pipeline_func).parameters.values())
        rows = [(param.name, _type_name(param.annotation), _default_text(param.default)) for param in params]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for pname, kind, default in rows:
            line = f"  {pname:<{widths[0]}}  {kind:<{widths[1]}}  {default:<{widths[2]}}  {docs.get(pname, '')}"
            print(line.rstrip())
    return 0


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _default_text(default: Any) -> str:
    """``required``, or the default as it would be written after ``--set NAME=``."""
    if default is inspect.Parameter.empty:
        return "required"
    return "default " + json.dumps(default)


def _param_docs(func: Any) -> dict[str, str]:
    """Parameter name → its description under ``Args:`` in a Google-style docstring (one line)."""
    docs: dict[str, str] = {}
    lines = (inspect.getdoc(func) or "").splitlines()
    if "Args:" not in lines:
        return docs
    current = None
    for line in lines[lines.index("Args:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^ {4}(\w+): (.*)$", line)
        if entry:
            current = entry.group(1)
            docs[current] = entry.group(2).strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


def cmd_models(args: argparse.Namespace) -> int:
    import dataclasses

    from mlflow.exceptions import MlflowException

    from components.register_model.core import resolve_tracking_uri
    from shipyard import rdb, registry
    from shipyard.errors import RegistryError
    from shipyard.report import text_table

    uri = resolve_tracking_uri(args.tracking_uri)
    result: Any
    try:
        client = registry.client_for(uri)
        if args.models_command == "list":
            result = registry.list_models(client)
        elif args.models_command == "describe":
            result = registry.describe(client, args.name, args.ref)
        elif args.models_command == "promote":
            if not args.version.isdigit():
                raise RegistryError(f"promote: VERSION {args.version!r} is not a version number (e.g. 3)")
            result = registry.promote(client, args.name, args.version, allow_unblessed=args.force)
        else:
            result = registry.rollback(client, args.name)
    except RegistryError as exc:  # an unknown name, version or alias is a usage error
        raise ConfigError(str(exc)) from exc
    except MlflowException as exc:  # the store's fault (unreachable, refused): one line, not a traceback
        raise ConfigError(f"models: the MLflow store {rdb.redact(uri)} answered: {exc.message}") from exc
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    if args.models_command == "list":
        if not result:
            print(f"no registered models in {rdb.redact(uri)}")
            return 0
        rows = [
            (m["name"], m["versions"], m["latest"], ", ".join(f"@{a} → {v}" for a, v in m["aliases"].items()))
            for m in result
        ]
        print(text_table(["name", "versions", "latest", "aliases"], rows), end="")
    elif args.models_command == "describe":
        aliases = ", ".join(f"@{a}" for a in result["aliases"]) or "none"
        for key, value in (
            ("model", f"{result['name']} version {result['version']}"),
            ("aliases", aliases),
            ("status", result["status"]),
            ("created", result["created"]),
            ("run", result["run_id"]),
            ("source", result["source"]),
        ):
            print(f"{key + ':':<9} {value}")
        print()
        print(text_table(["tag", "value"], sorted(result["tags"].items())), end="")
    else:
        print(result["message"])
    return 0


def _rollout_model(source: str, tracking_uri: str, dst: str, side: str) -> str:
    """A Model directory for ``--stable`` / ``--canary``: the directory itself, or a registered version downloaded."""
    from components.register_model.core import resolve_tracking_uri
    from shipyard import registry

    if not source:
        raise ConfigError(f"rollout start --local: --{side} is required (a Model directory or models:/NAME@ALIAS)")
    if not source.startswith("models:/"):
        if not (Path(source) / "model.json").is_file():
            raise ConfigError(f"--{side} {source}: not a Model directory (no model.json)")
        return source
    rest = source[len("models:/") :]
    name, sep, ref = rest.partition("@") if "@" in rest else rest.partition("/")
    ref = f"@{ref}" if "@" in rest else ref
    if not name or not sep or not ref.strip("@"):
        raise ConfigError(f"--{side} {source!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    fetched = registry.fetch_model(resolve_tracking_uri(tracking_uri), name, ref, dst)
    if fetched is None:
        raise ConfigError(f"--{side} {source}: no such registered model or alias")
    return fetched.path


def _rollout_backend(args: argparse.Namespace) -> Any:
    """The backend an operator command addresses: ``--workdir`` (local) or ``--service`` (kubernetes)."""
    if bool(args.workdir) == bool(args.service):
        raise ConfigError(f"rollout {args.rollout_command}: give either --workdir (local) or --service (kubernetes)")
    if args.workdir:
        from serving.rollout import local

        return local, args.workdir
    from serving.rollout.kubernetes import KubernetesBackend

    url = getattr(args, "prometheus_url", "")
    return KubernetesBackend(args.service, args.namespace, mode=args.mode, prometheus_url=url), None


def cmd_rollout(args: argparse.Namespace) -> int:
    import tempfile

    from serving.rollout.policy import RolloutPolicy

    if args.rollout_command != "start":
        backend, workdir = _rollout_backend(args)
        if args.rollout_command == "status":
            state = backend.read_state(workdir) if workdir else backend.read_state()
            if state is None:
                print("no rollout state published there yet")
                return EXIT_FAILURE
            print(json.dumps(state, indent=2))
            return 0
        if workdir:
            backend.send_command(workdir, args.rollout_command)
        else:
            backend.send_command(args.rollout_command)
        print(f"{args.rollout_command}: sent; the running rollout acts on it within a second")
        return 0
    raw = Path(args.policy[1:]).read_text() if args.policy.startswith("@") else args.policy
    try:
        policy = RolloutPolicy.from_dict(json.loads(raw))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--policy: not JSON ({exc})") from exc
    from serving.rollout.report import REPORT_HTML
    from serving.rollout.run import run_rollout

    if args.service:
        if not args.prometheus_url:
            raise ConfigError("rollout start --service: --prometheus-url is required (the cluster's Prometheus)")
        backend, _ = _rollout_backend(args)
        backend.start()
        report = run_rollout(policy, backend, args.service, args.task, namespace=args.namespace)
        print(f"{report.phase}: {report.reason or 'promoted'}")
        return 0 if report.phase == "Succeeded" else EXIT_FAILURE
    if not args.workdir:
        raise ConfigError("rollout start: give --workdir (local) or --service (kubernetes)")
    from serving.rollout.load import LoadGenerator
    from serving.rollout.local import LocalBackend
    from shipyard.artifacts import read_model_manifest

    workdir = Path(args.workdir)
    with tempfile.TemporaryDirectory(prefix="shipyard-rollout-") as tmp:
        stable = _rollout_model(args.stable or "", args.tracking_uri, f"{tmp}/stable", "stable")
        canary = _rollout_model(args.canary or "", args.tracking_uri, f"{tmp}/canary", "canary")
        task = read_model_manifest(canary).task
        local_backend = LocalBackend(stable, canary, args.name, workdir, ready_timeout_s=policy.ready_timeout_s)
        try:
            local_backend.start()
            local_backend.wait_scraped()
            print(f"router {local_backend.url}, prometheus {local_backend.prometheus_url}; state in {workdir}")
            load = None
            if args.load_rate > 0:
                if not args.load_body:
                    raise ConfigError("--load-rate needs --load-body (a JSON request body)")
                body = Path(args.load_body).read_bytes()
                hour = 3600.0  # bounded in time and count, and enough for a long policy
                load = LoadGenerator(
                    local_backend.predict_url,
                    body,
                    workdir,
                    rate=args.load_rate,
                    duration_s=hour,
                    max_requests=int(args.load_rate * hour) + 1,
                )
                load.start()
            try:
                report = run_rollout(policy, local_backend, args.name, task)
            finally:
                if load is not None:
                    load.stop()
        finally:
            local_backend.close()
    report.write(workdir)
    print(f"{report.phase}: {report.reason or 'promoted'}; report {workdir / REPORT_HTML}")
    return 0 if report.phase == "Succeeded" else EXIT_FAILURE


COMMANDS = {
    "compile": cmd_compile,
    "run": cmd_run,
    "serve": cmd_serve,
    "validate": cmd_validate,
    "manifests": cmd_manifests,
    "pipelines": cmd_pipelines,
    "models": cmd_models,
    "rollout": cmd_rollout,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shipyard`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"shipyard {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ShipyardError as exc:
        print(f"shipyard {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # an output directory that cannot be created, a port in use, ...
        print(f"shipyard {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
