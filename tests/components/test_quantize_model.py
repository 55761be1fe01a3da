"""Tests for components.quantize_model.core: the choice rule (table-tested) and the artifact it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.evaluate_model.core import labels_of
from components.quantize_model.core import VARIANTS, QuantizeConfig, choose, quantize
from serving.formats import load_model
from shipyard.artifacts import read_dataset, read_model_manifest, sha256_file
from shipyard.errors import ConfigError


def _val(model_dir, val_dir) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows as the model takes them (its own preprocessing) and their labels."""
    model = load_model(model_dir)
    df, _ = read_dataset(val_dir)
    return model.encode_frame(df).x, labels_of(model, df, str(val_dir))


def _row(latency: float, size: int, **metrics: float) -> dict:
    return {"bytes": size, "latency_us_1": latency, "latency_us_64": latency * 10, "metrics": metrics}


def _binary(
    fp32=(100.0, 40_000, 0.99), i8ts=(90.0, 20_000, 0.99), f_onnx=(50.0, 14_000, 0.99), i8onnx=(60.0, 9_000, 0.99)
) -> dict:
    rows = dict(zip(VARIANTS, (fp32, i8ts, f_onnx, i8onnx), strict=True))
    return {v: _row(lat, size, roc_auc=auc, accuracy=0.95) for v, (lat, size, auc) in rows.items()}


CHOICES = {
    # case: (table, task, config values, expected variant, fragment of the reason)
    "latency objective picks the fastest": (_binary(), "binary", {}, "fp32-onnx", "lowest single-row latency"),
    "size objective picks the smallest": (_binary(), "binary", {"objective": "size"}, "int8-onnx", "lowest file size"),
    "metric drop excludes the fastest": (
        _binary(f_onnx=(30.0, 14_000, 0.97)),
        "binary",
        {},
        "int8-onnx",
        "(3/4 eligible)",
    ),
    "a larger allowed drop keeps it": (
        _binary(f_onnx=(30.0, 14_000, 0.97)),
        "binary",
        {"max_metric_drop": 0.05},
        "fp32-onnx",
        "(4/4 eligible)",
    ),
    "a better metric is never excluded": (
        _binary(f_onnx=(30.0, 14_000, 1.0)),
        "binary",
        {},
        "fp32-onnx",
        "(4/4 eligible)",
    ),
    "near tie goes to the smaller file": (
        _binary(f_onnx=(50.0, 14_000, 0.99), i8onnx=(52.0, 9_000, 0.99)),
        "binary",
        {},
        "int8-onnx",
        "near tie broken by size",
    ),
    "no tie beyond 5%": (
        _binary(f_onnx=(50.0, 14_000, 0.99), i8onnx=(53.0, 9_000, 0.99)),
        "binary",
        {},
        "fp32-onnx",
        "lowest single-row latency",
    ),
    "only fp32 eligible": (
        _binary(i8ts=(10.0, 1, 0.5), f_onnx=(10.0, 1, 0.5), i8onnx=(10.0, 1, 0.5)),
        "binary",
        {},
        "fp32-torchscript",
        "(1/4 eligible)",
    ),
}


@pytest.mark.parametrize("case", list(CHOICES))
def test_choose(case):
    table, task, values, expected, fragment = CHOICES[case]
    pick, reason = choose(table, task, QuantizeConfig.from_dict(values))
    assert pick == expected
    assert fragment in reason
    assert ("near tie" in reason) == (case == "near tie goes to the smaller file")


def _regression(rmse: dict[str, float], latency: dict[str, float]) -> dict:
    return {v: _row(latency[v], 10_000, rmse=rmse[v], mae=1.0, r2=0.5) for v in VARIANTS}


@pytest.mark.parametrize(
    ("rmse", "expected"),
    [
        # The fastest (int8-onnx) has a higher, i.e. worse, rmse by more than the allowed 0.01: excluded.
        ({"fp32-torchscript": 10.0, "int8-torchscript": 10.005, "fp32-onnx": 10.0, "int8-onnx": 10.5}, "fp32-onnx"),
        # A lower rmse is better, so a big decrease keeps it eligible.
        ({"fp32-torchscript": 10.0, "int8-torchscript": 10.005, "fp32-onnx": 10.0, "int8-onnx": 9.0}, "int8-onnx"),
        # Slightly worse but within the allowed drop.
        ({"fp32-torchscript": 10.0, "int8-torchscript": 10.0, "fp32-onnx": 10.0, "int8-onnx": 10.009}, "int8-onnx"),
    ],
)
def test_choose_treats_rmse_as_lower_is_better(rmse, expected):
    latency = {"fp32-torchscript": 100.0, "int8-torchscript": 80.0, "fp32-onnx": 60.0, "int8-onnx": 30.0}
    pick, reason = choose(_regression(rmse, latency), "regression", QuantizeConfig())
    assert pick == expected
    assert "rmse" in reason


def test_choose_falls_back_to_accuracy_when_roc_auc_is_missing():
    table = {
        v: _row(lat, 1000, accuracy=acc)
        for v, lat, acc in zip(VARIANTS, (100.0, 90.0, 20.0, 80.0), (0.9, 0.9, 0.8, 0.9), strict=True)
    }
    pick, reason = choose(table, "binary", QuantizeConfig())
    assert pick == "int8-onnx" and "accuracy" in reason


# --- QuantizeConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"variants": ["fp16-onnx"]}, "variants: unknown ['fp16-onnx']"),
        ({"variants": ["int8-onnx", "int4-torchscript"]}, "unknown ['int4-torchscript']"),
        ({"objective": "speed"}, "objective must be latency or size"),
        ({"max_metric_drop": -0.1}, "max_metric_drop must be >= 0"),
        ({"latency_repeats": 2}, "latency_repeats must be >= 5"),
    ],
)
def test_quantize_config_rejects_bad_values(values, fragment):
    with pytest.raises(ConfigError) as exc:
        QuantizeConfig.from_dict(values)
    assert fragment in str(exc.value)


def test_quantize_config_accepts_a_list_of_known_variants():
    assert QuantizeConfig.from_dict({"variants": ["int8-onnx"]}).variants == ("int8-onnx",)


# --- quantize() ----------------------------------------------------------------------------------


def _quantize(root, source, val, config: QuantizeConfig) -> dict:
    """quantize() into ``root``: ``out`` (the Model), ``q.json`` and ``q.md``."""
    return quantize(str(source), str(val), str(root / "out"), str(root / "q.json"), str(root / "q.md"), config)


@pytest.fixture(scope="module")
def quantized(artifacts, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("quantize")
    config = QuantizeConfig(latency_repeats=10)
    result = _quantize(root, artifacts["model"], artifacts["val"], config)
    return {"result": result, "root": root, "config": config}


@pytest.mark.slow
def test_quantize_writes_the_chosen_variant_with_a_parent(quantized, artifacts):
    result, out = quantized["result"], quantized["root"] / "out"
    source = artifacts["model"]

    manifest = read_model_manifest(out)

    assert result["variant"] in VARIANTS
    assert manifest.format == ("onnx" if result["variant"].endswith("onnx") else "torchscript")
    assert manifest.parent == {
        "path": str(source),
        "format": "torchscript",
        "model_json_sha256": sha256_file(source / "model.json"),
    }
    source_manifest = read_model_manifest(source)
    assert manifest.input_schema == source_manifest.input_schema
    assert manifest.label_names == source_manifest.label_names
    assert manifest.metrics["val_loss"] == source_manifest.metrics["val_loss"]
    assert manifest.metrics["roc_auc"] == result["table"][result["variant"]]["metrics"]["roc_auc"]
    if result["variant"] != "fp32-torchscript":
        assert manifest.details["variant"] == result["variant"]


#: fp32 variants run the source's network in float32 with other kernels (ONNX Runtime, another
#: summation order): probabilities agree to float32 rounding, unit roundoff 6e-8 summed over the
#: ~100 products behind each output.
FP32_ATOL = 1e-5


@pytest.mark.slow
def test_quantized_model_scores_like_the_source(quantized, artifacts):
    """The written model is the variant measured, and keeps what the rule promises of it.

    Which variant wins is measured latency, so it differs between machines and runs (int8
    variants then differ from the source by their quantization error, ~0.06 in a probability
    here): every assertion holds whichever one it is.
    """
    import torch

    from shipyard import metrics as task_metrics

    result, config = quantized["result"], quantized["config"]
    row = result["table"][result["variant"]]
    x, y = _val(artifacts["model"], artifacts["val"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as quantize() measured it
    try:
        source = load_model(artifacts["model"]).scores(x)
        out = load_model(quantized["root"] / "out").scores(x)
    finally:
        torch.set_num_threads(threads)
    assert out.shape == source.shape
    assert task_metrics.compute("binary", y, out) == pytest.approx(row["metrics"], rel=1e-9)
    fp32_auc = task_metrics.compute("binary", y, source)["roc_auc"]
    assert row["metrics"]["roc_auc"] >= fp32_auc - config.max_metric_drop - 1e-12
    if result["variant"].startswith("fp32-"):
        np.testing.assert_allclose(out, source, atol=FP32_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("fp32-")])
def test_fp32_variants_score_as_the_source_to_float32_rounding(artifacts, tmp_path, variant):
    """Every fp32 variant, whether or not it wins on this machine, is the source's network."""
    from components.quantize_model.core import _build_variant

    x, _ = _val(artifacts["model"], artifacts["val"])
    _build_variant(variant, artifacts["model"], read_model_manifest(artifacts["model"]), tmp_path / variant, x)
    source = load_model(artifacts["model"]).scores(x)
    np.testing.assert_allclose(load_model(tmp_path / variant).scores(x), source, atol=FP32_ATOL)


@pytest.mark.slow
def test_quantize_report_is_consistent_with_the_rule(quantized):
    result, root, config = quantized["result"], quantized["root"], quantized["config"]
    report = json.loads((root / "q.json").read_text())

    assert set(report["table"]) == set(VARIANTS)
    assert report["variant"] == result["variant"]
    assert choose(report["table"], "binary", config) == (result["variant"], result["reason"])
    ref = report["table"]["fp32-torchscript"]["bytes"]
    assert report["size_ratio"] == pytest.approx(report["table"][result["variant"]]["bytes"] / ref)
    for row in report["table"].values():
        assert row["bytes"] > 0 and row["latency_us_1"] > 0 and "latency_us_64" in row
        assert set(row["metrics"]) == {"accuracy", "f1_macro", "log_loss", "roc_auc"}
    markdown = (root / "q.md").read_text()
    assert f"Chosen: **{result['variant']}**" in markdown
    assert all(v in markdown for v in VARIANTS)


def test_sklearn_model_passes_through_unchanged(baseline_artifacts, tmp_path):
    source = baseline_artifacts["baseline"]

    result = _quantize(tmp_path, source, baseline_artifacts["val"], QuantizeConfig(latency_repeats=10))

    assert result["variant"] == "sklearn-skops" and result["size_ratio"] == 1.0 and result["table"] == {}
    assert "passed through unchanged" in result["reason"]
    before, after = read_model_manifest(source), read_model_manifest(tmp_path / "out")
    assert after.format == "sklearn-skops" and after.files == before.files
    assert after.metrics == before.metrics and after.input_schema == before.input_schema
    assert after.parent == {
        "path": str(source),
        "format": "sklearn-skops",
        "model_json_sha256": sha256_file(source / "model.json"),
    }
    assert json.loads((tmp_path / "q.json").read_text())["variant"] == "sklearn-skops"
    assert "no quantized variants" in (tmp_path / "q.md").read_text()


# --- mixed-type tables: the preprocessing travels with every variant ------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


def test_a_sklearn_gbdt_candidate_passes_through_with_its_preprocessing(mixed, tmp_path):
    source = mixed["gbdt"]
    result = _quantize(tmp_path, source, mixed["val"], QuantizeConfig(latency_repeats=10))

    assert result["variant"] == "sklearn-skops" and result["table"] == {}
    assert result["reason"] == "format sklearn-skops (family gbdt) has no quantized variants; passed through unchanged"
    before, after = read_model_manifest(source), read_model_manifest(tmp_path / "out")
    assert after.preprocessing == before.preprocessing is not None
    assert after.input_schema == before.input_schema and after.files == before.files
    markdown = (tmp_path / "q.md").read_text()
    assert "Format sklearn-skops (family gbdt) has no quantized variants" in markdown
    assert "| as trained | sklearn-skops | gbdt | ✔ |" in markdown
    test, _ = read_dataset(mixed["test"])
    np.testing.assert_array_equal(load_model(tmp_path / "out").score_frame(test), load_model(source).score_frame(test))


@pytest.mark.slow
def test_an_mlp_with_embeddings_exports_every_variant_serving_raw_rows(mixed, tmp_path, monkeypatch):
    """The rebuild is generic (state_dict + build_module(architecture)): an MLP whose module casts
    its code columns to int64 for nn.Embedding goes through TorchScript int8 and the ONNX export."""
    import embedding_mlp
    from mixed_artifacts import KINDS

    from components.quantize_model.core import _build_variant
    from serving.preprocess import Preprocessing
    from shipyard import metrics as task_metrics

    embedding_mlp.patch_train_core(monkeypatch)
    train, schema = read_dataset(mixed["train"])
    prep = Preprocessing.fit(train, KINDS, numeric="standard", categorical="codes")
    source = embedding_mlp.write_artifact(tmp_path / "mlp", train, prep, schema)
    test, _ = read_dataset(mixed["test"])
    expected = load_model(source).score_frame(test)  # raw rows: nulls, strings, booleans, an unseen plan

    sample = load_model(source).encode_frame(read_dataset(mixed["val"])[0]).x
    for variant in VARIANTS:
        _build_variant(variant, source, read_model_manifest(source), tmp_path / variant, sample)
        manifest = read_model_manifest(tmp_path / variant)
        assert (
            manifest.preprocessing == prep.to_dict()
            and manifest.input_schema == read_model_manifest(source).input_schema
        )
        got = load_model(tmp_path / variant).score_frame(test)
        assert got.shape == expected.shape and np.isfinite(got).all()
        if variant.startswith("fp32-"):
            np.testing.assert_allclose(got, expected, atol=FP32_ATOL)
        else:  # int8 weights: a quantization error, not another model
            assert np.abs(got - expected).max() < 0.1

    result = _quantize(tmp_path, source, mixed["val"], QuantizeConfig(latency_repeats=5))
    out = read_model_manifest(tmp_path / "out")
    assert set(result["table"]) == set(VARIANTS) and out.preprocessing == prep.to_dict()
    y = labels_of(load_model(source), test, "test")
    assert task_metrics.compute("binary", y, expected)["roc_auc"] > 0.7


def test_a_torchscript_model_without_its_state_dict_is_an_artifact_error(mixed, tmp_path):
    import torch

    from shipyard.artifacts import ModelManifest, write_model
    from shipyard.errors import ArtifactError

    source = read_model_manifest(mixed["linear"])
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(dim=-1)))
    manifest = ModelManifest("torchscript", "binary", source.input_schema[:4], source.label, (0, 1))
    write_model(tmp_path / "bare", manifest, lambda tmp: scripted.save(str(tmp / "model.pt")))

    with pytest.raises(ArtifactError, match=r"needs weights.pt and details.architecture"):
        _quantize(
            tmp_path, tmp_path / "bare", mixed["val"], QuantizeConfig(latency_repeats=5, variants=("int8-torchscript",))
        )
    assert not (tmp_path / "out").exists()
