"""Tests for components.train_model.core: config, families on raw mixed-type tables, the candidate, early stopping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from components.train_model import core
from serving.formats import load_model
from shipyard.artifacts import Column, DatasetSchema, infer_schema, read_dataset, read_model_manifest, write_dataset
from shipyard.errors import ConfigError, DataValidationError

SMALL = {"max_epochs": 4, "patience": 4, "min_epochs": 1, "width": 16, "depth": 1, "ensemble": 2, "gbdt_max_iter": 20}


@pytest.fixture(scope="module")
def trained(baseline_artifacts, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    summary = core.train(
        str(baseline_artifacts["train"]),
        str(baseline_artifacts["val"]),
        str(root / "model"),
        str(root / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "candidate": "mlp"}),
        str(root / "comparison.json"),
        str(root / "comparison.md"),
    )
    return {"summary": summary, "model": root / "model", "baseline": root / "baseline", "root": root}


# --- TrainConfig ---------------------------------------------------------------------------------


def test_from_dict_names_an_unknown_key_and_the_allowed_ones():
    with pytest.raises(ConfigError) as exc:
        core.TrainConfig.from_dict({"max_epoch": 5})
    assert "unknown key(s) 'max_epoch'" in str(exc.value) and "max_epochs" in str(exc.value)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"width": 0}, "width must be in 1..4096"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"lr": 0}, "lr must be > 0"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"task": "ranking"}, "task must be auto, binary, multiclass or regression"),
        ({"width": "64"}, "'width' must be int"),
        ({"candidate": "forest"}, "candidate must be best or one of"),
        ({"families": ["mlp", "svm"]}, "families: unknown ['svm']"),
        ({"candidate": "gbdt", "families": ["mlp"]}, "candidate 'gbdt' is not among the families trained"),
        ({"ensemble": 0}, "ensemble must be in 1..64"),
    ],
)
def test_from_dict_rejects_bad_values(values, fragment):
    with pytest.raises(ConfigError) as exc:
        core.TrainConfig.from_dict(values)
    assert fragment in str(exc.value)


def test_from_dict_accepts_integral_floats_as_kfp_passes_them():
    config = core.TrainConfig.from_dict({"max_epochs": 5.0, "width": 32.0})
    assert config.max_epochs == 5 and isinstance(config.width, int)


# --- train() on the reference (all-numeric) data ------------------------------------------------


def test_train_writes_the_candidate_the_baseline_and_the_comparison(trained):
    summary = trained["summary"]
    assert summary["task"] == "binary" and summary["device"] == "cpu"
    assert summary["candidate"] == "mlp" and "forced" in summary["reason"]
    assert 1 <= summary["epochs"] <= SMALL["max_epochs"]
    assert set(summary["table"]) == {"gbdt", "mlp", "linear"}
    assert math.isfinite(summary["best_val_loss"]) and math.isfinite(summary["baseline_val_loss"])

    model = read_model_manifest(trained["model"])
    assert model.format == "torchscript" and model.task == "binary"
    assert set(model.files) == {core.TORCHSCRIPT_FILE, core.STATE_DICT_FILE}
    assert model.label == "target" and model.label_names == (0, 1)
    assert len(model.feature_names) == 30 and "target" not in model.feature_names
    assert model.metrics == {"val_loss": summary["best_val_loss"]}
    arch = model.details["architecture"]
    assert (arch["n_features"], arch["n_outputs"], arch["width"], arch["ensemble"]) == (30, 2, 16, 2)
    assert model.details["params"]["max_epochs"] == SMALL["max_epochs"] and model.details["family"] == "mlp"
    assert model.preprocessing is None  # all-numeric without nulls: the identity

    baseline = read_model_manifest(trained["baseline"])
    assert baseline.format == "sklearn-skops" and set(baseline.files) == {core.SKOPS_FILE}
    assert baseline.details["role"] == "baseline" and baseline.details["estimator"] == "LogisticRegression"
    assert baseline.input_schema == model.input_schema and baseline.label_names == model.label_names
    assert baseline.metrics == {"val_loss": summary["baseline_val_loss"]}
    assert baseline.preprocessing is None  # so the server still folds it into one affine map
    assert load_model(trained["baseline"]).score_row is not None

    table = json.loads((trained["root"] / "comparison.json").read_text())
    assert table["candidate"] == "mlp" and table["primary_metric"] == "roc_auc"
    assert table["table"]["gbdt"]["format"] == "sklearn-skops" and table["table"]["mlp"]["format"] == "torchscript"
    markdown = (trained["root"] / "comparison.md").read_text()
    assert markdown.startswith("# Model families") and all(f in markdown for f in core.FAMILIES)


def test_torchscript_equals_the_rebuilt_state_dict_module(trained, baseline_artifacts):
    manifest = read_model_manifest(trained["model"])
    val = core.load_split(str(baseline_artifacts["val"]), manifest.task, list(manifest.label_names))
    x = torch.from_numpy(val.x)

    scripted = torch.jit.load(str(trained["model"] / core.TORCHSCRIPT_FILE))
    rebuilt = core.scoring_module(core.load_torch_weights(trained["model"]), manifest.task).eval()
    with torch.no_grad():
        a, b = scripted(x).numpy(), rebuilt(x).numpy()

    assert a.shape == (len(val.x), 2)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(load_model(trained["model"]).scores(val.x), a, atol=1e-6, rtol=0)


def test_recorded_validation_metrics_are_the_served_models(trained, baseline_artifacts):
    from shipyard import metrics

    val = core.load_split(str(baseline_artifacts["val"]), "binary", [0, 1])
    for name in ("model", "baseline"):
        family = "mlp" if name == "model" else "linear"
        served = metrics.compute("binary", val.y, load_model(trained[name]).score_frame(val.frame))
        assert served == pytest.approx(trained["summary"]["table"][family]["metrics"], rel=1e-6)


def test_early_stopping_stops_patience_epochs_after_the_best(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    losses: list[float] = []
    config = core.TrainConfig(max_epochs=40, patience=1, min_epochs=1, lr=0.05, width=16, depth=1, ensemble=2)

    _, info = core.fit_mlp(tr, va, config, on_epoch=lambda epoch, loss: losses.append(loss))

    assert info["epochs"] < config.max_epochs and info["stopped"] == "patience"
    assert info["epochs"] == info["best_epoch"] + config.patience + 1 == len(losses)
    assert info["best_val_loss"] == min(losses) < losses[-1]


def test_min_epochs_are_run_before_early_stopping(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    config = core.TrainConfig(max_epochs=12, patience=1, min_epochs=12, lr=0.05, width=16, depth=1, ensemble=2)

    _, info = core.fit_mlp(tr, va, config)

    assert info["epochs"] == 12


def test_best_epoch_weights_are_restored(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    config = core.TrainConfig(max_epochs=30, patience=1, min_epochs=1, lr=0.05, width=16, depth=1, ensemble=3)

    mlp, info = core.fit_mlp(tr, va, config)

    with torch.no_grad():
        p = core.scoring_module(mlp, "binary")(torch.from_numpy(va.x))
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp_min(1e-7)), torch.from_numpy(va.y))
    assert float(loss) == pytest.approx(info["best_val_loss"], rel=1e-5)
    assert not mlp.training


def _train_in(root: Path, values: dict) -> dict:
    """``train`` on ``root``'s train and val splits into ``root/model`` and ``root/baseline``."""
    splits = [str(root / name) for name in ("train", "val", "model", "baseline")]
    return core.train(*splits, core.TrainConfig.from_dict(values))


def test_regression_on_diabetes(tmp_path):
    from components.ingest_data.core import IngestConfig, ingest
    from components.split_data.core import SplitConfig, split

    ingest("sklearn:diabetes", str(tmp_path / "ds"), IngestConfig())
    split(str(tmp_path / "ds"), str(tmp_path / "train"), str(tmp_path / "val"), str(tmp_path / "test"), SplitConfig())

    summary = _train_in(tmp_path, {**SMALL, "candidate": "mlp"})

    assert summary["task"] == "regression" and summary["primary_metric"] == "rmse"
    assert math.isfinite(summary["best_val_loss"]) and summary["best_val_loss"] > 0
    assert math.isfinite(summary["baseline_val_loss"])
    manifest = read_model_manifest(tmp_path / "model")
    assert manifest.task == "regression" and manifest.label_names == ()
    assert manifest.details["architecture"]["n_outputs"] == 1
    assert read_model_manifest(tmp_path / "baseline").details["estimator"] == "Ridge"
    val = core.load_split(str(tmp_path / "val"), "regression")
    predictions = load_model(tmp_path / "model").scores(val.x)
    assert predictions.shape == (len(val.y),)
    # Served predictions are in the label's units (target scaling is undone by the serving head).
    assert abs(predictions.mean() - val.y.mean()) < val.y.std()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_cuda_without_a_gpu_is_a_config_error(tmp_path, baseline_artifacts):
    with pytest.raises(ConfigError, match="device 'cuda' requested but no CUDA device"):
        core.train(
            str(baseline_artifacts["train"]),
            str(baseline_artifacts["val"]),
            str(tmp_path / "model"),
            str(tmp_path / "baseline"),
            core.TrainConfig(device="cuda", max_epochs=1),
        )
    assert not (tmp_path / "model").exists() and not (tmp_path / "baseline").exists()


# --- candidate choice (a pure policy) ------------------------------------------------------------


def _table(**primary: float) -> dict:
    return {f: {"metrics": {"roc_auc": v, "accuracy": 0.5}} for f, v in primary.items()}


@pytest.mark.parametrize(
    ("table", "task", "forced", "expected"),
    [
        (_table(gbdt=0.97, mlp=0.99, linear=0.98), "binary", "best", "mlp"),
        (_table(gbdt=0.99, mlp=0.99, linear=0.98), "binary", "best", "gbdt"),  # tie: the simpler family
        (
            {
                f: {"metrics": {"accuracy": 1.0}, "val_loss": v}
                for f, v in (("gbdt", 0.2), ("mlp", 0.05), ("linear", 0.1))
            },
            "multiclass",
            "best",
            "mlp",
        ),  # tie on the primary metric: the lower validation loss
        (_table(gbdt=0.99, mlp=0.99, linear=0.99), "binary", "best", "linear"),
        (_table(gbdt=0.99, mlp=0.97, linear=0.98), "binary", "mlp", "mlp"),
        ({f: {"metrics": {"accuracy": v}} for f, v in (("gbdt", 0.9), ("linear", 0.95))}, "binary", "best", "linear"),
        (
            {f: {"metrics": {"rmse": v}} for f, v in (("gbdt", 3.0), ("mlp", 2.0), ("linear", 2.5))},
            "regression",
            "best",
            "mlp",
        ),
    ],
)
def test_choose_candidate(table, task, forced, expected):
    pick, reason = core.choose_candidate(table, task, forced)
    assert pick == expected
    assert ("forced" in reason) == (forced != "best")


# --- raw mixed-type tables -----------------------------------------------------------------------


def _mixed(n: int, seed: int, unseen: bool) -> pd.DataFrame:
    """Numeric with nulls, an integer, strings with a rare value, booleans, an id; a known signal."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]).astype(object)
    plan[:2] = "legacy"  # rare: fewer rows than the vocabulary's minimum frequency
    if unseen:
        plan[2:6] = "enterprise"  # never seen in training
    tenure = rng.exponential(12, n)
    spend = rng.normal(50, 20, n)
    spend[rng.random(n) < 0.15] = np.nan
    promo = rng.random(n) < 0.4
    logit = 0.08 * tenure - 1.0 * (plan == "basic") + 1.2 * promo + 0.02 * np.nan_to_num(spend, nan=50) - 2.0
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(
        {
            "customer": [f"c{seed}-{i}" for i in range(n)],
            "tenure": tenure,
            "seats": rng.integers(1, 20, n),
            "plan": pd.array(plan, dtype="string"),
            "spend": spend,
            "promo": promo,
            "churn": churn,
        }
    )


MIXED_SCHEMA = DatasetSchema(
    (
        Column("customer", "string", "id"),
        Column("tenure", "float64"),
        Column("seats", "int64"),
        Column("plan", "string", kind="categorical"),
        Column("spend", "float64"),
        Column("promo", "bool"),
        Column("churn", "object", "label"),
    )
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mixed")
    splits = {"train": _mixed(400, 0, False), "val": _mixed(150, 1, True), "test": _mixed(150, 2, True)}
    for name, df in splits.items():
        write_dataset(root / name, df, MIXED_SCHEMA)
    return {name: str(root / name) for name in splits} | {"root": str(root)}


@pytest.mark.parametrize("family", core.FAMILIES)
def test_each_family_trains_on_a_raw_mixed_type_table_and_serves_raw_rows(mixed, tmp_path, family):
    summary = core.train(
        mixed["train"],
        mixed["val"],
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "candidate": family}),
    )

    assert summary["candidate"] == family and summary["task"] == "binary"
    manifest = read_model_manifest(tmp_path / "model")
    assert manifest.details["family"] == family
    assert manifest.feature_names == ["tenure", "seats", "plan", "spend", "promo"]  # the id is not a feature
    assert manifest.label_names == ("no", "yes")
    prep = {f["name"]: f for f in manifest.preprocessing["features"]}
    assert prep["plan"]["kind"] == "categorical" and "legacy" not in prep["plan"]["vocabulary"]
    assert prep["promo"]["kind"] == "categorical" and prep["spend"]["indicator"] is True
    assert manifest.preprocessing["categorical"] == ("onehot" if family == "linear" else "codes")

    test_df, _ = read_dataset(mixed["test"])
    loaded = load_model(tmp_path / "model")
    encoded = loaded.encode_frame(test_df)
    assert encoded.unknown == {"plan": 6}  # the unseen (4) and the rare (2) categories share the unknown bucket
    scores = loaded.scores(encoded.x)
    assert scores.shape == (150, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert summary["table"][family]["metrics"]["roc_auc"] > 0.6  # the signal is learned


def test_mixed_type_training_is_deterministic_and_picks_by_validation(mixed, tmp_path):
    runs = [
        core.train(
            mixed["train"],
            mixed["val"],
            str(tmp_path / f"model{i}"),
            str(tmp_path / f"baseline{i}"),
            core.TrainConfig.from_dict(SMALL),
        )
        for i in range(2)
    ]

    def stable(summary: dict) -> dict:
        return {f: {k: v for k, v in row.items() if k != "fit_seconds"} for f, row in summary["table"].items()}

    assert runs[0]["candidate"] == runs[1]["candidate"]
    assert stable(runs[0]) == stable(runs[1])
    # 550 rows: the families are compared out of fold, and the comparison is as deterministic as the fits
    assert runs[0]["selection"]["method"] == "cv" and runs[0]["selection"]["rows"] == 550
    assert runs[0]["candidate"] in runs[0]["table"] and "5-fold CV loss" in runs[0]["reason"]
    assert all(math.isfinite(row["cv_loss"]) for row in runs[0]["table"].values())
    test_df, _ = read_dataset(mixed["test"])
    a, b = (load_model(tmp_path / f"model{i}").score_frame(test_df) for i in range(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_mixed_type_mlp_exports_to_onnx_with_its_embeddings(mixed, tmp_path):
    from components.quantize_model.core import _build_variant

    core.train(
        mixed["train"],
        mixed["val"],
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "candidate": "mlp", "families": ["mlp"]}),
    )
    manifest = read_model_manifest(tmp_path / "model")
    test_df, _ = read_dataset(mixed["test"])
    x = load_model(tmp_path / "model").encode_frame(test_df).x
    _build_variant("fp32-onnx", tmp_path / "model", manifest, tmp_path / "onnx", x)

    onnx = load_model(tmp_path / "onnx")
    np.testing.assert_allclose(onnx.score_frame(test_df), load_model(tmp_path / "model").scores(x), atol=1e-5)


def test_palmerpenguins_trains_with_strings_and_missing_values(tmp_path):
    import palmerpenguins

    from components.split_data.core import SplitConfig, split

    df = palmerpenguins.load_penguins()
    write_dataset(tmp_path / "ds", df, infer_schema(df, "species"))
    split(str(tmp_path / "ds"), str(tmp_path / "train"), str(tmp_path / "val"), str(tmp_path / "test"), SplitConfig())

    summary = _train_in(tmp_path, SMALL)

    assert summary["task"] == "multiclass" and summary["primary_metric"] == "accuracy"
    test_df, _ = read_dataset(tmp_path / "test")
    te = core.load_split(str(tmp_path / "test"), "multiclass", ["Adelie", "Chinstrap", "Gentoo"])
    for name in ("model", "baseline"):
        scores = load_model(tmp_path / name).score_frame(test_df)
        assert (scores.argmax(axis=1) == te.y).mean() > 0.8


def test_families_option_skips_the_mlp(mixed, tmp_path):
    summary = core.train(
        mixed["train"],
        mixed["val"],
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "families": ["gbdt"]}),
        families_dir=str(tmp_path / "all"),
    )
    assert set(summary["table"]) == {"gbdt", "linear"} and "epochs" not in summary
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["gbdt", "linear"]


# --- bad inputs ----------------------------------------------------------------------------------


def _write_split(path: Path, df: pd.DataFrame) -> str:
    write_dataset(path, df, infer_schema(df, "target"))
    return str(path)


def test_validation_class_unseen_in_training_is_rejected(tmp_path):
    x = np.linspace(0, 1, 30)
    train_dir = _write_split(tmp_path / "train", pd.DataFrame({"x": x, "target": np.arange(30) % 2}))
    val_dir = _write_split(tmp_path / "val", pd.DataFrame({"x": x, "target": np.arange(30) % 3}))
    with pytest.raises(DataValidationError, match=r"classes \[2\] not seen in training"):
        core.train(
            train_dir, val_dir, str(tmp_path / "model"), str(tmp_path / "baseline"), core.TrainConfig(max_epochs=1)
        )


def test_missing_label_values_are_rejected(tmp_path):
    df = pd.DataFrame({"x": np.linspace(0, 1, 30), "target": [0.0, 1.0, np.nan] * 10})
    with pytest.raises(DataValidationError, match=r"label 'target' has missing values \(first in row 2\)"):
        core.load_split(_write_split(tmp_path / "train", df))


def test_a_null_where_training_had_none_names_the_feature_and_row(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=40), "target": np.arange(40) % 2})
    val = df.assign(x=[np.nan] + df["x"].tolist()[1:])
    train_dir, val_dir = _write_split(tmp_path / "train", df), _write_split(tmp_path / "val", val)
    with pytest.raises(DataValidationError, match=r"feature 'x' is null in row 0"):
        core.train(
            train_dir, val_dir, str(tmp_path / "model"), str(tmp_path / "baseline"), core.TrainConfig(max_epochs=1)
        )
    assert not (tmp_path / "model").exists()


def test_an_unseen_category_scores_as_an_average_known_one_in_the_mlp(tmp_path):
    """Without rare training values the MLP's unknown bucket gets no gradient; its embedding is the
    count-weighted mean of the known ones, so an unseen plan scores inside the known plans' range."""
    train = _mixed(400, 0, False)
    train["plan"] = train["plan"].replace("legacy", "basic")
    val = _mixed(150, 1, False).assign(plan=lambda d: d["plan"].replace("legacy", "basic"))
    train_dir, val_dir = str(tmp_path / "train"), str(tmp_path / "val")
    write_dataset(train_dir, train, MIXED_SCHEMA)
    write_dataset(val_dir, val, MIXED_SCHEMA)
    core.train(
        train_dir,
        val_dir,
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "candidate": "mlp"}),
    )
    model = load_model(tmp_path / "model")
    assert read_model_manifest(tmp_path / "model").details["training"]["untrained_codes"] >= 1
    rows = val.head(40)
    per_plan = {p: model.score_frame(rows.assign(plan=p))[:, 1].mean() for p in ("basic", "pro", "team")}
    unseen = model.score_frame(rows.assign(plan="enterprise"))[:, 1].mean()
    assert min(per_plan.values()) <= unseen <= max(per_plan.values()), (per_plan, unseen)
    mlp = core.load_torch_weights(str(tmp_path / "model"))
    vocab = list(model.preprocessing.features[2].vocabulary)  # plan, the first categorical feature
    counts = train["plan"].value_counts()
    weight = mlp.embedding.weight.detach()[: len(vocab) + 1]  # plan's codes start at offset 0
    expected = sum(float(counts[v]) * weight[i] for i, v in enumerate(vocab)) / float(counts.sum())
    torch.testing.assert_close(weight[len(vocab)], expected, rtol=1e-5, atol=1e-6)  # the unknown bucket


def test_the_baseline_stays_unless_a_family_beats_it_by_more_than_one_standard_error():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.2, 60)
    noise -= noise.mean()  # zero-mean: linear's mean excess is exactly 0.01, under its SE of about 0.013
    base = np.abs(rng.normal(0.5, 0.1, 60))
    table = _table(linear=0.9, gbdt=0.95, mlp=0.97)
    close = {"linear": base + 0.01 + noise * 0.5, "gbdt": base + noise, "mlp": base}
    pick, reason = core.choose_candidate(table, "binary", "best", close)
    assert pick == "linear" and "within one standard error" in reason  # mlp's edge is noise on 60 rows
    clear = {"linear": base + 1.0, "gbdt": base + 0.8, "mlp": base}
    assert core.choose_candidate(table, "binary", "best", clear)[0] == "mlp"
    assert core.choose_candidate(table, "binary", "gbdt", clear)[0] == "gbdt"
    # A GBDT with a few confidently wrong rows has a noisy loss, so its gap to the best is "within one
    # standard error" of its own paired difference; that does not make it the candidate over a family
    # clearly better than the baseline (penguins: the MLP).
    spiky = base - 0.05
    spiky[0] += 8.0
    gap = spiky - base
    assert 0 < gap.mean() <= gap.std(ddof=1) / math.sqrt(len(gap))  # within one SE of the MLP, yet worse
    noisy = {"linear": base + 0.3, "gbdt": spiky, "mlp": base}
    pick, reason = core.choose_candidate(table, "binary", "best", noisy, "5-fold CV")
    assert pick == "mlp" and "lowest 5-fold CV loss" in reason
    losses = core.row_losses("binary", np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    np.testing.assert_allclose(losses, -np.log([0.9, 0.8]))


# --- cross-validated choice on small tables --------------------------------------------------------


def _numeric_split(n: int, seed: int, classes: int = 2) -> core.TabularData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (np.digitize(x[:, 0], np.linspace(-1, 1, classes - 1)) if classes > 1 else np.zeros(n)).astype(np.int64)
    columns = tuple(Column(f"x{i}", "float32") for i in range(3))
    return core.TabularData(x, y, [c.name for c in columns], "y", list(range(classes)), "multiclass", columns)


def test_cross_validation_holds_each_row_out_once_and_never_fits_or_stops_on_it():
    train, val = _numeric_split(120, 0, 3), _numeric_split(30, 1, 3)
    seen: list[tuple[str, set, set]] = []

    def fit(part_train, part_val, family, config):
        keys = lambda d: {tuple(r) for r in d.x.tolist()}  # noqa: E731 (rows are distinct floats)
        seen.append((family, keys(part_train), keys(part_val)))
        return lambda d: np.full((len(d), 3), 1 / 3) if family == "linear" else np.eye(3)[d.y] * 0.9 + 0.1 / 3

    cv = core.cross_validate(train, val, ["gbdt", "linear"], core.TrainConfig(), fit, 5)
    assert cv.rows == 150 and cv.folds == 5 and len(seen) == 10
    np.testing.assert_allclose(cv.losses["linear"], np.log(3.0))  # every row scored exactly once
    np.testing.assert_allclose(cv.losses["gbdt"], -np.log(0.9 + 0.1 / 3))
    pooled = {tuple(r) for r in np.concatenate([train.x, val.x]).tolist()}
    held = [pooled - fit_rows - stop_rows for _, fit_rows, stop_rows in seen[::2]]
    assert all(not (a & b) for _, a, b in seen)  # the inner early-stopping split is apart from the fit rows
    assert set().union(*held) == pooled and sum(map(len, held)) == 150  # folds partition the pool
    assert all(abs(len(stop) - 0.2 * len(fit_rows | stop)) <= 1 for _, fit_rows, stop in seen)  # 30 / 150


@pytest.mark.parametrize(
    ("rows", "classes", "limit", "fragment"),
    [
        (900, 2, 1000, None),
        (1200, 2, 1000, "1200 rows in train + validation > cv_max_rows 1000"),
        (200, 30, 1000, "fewer than 2 × 5 folds"),
    ],
)
def test_cross_validation_is_for_small_tables_with_enough_rows_per_class(rows, classes, limit, fragment):
    train, val = _numeric_split(rows - rows // 5, 0, classes), _numeric_split(rows // 5, 1, classes)
    problem = core.cv_problem(train, val, 5, limit)
    assert problem is None if fragment is None else fragment in problem


@pytest.mark.parametrize(("selection", "method"), [("validation", None), ("cv", "cv"), ("auto", "cv")])
def test_selection_decides_whether_the_families_are_cross_validated(mixed, tmp_path, selection, method):
    summary = core.train(
        mixed["train"],
        mixed["val"],
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "selection": selection, "cv_folds": 3}),
        comparison_md=str(tmp_path / "comparison.md"),
    )
    assert summary.get("selection", {}).get("method") == method
    markdown = (tmp_path / "comparison.md").read_text()
    assert ("cv loss" in markdown and "3-fold cross-validation over 550 rows" in markdown) == (method == "cv")
    assert ("3-fold CV loss" in summary["reason"]) == (method == "cv")  # what the rule compared


def test_a_forced_candidate_is_not_cross_validated(mixed, tmp_path):
    summary = core.train(
        mixed["train"],
        mixed["val"],
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict({**SMALL, "candidate": "gbdt", "selection": "cv"}),
    )
    assert "selection" not in summary and "cv_loss" not in summary["table"]["gbdt"]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [({"selection": "holdout"}, "selection must be one of auto, cv, validation"), ({"cv_folds": 1}, "cv_folds")],
)
def test_selection_options_are_checked(values, fragment):
    with pytest.raises(ConfigError) as exc:
        core.TrainConfig.from_dict(values)
    assert fragment in str(exc.value)
