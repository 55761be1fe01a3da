"""Hyperparameter search with Optuna (seeded TPE, median pruning) over a declared search space.

The study lives in an Optuna storage: a SQLite file in the output artifact by default, or any
RDB URL (``postgresql://...``) so that many workers can share one study on a cluster. An RDB
storage may share a PostgreSQL database with MLflow's tracking store only in a schema of its own
(``?options=-csearch_path%3Doptuna``): both keep an alembic ``alembic_version`` table (see
:mod:`shipyard.rdb`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

from components import tracking
from shipyard import attempts, rdb
from shipyard.artifacts import atomic_dir, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import ConfigError, DataValidationError, StorageError
from shipyard.report import markdown_table

#: The default search space over TrainConfig fields (the MLP's; the GBDT and the baseline keep their defaults).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "width": {"type": "int", "low": 64, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 4},
    "dropout": {"type": "float", "low": 0.0, "high": 0.4},
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "frequency_scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
}
#: Training cells (rows × encoded columns) up to which the full budget applies; above it there
#: are proportionally fewer trials (at least ``MIN_TRIALS``) and epochs (at least ``MIN_EPOCHS``).
FULL_BUDGET_CELLS = 1_000_000
MIN_TRIALS = 4
MIN_EPOCHS = 20
#: The automatic study time limit: this many seconds per million training cells, within the bounds.
SECONDS_PER_MILLION_CELLS = 60.0
TIMEOUT_BOUNDS = (120.0, 1800.0)
PARAM_KEYS = {
    "int": {"type", "low", "high", "log", "step"},
    "float": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclasses.dataclass(frozen=True)
class TuneConfig(Config):
    """Study settings.

    Attributes:
        n_trials: Trials to run on data up to ``FULL_BUDGET_CELLS`` training cells; fewer above
            (:func:`budget`), unless ``auto_budget`` is off.
        timeout_s: Stop starting trials after this many seconds; 0: no limit; -1 (default): derived
            from the data size (:func:`budget`). A limit that is reached makes the number of
            trials, and so the result, depend on the machine's speed.
        seed: TPE sampler seed.
        search_space: ``{TrainConfig field: {"type": int|float|categorical, ...}}``.
        base: TrainConfig values fixed for every trial (e.g. ``max_epochs``).
        storage: Optuna storage URL; empty means a SQLite file in the study artifact.
        study_name: Name in the storage. A named study is resumed if it exists (more trials on
            the same data); empty makes a new, uniquely named study every run.
        pruning: Prune unpromising trials with Optuna's MedianPruner.
        auto_budget: Scale trials and epochs (those ``base`` does not set) to the data size.
    """

    section = "tune"
    n_trials: int = 12
    timeout_s: float = -1.0
    seed: int = 0
    search_space: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPACE))
    base: dict = dataclasses.field(default_factory=dict)
    storage: str = ""
    study_name: str = ""
    pruning: bool = True
    auto_budget: bool = True

    def validate(self) -> None:
        from components.train_model.core import TrainConfig

        require(self.n_trials >= 1, self.section, "n_trials must be >= 1")
        require(self.timeout_s >= 0 or self.timeout_s == -1, self.section, "timeout_s must be >= 0, or -1 (automatic)")
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for name, spec in self.search_space.items():
            require(
                name in train_fields,
                self.section,
                f"search_space: {name!r} is not a train parameter; expected one of {sorted(train_fields)}",
            )
            kind = str(spec.get("type")) if isinstance(spec, dict) else ""
            require(kind in PARAM_KEYS, self.section, f"search_space.{name}: type must be int, float or categorical")
            extra = sorted(set(spec) - PARAM_KEYS[kind])
            require(not extra, self.section, f"search_space.{name}: unknown key(s) {extra}")
            if kind == "categorical":
                choices = spec.get("choices")
                require(
                    isinstance(choices, (list, tuple)) and len(choices) > 0,
                    self.section,
                    f"search_space.{name}: choices must be a non-empty list, got {choices!r}",
                )
                continue
            bounds = {k: spec[k] for k in ("low", "high", "step") if k in spec}
            require(
                "low" in bounds and "high" in bounds and all(_is_number(v) for v in bounds.values()),
                self.section,
                f"search_space.{name}: low and high (and step) must be numbers, got {bounds!r}",
            )
            require(bounds["low"] < bounds["high"], self.section, f"search_space.{name}: needs low < high")
        TrainConfig.from_dict(self.base)


def check_storage_apart(storage: str, tracking_uri: str) -> None:
    """Refuses an Optuna storage in the same database schema as the MLflow tracking store.

    Judged from the two URLs alone, so the CLI calls it before a run starts or is submitted.

    Args:
        storage: The ``tune`` options' ``storage`` (empty: the SQLite file in the artifact).
        tracking_uri: The pipeline's ``mlflow_tracking_uri``.

    Raises:
        ConfigError: Both name the same PostgreSQL schema (or MySQL database, SQLite file); the
            message names both URIs, why, and how to give each its own schema.
    """
    if storage and tracking_uri:
        rdb.check_apart(storage, tracking_uri, "tune.storage", "mlflow_tracking_uri")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def budget(rows: int, columns: int, config: TuneConfig) -> dict[str, Any]:
    """The study's budget for a training split of ``rows`` × ``columns`` (encoded) cells.

    Up to ``FULL_BUDGET_CELLS`` cells: ``n_trials`` trials and TrainConfig's epochs. Above, both
    shrink in proportion (``n_trials`` at least ``MIN_TRIALS``, epochs at least ``MIN_EPOCHS``,
    patience with them, the ensemble to at least 2 members), since each epoch is longer and has
    more steps. The automatic time limit
    is none up to the full budget (the same data and seed then always run the same trials) and
    ``SECONDS_PER_MILLION_CELLS`` per million cells within ``TIMEOUT_BOUNDS`` above it; above the full
    budget each trial also gets ``max_seconds`` = its share of it, so that no trial outlasts the
    study (a trial that hits it keeps its best epoch; the epoch count then depends on the machine).

    Returns:
        ``{"n_trials", "timeout_s" (None: no limit), "base"}`` where ``base`` is the fixed
        TrainConfig values of every trial (``config.base`` wins over the derived ones).
    """
    from components.train_model.core import TrainConfig

    defaults = TrainConfig()
    cells = max(1, rows * columns)
    factor = min(1.0, FULL_BUDGET_CELLS / cells) if config.auto_budget else 1.0
    derived: dict[str, Any] = {}
    n_trials = config.n_trials
    if factor < 1.0:
        n_trials = max(min(MIN_TRIALS, config.n_trials), round(config.n_trials * factor))
        epochs = max(MIN_EPOCHS, round(defaults.max_epochs * factor))
        derived = {
            "ensemble": max(2, round(defaults.ensemble * factor)),  # each member costs a backbone pass
            "max_epochs": epochs,
            "patience": max(4, min(defaults.patience, epochs // 4)),
            "min_epochs": min(defaults.min_epochs, epochs // 2),
        }
    if config.timeout_s == -1:
        # Up to the full budget no time limit: the study is small, and a limit would make the trial
        # count (so the best parameters and the candidate) depend on the machine's speed.
        low, high = TIMEOUT_BOUNDS
        timeout: float | None = None if factor >= 1.0 else min(high, max(low, SECONDS_PER_MILLION_CELLS * cells / 1e6))
    else:
        timeout = config.timeout_s or None
    if factor < 1.0 and timeout:
        # On large data one trial must not outlast the study: each gets its share (best epoch kept).
        derived["max_seconds"] = round(timeout / n_trials, 1)
    return {"n_trials": n_trials, "timeout_s": timeout, "base": {**derived, **config.base}}


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draws one value per search-space entry from an Optuna trial."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "int":
            params[name] = trial.suggest_int(
                name,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step", 1)),
                log=bool(spec.get("log", False)),
            )
        elif spec["type"] == "float":
            params[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), step=spec.get("step"), log=bool(spec.get("log", False))
            )
        else:
            params[name] = trial.suggest_categorical(name, spec["choices"])
    return params


@attempts.step
def tune(
    train_dir: str,
    val_dir: str,
    study_dir: str,
    report_md: str,
    config: TuneConfig,
    best_model_dir: str | None = None,
    tracking_uri: str = "",
) -> dict[str, Any]:
    """Runs the study and writes the study artifact (``trials.json``, SQLite study) and a report.

    With a tracking URI (``tracking_uri`` or ``$MLFLOW_TRACKING_URI``) the step's MLflow run
    (:func:`components.tracking.step_run`) gets the study's settings and result, and every trial is
    a run nested under it: its parameters, its validation loss per epoch (the values pruning
    judges) and its state (``shipyard.trial_state``; a pruned trial ends KILLED, a diverged one FAILED).

    The MLP's preprocessing is fitted once on the training split and every trial trains on the
    same encoded matrices. One line per trial goes to stderr (the step's log).

    Args:
        train_dir: Training Dataset artifact.
        val_dir: Validation Dataset artifact (the objective is its loss).
        study_dir: Output artifact directory.
        report_md: Markdown report path.
        config: Study settings.
        best_model_dir: Optional output: the best trial's MLP as a ``torchscript`` Model artifact
            with its reuse key (train_model takes it instead of training the same MLP again). When
            the best trial ran in an earlier session of a resumed study its weights are not here,
            and the directory holds only a ``README.txt`` saying so.
        tracking_uri: MLflow tracking URI ("": ``$MLFLOW_TRACKING_URI``, else nothing is tracked).

    Returns:
        ``{"best_params": {...full TrainConfig...}, "best_value": float, "trials": int, "pruned": int, ...}``.
    """
    import optuna

    from components.train_model import core as train_core

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    progress = train_core.progress
    tr = train_core.load_split(train_dir, str(config.base.get("task", "auto")))
    va = train_core.load_split(val_dir, tr.task, tr.label_names)
    inputs = train_core.mlp_inputs(tr, va)
    columns = inputs.width
    plan = budget(len(tr), columns, config)
    fixed = {"seed": config.seed, **plan["base"]}  # the study's seed also seeds every trial's training
    base = train_core.TrainConfig.from_dict(fixed)
    device = train_core.pick_device(base.device).type
    data_sha = train_core.data_digest(train_dir, val_dir)
    n_trials, timeout = plan["n_trials"], plan["timeout_s"]
    progress(
        f"tune: {len(tr)} training rows × {columns} columns; {n_trials} trial(s)"
        + (f", at most {timeout:.0f}s" if timeout else "")
        + f", max_epochs {base.max_epochs}, on {device}"
    )
    kept: dict[str, Any] = {}  # the best completed trial of this session: its number, module and summary

    def objective(trial: Any) -> float:
        if mlrun is None:
            return fit_trial(trial, None)
        with mlrun.child(f"trial-{trial.number}", {"shipyard.trial": str(trial.number)}) as nested:
            try:
                value = fit_trial(trial, nested)
            except optuna.TrialPruned:
                nested.status = "KILLED"
                nested.set_tags({"shipyard.trial_state": "PRUNED"})
                raise
            except BaseException:
                nested.set_tags({"shipyard.trial_state": "FAIL"})
                raise
            nested.set_tags({"shipyard.trial_state": "COMPLETE"})
            nested.log_metrics({"best_val_loss": value})
            return value

    def fit_trial(trial: Any, nested: Any) -> float:
        params = {**fixed, **suggest(trial, config.search_space)}
        trial_config = train_core.TrainConfig.from_dict(params)
        if nested is not None:
            nested.log_params(suggest_params(trial, config.search_space))

        def report(epoch: int, val_loss: float) -> None:
            if nested is not None:
                nested.log_metrics({"val_loss": val_loss}, epoch)
            if config.pruning:
                trial.report(val_loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        start = time.perf_counter()
        try:
            mlp, info = train_core.fit_mlp(tr, va, trial_config, on_epoch=report, inputs=inputs)
        except optuna.TrialPruned:
            progress(f"tune: trial {trial.number} pruned after {time.perf_counter() - start:.1f}s")
            raise
        value = float(info["best_val_loss"])
        trial.set_user_attr("best_epoch", info["best_epoch"])
        if not kept or value < kept["value"]:
            kept.update(number=trial.number, value=value, mlp=mlp, info=info, config=trial_config)
        progress(
            f"tune: trial {trial.number} done in {time.perf_counter() - start:.1f}s ({info['epochs']} epochs): "
            f"val loss {value:.4g}; best {kept['value']:.4g} (#{kept['number']}); "
            + ", ".join(f"{k}={_short(v)}" for k, v in suggest_params(trial, config.search_space).items())
        )
        return value

    with tracking.step_run("tune", "shipyard/tune", tracking_uri) as mlrun:
        if mlrun is not None:
            mlrun.log_params({"n_trials": n_trials, "timeout_s": timeout, "seed": config.seed, **plan["base"]})
        result, trials, best = _study(config, objective, base, plan, kept, study_dir)
        if mlrun is not None:
            mlrun.log_metrics({k: result[k] for k in ("best_value", "trials", "pruned")})
            mlrun.set_tags({"shipyard.best_trial": str(best.number), "shipyard.study": result["study_name"]})
    if best_model_dir:
        _write_best_model(best_model_dir, kept, best.number, tr, inputs, data_sha, device)
    names = list(config.search_space)
    rows = [(t["number"], t["state"], t["value"], *[t["params"].get(n) for n in names]) for t in trials]
    write_text(
        report_md,
        f"# Hyperparameter search\n\n{len(trials)} trials, {result['pruned']} pruned; best trial "
        f"#{best.number}, validation loss {best.value:.4g}.\n\n"
        + markdown_table(["trial", "state", "val loss", *names], rows),
    )
    return result


def _study(
    config: TuneConfig, objective: Any, base: Any, plan: dict[str, Any], kept: dict[str, Any], study_dir: str
) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """Creates (or resumes) the study, optimizes it with ``plan``'s budget (``kept``: the best
    trial of this session, filled by ``objective``) and writes ``trials.json``; returns the result,
    the trials and the best trial."""
    import optuna

    n_trials, timeout = plan["n_trials"], plan["timeout_s"]

    with atomic_dir(study_dir) as tmp:
        storage = config.storage or f"sqlite:///{Path(tmp).resolve() / 'study.db'}"
        study_name = config.study_name or f"shipyard-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        try:
            if config.storage:
                rdb.prepare(config.storage, "optuna", "tune")  # its schema exists, and holds no MLflow store
            study = optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=config.seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(5, base.min_epochs))
                if config.pruning
                else optuna.pruners.NopPruner(),
                # Resume only a study named on purpose; an unnamed one is new on every run.
                load_if_exists=bool(config.study_name),
            )
        except ConfigError:
            raise
        except Exception as exc:  # a bad URL (ConfigError), or a database that cannot be reached (may pass)
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # SQLAlchemy appends SQL and a link
            message = f"tune: cannot open Optuna storage {rdb.redact(config.storage)!r}: {cause}"
            if rdb.is_unreachable(exc):  # a StorageError: a retry of the step tries again
                raise StorageError(message) from exc
            raise ConfigError(message) from exc
        # A trial that diverges (NaN loss) is recorded as FAIL and the study goes on.
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(DataValidationError,))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
            hint = (
                f"{failed} trial(s) diverged (NaN loss): lower the lr range"
                if failed
                else "all were pruned: raise n_trials or turn pruning off"
            )
            raise ConfigError(f"tune: no trial completed; {hint}")
        best = study.best_trial
        best_params = json.loads(json.dumps({**base.to_dict(), **best.params}))  # as JSON (and KFP) hold it
        trials: list[dict[str, Any]] = [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "seconds": (t.duration.total_seconds() if t.duration else None),
            }
            for t in study.trials
        ]
        result = {
            "best_params": best_params,
            "best_value": float(best.value or 0.0),
            "best_trial": best.number,
            "trials": len(study.trials),
            "pruned": sum(t["state"] == "PRUNED" for t in trials),
            "storage": rdb.redact(config.storage) if config.storage else "sqlite (artifact)",
            "study_name": study_name,
            "budget": {"n_trials": n_trials, "timeout_s": timeout, "base": plan["base"]},
            "best_model": kept.get("number") == best.number,
        }
        write_json(Path(tmp) / "trials.json", {"result": result, "trials": trials})
    return result, trials, best


def suggest_params(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The values a trial drew for the search space (for its progress line)."""
    return {name: trial.params[name] for name in space if name in trial.params}


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_best_model(
    path: str, kept: dict[str, Any], best_number: int, tr: Any, inputs: Any, data_sha: str, device: str
) -> None:
    """Writes the best trial's MLP with its reuse key, or a note saying why there is none."""
    from components.train_model import core as train_core

    if kept.get("number") != best_number:
        with atomic_dir(path) as tmp:
            (tmp / "README.txt").write_text(
                f"The best trial (#{best_number}) ran in an earlier session of this study; its weights are not kept.\n"
            )
        return
    config, info = kept["config"], kept["info"]
    details = {
        "family": "mlp",
        "params": {k: getattr(config, k) for k in train_core.MLP_FIELDS},
        "training": {k: v for k, v in info.items() if k != "architecture"},
        "reuse_key": train_core.reuse_key(data_sha, config, device),
        "trial": best_number,
    }
    train_core.save_torch_model(
        path, kept["mlp"], tr, info["architecture"], {"val_loss": kept["value"]}, details, inputs.prep
    )
