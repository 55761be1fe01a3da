"""Serving raw mixed-type rows: our runtime vs MLServer's scikit-learn Pipeline, vs the bare ceiling; one-row MLP.

A generated mixed-type table (:func:`mixed_rows`: numbers with nulls, strings with a rare value,
a boolean; 20,000 rows) goes through ingest_data, split_data and train_model with the GBDT forced
as the candidate: Shipyard's GBDT family as the pipeline builds it (the fitted
:class:`serving.preprocess.Preprocessing` with categories as codes, a
``HistGradientBoostingClassifier`` with native categorical splits on the code columns, a
``sklearn-skops`` artifact with the preprocessing in ``model.json``). MLServer 1.7.1 +
mlserver-sklearn serves the equivalent scikit-learn ``Pipeline``: a ``ColumnTransformer`` with,
per feature in the same order, an ``OrdinalEncoder`` holding the same vocabulary (unknown and
missing values to the same codes as ours) for a categorical feature, a ``SimpleImputer`` (the
same training median) and a ``MissingIndicator`` for a nullable numeric one and ``passthrough``
otherwise, a float32 cast (what ours and the GBDT's training data use), then **the same fitted**
GBDT, joblib-dumped, answered with ``predict_fn: predict_proba``. Before any timing, the two
servers score 300 test rows (nulls, the rare value, a category never seen in training) and must
agree on every label and on every probability to 1e-6; ours' V1 records and V2 tensors must
give the same answers.

Cases, each one row per request at ``CONNECTIONS`` connections, pinned as in
:mod:`benchmarks.serving` (server on CPU 0, wrk on CPU 1, each in a session of its own at nice
-15 unless ``--no-priority``; every run records the server's CPU use and other processes'), interleaved
within each cycle:

- ``ours_mixed_v1``: ``{"instances": [{"age": null, "plan": "pro", ...}]}`` (V1 records).
- ``ours_mixed_v2``: one V2 tensor per feature (``BYTES`` strings, ``FP64``/``INT64``/``BOOL``).
- ``mlserver_mixed``: the same row as V2 with ``parameters: {"content_type": "pd"}`` and one
  input per column (``BYTES`` with ``content_type: str`` for strings).
- ``ceiling``: :mod:`benchmarks.serving`'s bare Starlette handler (``serving_support/ceiling.py``).
- ``ours_mlp_torchscript_v1`` / ``_v2`` and ``ours_mlp_onnx_v1`` / ``_v2``: one row of the
  breast-cancer features to the reference TorchScript MLP (:func:`benchmarks.serving.build_models`)
  and to its fp32 ONNX export (quantize_model's variant), ``--batching off``.

Ratios (median of per-cycle ratios): ours ÷ MLServer for V1 and V2 (target ≥ 2 at an equal or
lower p99), ours-mixed ÷ ceiling, and each MLP case ÷ ceiling (reported, no target). Everything
that runs servers and wrk is imported from :mod:`benchmarks.serving`. The result, with the exact
commands, goes to ``benchmarks/output/serving_mixed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import save
from benchmarks.serving import (
    PRIORITY_NICE,
    SERVER_CPU,
    SERVER_ENV,
    SUPPORT,
    WARMUP_S,
    Server,
    SetupError,
    build_models,
    compare,
    ensure_env,
    free_port,
    launch,
    load_warnings,
    measured_run,
    mlserver_pins,
    ours_server,
    post,
    priority_in_effect,
    require_taskset,
    require_wrk,
    run_wrk,
    stop,
    summarize,
    wait_ready,
    write_mlserver_settings,
    wrk_argv,
)

MIXED_MODEL = "churn"
MLP_MODEL = "mlp"
CONNECTIONS = 16
ROWS = 20_000
CHECK_ROWS = 300
#: The label and its classes.
LABEL, LABELS = "churn", ("no", "yes")
PLANS, RARE_PLAN, UNSEEN_PLAN = ("basic", "pro", "team"), "legacy", "enterprise"
REGIONS = ("east", "north", "south", "west")
CHANNELS = ("web", "store", "partner", "phone", "reseller")
#: V2 datatypes of the raw columns' dtypes.
V2_TYPES = {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "object": "BYTES"}
#: Largest |ours - MLServer| allowed on a probability (ours answers float32).
PROBABILITY_TOLERANCE = 1e-6

#: (result key, numerator case, denominator case, target or None, also require numerator p99 <= denominator p99)
COMPARISONS: tuple[tuple[str, str, str, float | None, bool], ...] = (
    ("ours_v1_over_mlserver", "ours_mixed_v1", "mlserver_mixed", 2.0, True),
    ("ours_v2_over_mlserver", "ours_mixed_v2", "mlserver_mixed", 2.0, True),
    ("ours_v1_over_ceiling", "ours_mixed_v1", "ceiling", None, False),
    ("ours_v2_over_ceiling", "ours_mixed_v2", "ceiling", None, False),
    ("mlp_torchscript_v1_over_ceiling", "ours_mlp_torchscript_v1", "ceiling", None, False),
    ("mlp_torchscript_v2_over_ceiling", "ours_mlp_torchscript_v2", "ceiling", None, False),
    ("mlp_onnx_v1_over_ceiling", "ours_mlp_onnx_v1", "ceiling", None, False),
    ("mlp_onnx_v2_over_ceiling", "ours_mlp_onnx_v2", "ceiling", None, False),
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One load run: which server, which route, which body."""

    name: str
    server: str
    path: str
    body: Path


@dataclasses.dataclass(frozen=True)
class Mixed:
    """The mixed-type artifact, MLServer's model repository, and the rows they are checked and timed on."""

    model_dir: Path
    mlserver_repo: Path
    features: list[str]
    check: Any  # DataFrame: CHECK_ROWS test rows, unseen category included
    row: dict[str, Any]  # the timed row, as V1 records hold it


def mixed_rows(rows: int = ROWS, seed: int = 0) -> Any:
    """A generated mixed-type table with a known signal, deterministic for a seed.

    Columns: ``age`` (float, about 10 % null), ``tenure`` (int months), ``monthly`` (float),
    ``plan`` (``basic``/``pro``/``team`` and a rare ``legacy`` in 3 rows, which the fitted
    vocabulary leaves in the unknown bucket), ``region`` (four strings, about 5 % null),
    ``channel`` (five strings), ``autopay`` (bool, true in about 40 % of rows) and the label
    ``churn`` (``no``/``yes``), more likely for short tenure, the ``basic`` plan, no autopay,
    high monthly charges and the ``partner`` channel.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, size=rows, p=(0.5, 0.3, 0.2)).astype(object)
    plan[rng.choice(rows, size=3, replace=False)] = RARE_PLAN
    tenure = rng.integers(1, 72, size=rows)
    age = rng.normal(45.0, 12.0, size=rows).round(1)
    age[rng.random(rows) < 0.1] = np.nan
    monthly = rng.gamma(4.0, 15.0, size=rows).round(2)
    region = rng.choice(REGIONS, size=rows).astype(object)
    region[rng.random(rows) < 0.05] = None
    channel = rng.choice(CHANNELS, size=rows).astype(object)
    autopay = rng.random(rows) < 0.4
    logit = (
        1.0
        - tenure / 18.0
        + 1.2 * (plan == "basic")
        - 1.0 * autopay
        + 0.01 * (monthly - 60.0)
        + 0.6 * (channel == "partner")
        + 0.02 * (np.nan_to_num(age, nan=45.0) - 45.0)
        + rng.normal(0.0, 0.5, size=rows)
    )
    return pd.DataFrame(
        {
            "age": age,
            "tenure": tenure.astype(np.int64),
            "monthly": monthly,
            "plan": plan,
            "region": region,
            "channel": channel,
            "autopay": autopay,
            LABEL: np.where(logit > 0, LABELS[1], LABELS[0]).astype(object),
        }
    )


def plain(value: Any) -> Any:
    """A cell as JSON holds it: NaN and None as null, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def records(df: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    """V1 ``instances`` as records."""
    return [{f: plain(v) for f, v in zip(features, row, strict=True)} for row in df[list(features)].itertuples(False)]


def v2_inputs(df: Any, features: Sequence[str], mlserver: bool = False) -> list[dict[str, Any]]:
    """One V2 tensor per feature; for MLServer, strings carry ``content_type: str`` (else they stay bytes)."""
    out = []
    for f in features:
        datatype = V2_TYPES[str(df[f].dtype)]
        tensor: dict[str, Any] = {"name": f, "shape": [len(df)], "datatype": datatype}
        tensor["data"] = [plain(v) for v in df[f].tolist()]
        if mlserver and datatype == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        out.append(tensor)
    return out


def mlserver_body(df: Any, features: Sequence[str]) -> dict[str, Any]:
    """MLServer's V2 request: a pandas DataFrame of one input per column."""
    return {"parameters": {"content_type": "pd"}, "inputs": v2_inputs(df, features, mlserver=True)}


def sklearn_pipeline(prep: Any, gbdt: Any, train: Any) -> Any:
    """The scikit-learn ``Pipeline`` equivalent to ``prep`` followed by ``gbdt`` (the same fitted estimator).

    Per feature, in ``prep``'s order (so the columns and codes are the same as ours): a
    categorical feature gets an ``OrdinalEncoder`` with ``prep``'s vocabulary, unknown values to
    ``len(vocabulary)`` and missing ones to ``len(vocabulary) + 1``; a nullable numeric feature a
    ``SimpleImputer`` filling the same value (the training median) and a ``MissingIndicator``; any
    other numeric feature passes through.
    Then the matrix is rounded to float32, as ours (and the GBDT's training data) is.

    Raises:
        SetupError: A boolean vocabulary not in sorted order (scikit-learn's ``OrdinalEncoder``
            takes numeric and boolean categories only sorted).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    steps: list[tuple[str, Any, list[str]]] = []
    for f in prep.features:
        if f.kind == "categorical":
            vocab = list(f.vocabulary)
            if f.is_bool and vocab != sorted(vocab):
                raise SetupError(
                    f"feature {f.name!r}: boolean vocabulary {vocab} is not sorted; OrdinalEncoder needs it"
                )
            encoder = OrdinalEncoder(
                categories=[[*vocab, np.nan]] if f.nullable else [vocab],
                handle_unknown="use_encoded_value",
                unknown_value=f.unknown_code,
                encoded_missing_value=f.missing_code if f.nullable else np.nan,
            )
            steps.append((f.name, encoder, [f.name]))
        elif f.nullable:
            steps.append((f.name, SimpleImputer(strategy="constant", fill_value=f.impute), [f.name]))
            if f.indicator:
                steps.append((f"{f.name}-missing", MissingIndicator(features="all"), [f.name]))
        else:
            steps.append((f.name, "passthrough", [f.name]))
    columns = ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0)
    columns.fit(_nan_for_none(train[prep.feature_names]))
    # ours hands the model float32 (as in training): a value and its float32 rounding can fall on
    # either side of a tree's threshold, so the Pipeline rounds the same way
    float32 = FunctionTransformer(np.asarray, kw_args={"dtype": np.float32})
    return Pipeline([("columns", columns), ("float32", float32), ("gbdt", gbdt)])


def _nan_for_none(df: Any) -> Any:
    """String columns with NaN for null, as MLServer's pandas (3.x, ``str`` dtype) decodes them."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].where(out[col].notna(), np.nan)
    return out


def build_mixed(work: Path, seed: int = 0) -> Mixed:
    """Builds the GBDT candidate as the pipeline does, and MLServer's equivalent Pipeline; picks the rows.

    The generated table goes through ingest_data, split_data (70/15/15) and train_model with the
    GBDT forced as the candidate (``families: ["gbdt"]``, the linear baseline beside it), every
    other setting train_model's default.

    Raises:
        SetupError: The Pipeline's matrix differs from the preprocessing's on the check rows.
    """
    import joblib
    import skops.io as sio

    from components.ingest_data import core as ingest
    from components.split_data import core as split
    from components.train_model import core as train
    from serving.preprocess import Preprocessing
    from shipyard.artifacts import read_dataset, read_model_manifest

    data = work / "data"
    data.mkdir()
    mixed_rows(ROWS, seed).to_parquet(data / "mixed.parquet", index=False)
    paths = {name: str(data / name) for name in ("dataset", "train", "val", "test", "model", "baseline")}
    ingest.ingest(str(data / "mixed.parquet"), paths["dataset"], ingest.IngestConfig(label=LABEL))
    split.split(paths["dataset"], paths["train"], paths["val"], paths["test"], split.SplitConfig(seed=seed))
    config = train.TrainConfig.from_dict({"families": ["gbdt"], "candidate": "gbdt", "seed": seed})
    train.train(paths["train"], paths["val"], paths["model"], paths["baseline"], config)
    model_dir = Path(paths["model"])
    manifest = read_model_manifest(model_dir, verify=True)
    prep = Preprocessing.from_dict(manifest.preprocessing)
    weights = model_dir / train.SKOPS_FILE
    gbdt = sio.load(weights, trusted=sio.get_untrusted_types(file=weights))
    train_df, _ = read_dataset(paths["train"])
    test, _ = read_dataset(paths["test"])
    features = prep.feature_names

    check = test.iloc[:CHECK_ROWS].copy()
    check.loc[check.index[:5], "plan"] = UNSEEN_PLAN  # a category never seen in training
    pipeline = sklearn_pipeline(prep, gbdt, train_df)
    theirs = pipeline[:-1].transform(_nan_for_none(check[features]))
    ours = prep.transform_frame(check).x
    if theirs.dtype != ours.dtype or not np.array_equal(theirs, ours):
        raise SetupError("the scikit-learn Pipeline's columns differ from the preprocessing's on the check rows")
    repo = work / "mlserver"
    (repo / MIXED_MODEL).mkdir(parents=True)
    joblib.dump(pipeline, repo / MIXED_MODEL / "model.joblib")
    model_settings = {
        "name": MIXED_MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}},
    }
    (repo / MIXED_MODEL / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    # the timed row: a null number, strings, a boolean
    timed = test[test["age"].isna() & test["region"].notna()].iloc[:1]
    return Mixed(model_dir, repo, features, check, records(timed, features)[0])


def build_onnx(torch_dir: Path, out: Path, sample: np.ndarray) -> Path:
    """The fp32 ONNX export of the TorchScript MLP, built by quantize_model's own variant builder."""
    from components.quantize_model import core as quantize_core
    from shipyard.artifacts import read_model_manifest

    quantize_core._build_variant("fp32-onnx", torch_dir, read_model_manifest(torch_dir), out, sample)
    return out


def write_bodies(work: Path, mixed: Mixed, mlp_row: list[float]) -> dict[str, Path]:
    """The request bodies of the cases, one file each (wrk sends a file's bytes)."""
    import pandas as pd

    one = pd.DataFrame([mixed.row]).astype(mixed.check[mixed.features].dtypes.to_dict())
    bodies = {
        "mixed_v1": {"instances": [mixed.row]},
        "mixed_v2": {"inputs": v2_inputs(one, mixed.features)},
        "mixed_mlserver": mlserver_body(one, mixed.features),
        "mlp_v1": {"instances": [mlp_row]},
        "mlp_v2": {"inputs": [{"name": "input", "shape": [1, len(mlp_row)], "datatype": "FP32", "data": mlp_row}]},
    }
    out = {}
    for name, body in bodies.items():
        out[name] = work / f"{name}.json"
        out[name].write_text(json.dumps(body))
    return out


def servers(work: Path, mixed: Mixed, torch_dir: Path, onnx_dir: Path, mlserver: Path) -> dict[str, Server]:
    """The servers, each on its own free port; MLServer's settings.json is written here."""
    http_port = write_mlserver_settings(mixed.mlserver_repo)

    def ours(name: str, model_dir: Path, model: str, extra: Sequence[str] = ()) -> Server:
        return ours_server(name, model_dir, model, work, extra)

    out = [
        ours("ours_mixed", mixed.model_dir, MIXED_MODEL),
        Server(
            "mlserver_mixed",
            (str(mlserver), "start", str(mixed.mlserver_repo)),
            http_port,
            mixed.mlserver_repo,
        ),
        Server("ceiling", (sys.executable, str(SUPPORT / "ceiling.py"), str(port := free_port())), port, work),
        ours("ours_mlp_torchscript", torch_dir, MLP_MODEL, ("--batching", "off")),
        ours("ours_mlp_onnx", onnx_dir, MLP_MODEL, ("--batching", "off")),
    ]
    return {s.name: s for s in out}


def cases(bodies: dict[str, Path]) -> list[Case]:
    """The load runs of one cycle, in order."""
    v1, v2 = f"/v1/models/{MIXED_MODEL}:predict", f"/v2/models/{MIXED_MODEL}/infer"
    m1, m2 = f"/v1/models/{MLP_MODEL}:predict", f"/v2/models/{MLP_MODEL}/infer"
    return [
        Case("ours_mixed_v1", "ours_mixed", v1, bodies["mixed_v1"]),
        Case("ours_mixed_v2", "ours_mixed", v2, bodies["mixed_v2"]),
        Case("mlserver_mixed", "mlserver_mixed", v2, bodies["mixed_mlserver"]),
        Case("ceiling", "ceiling", m2, bodies["mlp_v2"]),
        Case("ours_mlp_torchscript_v1", "ours_mlp_torchscript", m1, bodies["mlp_v1"]),
        Case("ours_mlp_torchscript_v2", "ours_mlp_torchscript", m2, bodies["mlp_v2"]),
        Case("ours_mlp_onnx_v1", "ours_mlp_onnx", m1, bodies["mlp_v1"]),
        Case("ours_mlp_onnx_v2", "ours_mlp_onnx", m2, bodies["mlp_v2"]),
    ]


def _post(server: Server, path: str, body: Any) -> dict[str, Any]:
    return post(server.url(path), json.dumps(body).encode())


def check_answers(srv: dict[str, Server], mixed: Mixed, case_list: Sequence[Case]) -> dict[str, Any]:
    """Scores the check rows on ours (V1 records, V2 tensors) and MLServer; every case's body once.

    Raises:
        SetupError: A server does not answer 200; ours and MLServer disagree on a probability by
            more than :data:`PROBABILITY_TOLERANCE` or on a label; V1 and V2 disagree; the two
            MLP formats disagree on the timed row by more than 1e-4.
    """
    rows = mixed.check[mixed.features]
    v1 = _post(srv["ours_mixed"], f"/v1/models/{MIXED_MODEL}:predict", {"instances": records(rows, mixed.features)})
    v2 = _post(srv["ours_mixed"], f"/v2/models/{MIXED_MODEL}/infer", {"inputs": v2_inputs(rows, mixed.features)})
    theirs = _post(srv["mlserver_mixed"], f"/v2/models/{MIXED_MODEL}/infer", mlserver_body(rows, mixed.features))
    ours_p = np.asarray(v1["probabilities"], dtype=np.float64)
    v2_out = {o["name"]: o["data"] for o in v2["outputs"]}
    v2_p = np.asarray(v2_out["probabilities"], dtype=np.float64).reshape(ours_p.shape)
    their_p = np.asarray(theirs["outputs"][0]["data"], dtype=np.float64).reshape(ours_p.shape)
    gap = float(np.max(np.abs(ours_p - their_p)))
    their_labels = [LABELS[i] for i in their_p.argmax(axis=1)]
    if gap > PROBABILITY_TOLERANCE or v1["predictions"] != their_labels:
        raise SetupError(f"ours and MLServer disagree on the check rows: max |Δp| {gap:.3g}")
    if v2_out["label"] != v1["predictions"] or float(np.max(np.abs(v2_p - ours_p))) > 1e-6:
        raise SetupError("ours V1 records and V2 tensors disagree on the check rows")
    answers = {c.name: post(srv[c.server].url(c.path), c.body.read_bytes()) for c in case_list}

    def mlp_p(answer: dict[str, Any]) -> list[float]:
        if "probabilities" in answer:
            return list(answer["probabilities"][0])
        return list({o["name"]: o["data"] for o in answer["outputs"]}["probabilities"])

    mlp = {c: mlp_p(answers[c]) for c in answers if c.startswith("ours_mlp_")}
    ref = mlp["ours_mlp_torchscript_v2"]
    mlp_gap = max(abs(a - b) for p in mlp.values() for a, b in zip(p, ref, strict=True))
    if mlp_gap > 1e-4:
        raise SetupError(f"the TorchScript and ONNX MLP disagree on the timed row: {mlp}")
    return {
        "check_rows": len(rows),
        "max_abs_probability_gap_ours_vs_mlserver": gap,
        "labels_agree": True,
        "timed_row": {"ours_v1": answers["ours_mixed_v1"], "mlserver": answers["mlserver_mixed"]},
        "mlp_timed_row": mlp,
        "mlp_max_abs_gap": mlp_gap,
    }


def ratio(runs: dict[str, list[dict[str, Any]]], num: str, den: str, target: float | None, p99: bool) -> dict[str, Any]:
    """:func:`benchmarks.serving.compare`, without a target where there is none (a reported ratio)."""
    out = compare(runs, num, den, 0.0 if target is None else target, p99)
    if target is None:
        out.pop("target", None)
        out.pop("meets_target", None)
    return out


def main(cycles: int = 3, duration_s: int = 10, seed: int = 0, priority: bool = True) -> dict[str, Any]:
    """Runs the benchmark (pinned and prioritized as :mod:`benchmarks.serving`) and returns its result dict.

    Args:
        cycles: Load runs per case; cases alternate within a cycle.
        duration_s: Seconds of each load run (wrk ``-d``); a run takes about
            ``8 * (cycles * duration_s + WARMUP_S)`` seconds plus a minute of set-up.
        seed: The generated table's and the GBDT's seed.
        priority: Servers and wrk in sessions of their own at nice ``PRIORITY_NICE``
            (:func:`benchmarks.serving.prioritized`); False: the default priority.

    Raises:
        SetupError: wrk/taskset missing, a server that does not start, or disagreeing answers.
    """
    wrk = require_wrk()
    require_taskset()
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split(" [")[0]
    nice = PRIORITY_NICE if priority else None
    priority_state = priority_in_effect(nice)
    mlserver = ensure_env()
    work = Path(tempfile.mkdtemp(prefix="shipyard-serving-mixed-"))
    logs = work / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    t0 = time.perf_counter()
    try:
        mixed = build_mixed(work, seed)
        models = build_models(work / "reference")  # the TorchScript MLP and its one-row request
        mlp_row = json.loads(models.body_file.read_text())["inputs"][0]["data"]
        onnx_dir = build_onnx(models.torch_dir, work / "mlp-onnx", np.asarray([mlp_row, mlp_row], dtype=np.float32))
        bodies = write_bodies(work, mixed, mlp_row)
        srv = servers(work, mixed, models.torch_dir, onnx_dir, mlserver)
        for server in srv.values():  # start all, then wait: their imports overlap
            procs[server.name] = launch(server, True, logs, nice)
        for server in srv.values():
            wait_ready(server, procs[server.name], logs)
        case_list = cases(bodies)
        answers = check_answers(srv, mixed, case_list)
        commands = {
            c.name: wrk_argv(wrk, srv[c.server].url(c.path), c.body, CONNECTIONS, duration_s, 1, True)
            for c in case_list
        }
        for c in case_list:  # warm-up: first requests, lazy imports, allocator
            warm = wrk_argv(wrk, srv[c.server].url(c.path), c.body, CONNECTIONS, WARMUP_S, 1, True)
            run_wrk(warm, WARMUP_S, nice)
        runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in case_list}
        for _ in range(cycles):
            for c in case_list:
                run = measured_run(commands[c.name], duration_s, srv[c.server], procs[c.server].pid, nice)
                runs[c.name].append(run)
        requests = {name: json.loads(path.read_text()) for name, path in bodies.items()}
        server_commands = {name: shlex.join(["taskset", "-c", SERVER_CPU, *s.argv]) for name, s in srv.items()}
        mlserver_settings = {
            "settings.json": json.loads((mixed.mlserver_repo / "settings.json").read_text()),
            "model-settings.json": json.loads((mixed.mlserver_repo / MIXED_MODEL / "model-settings.json").read_text()),
        }
        gbdt_details = json.loads((mixed.model_dir / "model.json").read_text())["details"]
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "load_generator": wrk_version,
        "cycles": cycles,
        "duration_s": duration_s,
        "connections": CONNECTIONS,
        "pinned": True,
        "priority": priority_state,
        "server_env": SERVER_ENV,
        "table": {"rows": ROWS, "seed": seed},
        "candidate": {k: gbdt_details.get(k) for k in ("family", "params", "iterations")},
        "versions": {
            pkg: metadata.version(pkg) for pkg in ("kserve", "uvicorn", "scikit-learn", "torch", "onnxruntime")
        },
        "mlserver_packages": mlserver_pins(),
        "mlserver_settings": mlserver_settings,
        "cases": {c.name: {"server": c.server, "path": c.path, **summarize(runs[c.name])} for c in case_list},
        "ratios": {key: ratio(runs, num, den, target, p99) for key, num, den, target, p99 in COMPARISONS},
        "warnings": load_warnings(runs),
        "requests": requests,
        "answers": answers,
        "commands": {"servers": server_commands, "wrk": {k: shlex.join(v) for k, v in commands.items()}},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    save("serving_mixed", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Mixed-type serving benchmark (see the module docstring).")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-priority", action="store_true", help="servers and wrk at the default priority")
    args = parser.parse_args()
    try:
        out = main(args.cycles, args.duration, args.seed, not args.no_priority)
    except SetupError as exc:
        sys.exit(f"serving_mixed benchmark: {exc}")
    print(json.dumps(out, indent=2))
