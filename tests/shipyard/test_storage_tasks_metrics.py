"""Tests for shipyard.storage, shipyard.tasks, shipyard.metrics and shipyard.report."""

import math

import numpy as np
import pandas as pd
import pytest

from shipyard import metrics, report, storage
from shipyard.errors import ConfigError, DataValidationError, StorageError
from shipyard.tasks import MAX_CLASSES, better, infer_task

# --- storage -----------------------------------------------------------------------------------


def test_fetch_of_a_missing_local_path_names_it(tmp_path):
    missing = tmp_path / "nope" / "raw.csv"
    with pytest.raises(StorageError) as info:
        storage.fetch(str(missing))
    assert str(info.value) == f"{missing}: no such file"
    assert isinstance(info.value, OSError)


def test_fetch_of_a_local_path_returns_it(tmp_path):
    (tmp_path / "raw.csv").write_text("a\n1\n")
    assert storage.fetch(str(tmp_path / "raw.csv")) == tmp_path / "raw.csv"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("gs://bucket/a/b.csv", ("bucket", "a/b.csv")),
        ("gs://bucket/obj", ("bucket", "obj")),
        ("gs://bucket", ("bucket", "")),
        ("gs://bucket/", ("bucket", "")),
    ],
)
def test_split_gcs(uri, expected):
    assert storage.is_gcs(uri)
    assert storage.split_gcs(uri) == expected


def test_split_gcs_without_bucket():
    with pytest.raises(StorageError, match=r"'gs:///obj': expected gs://BUCKET/OBJECT"):
        storage.split_gcs("gs:///obj")


@pytest.mark.parametrize("uri", ["/data/raw.csv", "data/raw.csv", "gcs://b/o", "s3://b/o"])
def test_is_gcs_only_for_gs_scheme(uri):
    assert not storage.is_gcs(uri)


def test_upload_copies_locally_into_new_dirs(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01payload")
    dest = tmp_path / "out" / "deep" / "dest.bin"
    assert storage.upload(src, str(dest)) == str(dest)
    assert dest.read_bytes() == b"\x00\x01payload"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest.bin"]


def test_upload_overwrites(tmp_path):
    (tmp_path / "src").write_text("new")
    (tmp_path / "dest").write_text("old")
    storage.upload(tmp_path / "src", str(tmp_path / "dest"))
    assert (tmp_path / "dest").read_text() == "new"


def test_upload_of_a_missing_source_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="missing.bin"):
        storage.upload(tmp_path / "missing.bin", str(tmp_path / "dest.bin"))


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("s3://bucket/raw.csv", "s3"),
        ("https://example.com/raw.csv", "https"),
        ("file:///tmp/raw.csv", "file"),
        ("GS://bucket/raw.csv", "GS"),  # the scheme is matched as written, as is_gcs does
    ],
)
def test_fetch_and_upload_name_an_unsupported_scheme_instead_of_a_missing_file(tmp_path, uri, scheme):
    with pytest.raises(storage.UnsupportedSchemeError) as info:
        storage.fetch(uri)
    assert str(info.value) == f"{uri}: the {scheme}:// scheme is not supported; expected {storage.SUPPORTED}"
    assert "gs://" in storage.SUPPORTED and "local path" in storage.SUPPORTED
    assert isinstance(info.value, StorageError) and "no such file" not in str(info.value)
    (tmp_path / "src").write_text("x")
    with pytest.raises(storage.UnsupportedSchemeError, match=f"the {scheme}:// scheme"):
        storage.upload(tmp_path / "src", uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"], "nothing was written as a local path"


def test_delete_removes_a_local_file_and_a_missing_one_is_not_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    storage.delete(str(tmp_path / "a.txt"))
    storage.delete(str(tmp_path / "a.txt"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StorageError, match=r"s3:// scheme is not supported"):
        storage.delete("s3://bucket/a.txt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StorageError, match=rf"^{tmp_path}/dir: cannot delete"):
        storage.delete(str(tmp_path / "dir"))  # a directory, not a file


@pytest.mark.parametrize("uri", ["data/raw.csv", "/data/raw.csv", "gs://bucket/raw.csv", "sklearn:iris", "C:/raw.csv"])
def test_paths_and_gs_uris_pass_the_scheme_check(uri):
    storage.check_supported(uri)
    assert storage.scheme_of(uri) == ("gs" if uri.startswith("gs://") else None)


def test_the_scheme_check_names_what_the_caller_accepts():
    with pytest.raises(storage.UnsupportedSchemeError, match=r"s3://b/o: the s3:// scheme .*; expected a local dir"):
        storage.check_supported("s3://b/o", "a local dir")


# --- tasks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "task", "expected"),
    [
        ([0, 1, 1, 0], "auto", "binary"),
        (np.array([0, 1, 1, 0], dtype=np.uint8), "auto", "binary"),
        ([True, False, True], "auto", "binary"),
        ([0.0, 1.0, 1.0], "auto", "binary"),
        ([0.0, 1.0, math.nan], "auto", "binary"),
        (["yes", "no", "yes"], "auto", "binary"),
        (["a", "b", "c", "a"], "auto", "multiclass"),
        (pd.Series(["a", None, "b", "c"]), "auto", "multiclass"),
        ([0, 1, 2, 2], "auto", "multiclass"),
        (list(range(MAX_CLASSES)), "auto", "multiclass"),
        (list(range(MAX_CLASSES + 1)), "auto", "regression"),
        ([float(i) for i in range(MAX_CLASSES + 1)], "auto", "regression"),
        ([0.5, 1.25, 3.0], "auto", "regression"),
        ([0, 1, 0, 1], "regression", "regression"),
        ([0, 1, 2, 2], "multiclass", "multiclass"),
        ([0, 1, 0, 1], "multiclass", "multiclass"),
        (list(range(60)), "multiclass", "multiclass"),
    ],
)
def test_infer_task(y, task, expected):
    assert infer_task(y, task) == expected


@pytest.mark.parametrize("y", [[1, 1, 1], ["a"], [], [math.nan, 2.0, math.nan], [None, "a"]])
def test_infer_task_rejects_constant_label(y):
    with pytest.raises(DataValidationError, match=r"label column 'churned' has [01] distinct value\(s\)"):
        infer_task(y, column="churned")


def test_infer_task_rejects_regression_on_strings():
    with pytest.raises(DataValidationError, match=r"label column 'city' has dtype .*regression needs numbers"):
        infer_task(["a", "b"], "regression", column="city")


@pytest.mark.parametrize("task", ["classification", "", "Binary"])
def test_infer_task_rejects_unknown_task(task):
    with pytest.raises(ConfigError, match=rf"task: '{task}' is not one of auto, binary, multiclass, regression"):
        infer_task([0, 1], task)


def test_infer_task_rejects_binary_for_three_classes():
    with pytest.raises(DataValidationError, match="'label'"):
        infer_task([0, 1, 2], "binary")


@pytest.mark.parametrize(
    ("metric", "a", "b", "expected"),
    [
        ("rmse", 1.0, 2.0, True),
        ("rmse", 2.0, 1.0, False),
        ("accuracy", 0.9, 0.8, True),
        ("accuracy", 0.8, 0.8, False),
        ("log_loss", 0.1, 0.2, True),
        ("roc_auc", 0.7, 0.8, False),
    ],
)
def test_better(metric, a, b, expected):
    assert better(metric, a, b) is expected


# --- metrics -----------------------------------------------------------------------------------


def test_compute_binary_against_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    out = metrics.compute("binary", y, np.stack([1 - p1, p1], axis=1))
    assert set(out) == {"accuracy", "f1_macro", "log_loss", "roc_auc"}
    assert out["accuracy"] == pytest.approx(0.5)  # predictions 0, 1, 0, 1
    assert out["f1_macro"] == pytest.approx(0.5)  # both classes: precision = recall = 1/2
    assert out["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.4)) / 2)
    assert out["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (positive, negative) pairs ordered


def test_compute_multiclass_against_hand_computed_values():
    y = np.array([0, 1, 2, 2])
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    out = metrics.compute("multiclass", y, scores)
    assert out["accuracy"] == pytest.approx(0.75)  # predictions 0, 1, 2, 0
    assert out["f1_macro"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert out["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.8) + math.log(0.6) + math.log(0.2)) / 4)
    assert out["roc_auc"] == pytest.approx(1.0)  # every class's positives outscore its negatives


def test_compute_regression_against_hand_computed_values():
    out = metrics.compute("regression", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert out == pytest.approx({"rmse": 1.0, "mae": 0.5, "r2": 1 - 4 / 5})


@pytest.mark.parametrize(
    ("task", "y", "scores"),
    [
        ("binary", np.array([0, 0, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])),
        ("multiclass", np.array([0, 1, 1, 0]), np.full((4, 3), 1 / 3)),
    ],
)
def test_compute_omits_roc_auc_when_a_class_is_absent(task, y, scores):
    out = metrics.compute(task, y, scores)
    assert "roc_auc" not in out
    assert set(out) == {"accuracy", "f1_macro", "log_loss"}


def _two_classifiers(seed=1, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = np.clip(y * 0.6 + rng.uniform(0, 0.4, n), 0, 1)
    bad = rng.uniform(0, 1, n)
    return y, np.stack([1 - good, good], axis=1), np.stack([1 - bad, bad], axis=1)


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "log_loss"])
def test_bootstrap_delta_is_the_observed_difference_inside_its_interval(metric):
    y, cand, ref = _two_classifiers()
    delta, low, high = metrics.bootstrap_delta("binary", metric, y, cand, ref, n=200, seed=3)
    fn = metrics.metric_functions("binary")[metric]
    assert delta == pytest.approx(fn(y, cand) - fn(y, ref))
    assert low < delta < high
    assert (delta > 0) == (metric != "log_loss")  # the candidate is better on every metric


def test_bootstrap_delta_regression():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    cand, ref = y + 0.1, y + rng.normal(size=100)
    delta, low, high = metrics.bootstrap_delta("regression", "rmse", y, cand, ref, n=200)
    rmse = metrics.metric_functions("regression")["rmse"]
    assert delta == pytest.approx(rmse(y, cand) - rmse(y, ref))
    assert low <= delta <= high < 0


def test_bootstrap_delta_is_deterministic_for_a_seed():
    y, cand, ref = _two_classifiers()
    first = metrics.bootstrap_delta("binary", "accuracy", y, cand, ref, n=100, seed=7)
    assert metrics.bootstrap_delta("binary", "accuracy", y, cand, ref, n=100, seed=7) == first
    assert metrics.bootstrap_delta("binary", "accuracy", y, cand, ref, n=100, seed=8)[0] == first[0]


def test_bootstrap_delta_skips_resamples_missing_a_class_for_roc_auc():
    y = np.array([0] * 9 + [1])
    cand = np.stack([1 - y * 0.9, y * 0.9 + 0.05], axis=1)
    delta, low, high = metrics.bootstrap_delta("binary", "roc_auc", y, cand, cand[::-1], n=50, seed=0)
    assert low <= delta <= high


def test_confusion_and_roc_points():
    y = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.1, 0.9]])
    assert metrics.confusion(y, scores, 3) == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    points = metrics.roc_points(y, scores[:, 1], max_points=3)
    assert points[0] == {"fpr": 0.0, "tpr": 0.0, "threshold": 1.0}
    assert points[-1]["fpr"] == 1.0 and points[-1]["tpr"] == 1.0
    assert len(points) == 3


# --- report ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "–"),
        (True, "yes"),
        (False, "no"),
        (0.123456, "0.1235"),
        (12345.6, "1.235e+04"),
        (3, "3"),
        ("a|b\nc", "a\\|b c"),
    ],
)
def test_fmt(value, expected):
    assert report.fmt(value) == expected


def test_markdown_table():
    assert report.markdown_table(["m", "v"], [["acc", 0.5], ["ok", True]]) == (
        "| m | v |\n|---|---|\n| acc | 0.5 |\n| ok | yes |\n"
    )


def test_text_table():
    assert report.text_table(["name", "v"], [["a", 1.0], ["long", None]]) == ("name  v\n----  -\na     1\nlong  –\n")


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("binary", "roc_auc"),
        ("binary", "accuracy"),
        ("binary", "log_loss"),
        ("regression", "rmse"),
        ("regression", "mae"),
        ("regression", "r2"),
    ],
)
def test_vectorized_bootstrap_matches_the_per_resample_loop(task, metric):
    """The batched metrics give the interval the plain loop over sklearn's metrics gives."""
    rng = np.random.default_rng(3)
    n = 60
    if task == "binary":
        y = rng.integers(0, 2, n)
        a, b = rng.random(n).round(2), rng.random(n).round(2)  # rounding makes ties
        cand, ref = np.c_[1 - a, a], np.c_[1 - b, b]
    else:
        y = rng.normal(size=n)
        cand, ref = y + rng.normal(size=n) * 0.3, y + rng.normal(size=n) * 0.6
    delta, low, high = metrics.bootstrap_delta(task, metric, y, cand, ref, n=300, seed=5)
    fn = metrics.metric_functions(task)[metric]
    idx = np.random.default_rng(5).integers(0, n, (300, n))
    loop = [fn(y[i], cand[i]) - fn(y[i], ref[i]) for i in idx if metric != "roc_auc" or len(np.unique(y[i])) == 2]
    assert delta == pytest.approx(fn(y, cand) - fn(y, ref))
    assert (low, high) == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975])), abs=1e-9)
