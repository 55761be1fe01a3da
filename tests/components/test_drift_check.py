"""The drift engine: Evidently's default tests on a stored reference profile.

Scores are compared with scipy's own implementations of the same statistics (Evidently computes
them with scipy too). The benchmark (benchmarks/drift.py, results in benchmarks/RESULTS.md) runs
Evidently 0.7.23 itself on 25 columns: same tests, scores and decisions.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from components.drift_check import core as drift
from shipyard.errors import ArtifactError, ConfigError, DataValidationError


def _col(values, name="x"):
    return pd.Series(values, name=name)


@pytest.mark.parametrize(
    ("kind", "n_ref", "n_values", "method"),
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 2, "z"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 1000, 2, "z"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1001, 5, "jensenshannon"),
        ("categorical", 1001, 2, "jensenshannon"),
    ],
)
def test_auto_method_follows_evidentlys_table(kind, n_ref, n_values, method):
    assert drift.auto_method(drift.ColumnProfile("x", kind, n_ref), n_values) == method


def test_numeric_scores_match_scipy():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 2, 3000), rng.normal(0.4, 2, 2000)
    result = drift.check_column(drift.profile_column(_col(ref)), _col(cur))
    assert result.method == "wasserstein" and result.drifted
    assert result.score == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-12)
    assert result.scores["ks"] == pytest.approx(stats.ks_2samp(ref, cur).pvalue, rel=1e-9)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r, c = np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    assert result.scores["jensenshannon"] == pytest.approx(distance.jensenshannon(r, c), rel=1e-9)


def test_small_reference_uses_ks():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=300), rng.normal(size=200)
    result = drift.check_column(drift.profile_column(_col(ref)), _col(cur))
    assert (result.method, result.threshold) == ("ks", 0.05)
    assert result.score == pytest.approx(stats.ks_2samp(ref, cur).pvalue) and not result.drifted


def test_categorical_chisquare_and_jensenshannon_match_scipy():
    rng = np.random.default_rng(2)
    ref = rng.choice(list("abcd"), 800, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(list("abcde"), 500, p=[0.3, 0.3, 0.2, 0.1, 0.1])  # 'e' is new
    result = drift.check_column(drift.profile_column(_col(ref)), _col(cur))
    keys = list("abcde")
    ref_counts = np.array([(ref == k).sum() for k in keys], dtype=float)
    cur_counts = np.array([(cur == k).sum() for k in keys], dtype=float)
    with np.errstate(divide="ignore"):
        expected_p = stats.chisquare(cur_counts, ref_counts * len(cur) / len(ref)).pvalue
    assert result.method == "chisquare" and result.score == pytest.approx(expected_p) and result.drifted
    js = distance.jensenshannon(ref_counts / len(ref), cur_counts / len(cur))
    assert result.scores["jensenshannon"] == pytest.approx(js)


def test_binary_z_test_matches_the_two_proportion_formula():
    ref = np.array(["y"] * 300 + ["n"] * 300)
    cur = np.array(["y"] * 260 + ["n"] * 340)
    result = drift.check_column(drift.profile_column(_col(ref)), _col(cur))
    p1, p2 = 0.5, 340 / 600  # share of the second key ('y' sorts after 'n'), as Evidently codes it
    pooled = (p1 * 600 + p2 * 600) / 1200
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (2 / 600))
    assert result.method == "z" and result.score == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))))


def test_psi_is_zero_for_identical_shares_and_grows_with_shift():
    ref = _col(np.repeat(list("abc"), [500, 300, 200]))
    same = drift.check_column(drift.profile_column(ref), ref)
    shifted = drift.check_column(drift.profile_column(ref), _col(np.repeat(list("abc"), [200, 300, 500])))
    assert same.scores["psi"] == pytest.approx(0.0) and shifted.scores["psi"] > 0.5


def test_per_column_method_and_threshold(tmp_path):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    cur = pd.DataFrame({"a": rng.normal(0.05, 1, 1500), "b": rng.normal(size=1500)})
    config = drift.DriftConfig.from_dict({"per_column": {"a": {"method": "ks", "threshold": 0.5}}})
    result = drift.check(drift.build_profile(ref, ["a", "b"]), cur, config)
    a = next(c for c in result["columns"] if c["column"] == "a")
    assert (a["method"], a["threshold"]) == ("ks", 0.5)


def test_dataset_drift_needs_half_the_columns():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({f"c{i}": rng.normal(size=2000) for i in range(4)})
    cur = ref.sample(1500, random_state=0).reset_index(drop=True)
    cur["c0"] += 1.0
    profile = drift.build_profile(ref, list(ref.columns))
    one = drift.check(profile, cur, drift.DriftConfig())
    assert one["drifted_columns"] == ["c0"] and one["drift_share"] == 0.25 and not one["dataset_drift"]
    cur["c1"] += 1.0
    two = drift.check(profile, cur, drift.DriftConfig())
    assert two["drift_share"] == 0.5 and two["dataset_drift"]


@pytest.mark.slow
def test_random_halves_rarely_drift():
    """Two random halves of the same data are flagged in at most 5% of 100 seeded splits."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    columns = list(frame.columns)
    flagged = 0
    for seed in range(100):
        order = np.random.default_rng(seed).permutation(len(frame))
        half = len(frame) // 2
        ref, cur = frame.iloc[order[:half]], frame.iloc[order[half:]]
        flagged += drift.check(drift.build_profile(ref, columns), cur, drift.DriftConfig())["dataset_drift"]
    assert flagged <= 5


def test_profile_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "k": rng.choice(list("pq"), 3000), "f": rng.integers(0, 3, 3000)})
    profile = drift.build_profile(ref, ["x", "k", "f"])
    drift.save_profile(profile, tmp_path / "profile")
    loaded = drift.load_profile(tmp_path / "profile")
    assert loaded.rows == 3000 and set(loaded.columns) == {"x", "k", "f"}
    np.testing.assert_array_equal(loaded.columns["x"].values, np.sort(ref["x"].to_numpy()))
    assert loaded.columns["k"].counts == profile.columns["k"].counts
    assert loaded.columns["f"].counts == {0: (ref.f == 0).sum(), 1: (ref.f == 1).sum(), 2: (ref.f == 2).sum()}
    cur = ref.sample(2000, random_state=1)
    as_text = [json.dumps(drift.check(p, cur, drift.DriftConfig()), sort_keys=True) for p in (loaded, profile)]
    assert as_text[0] == as_text[1]  # (JSON: NaN scores compare equal there)


def test_quantile_profile_approximates_the_exact_one():
    rng = np.random.default_rng(6)
    ref, cur = _col(rng.lognormal(size=50_000)), _col(rng.lognormal(0.1, 1, 20_000))
    exact = drift.check_column(drift.profile_column(ref, max_sorted=100_000), cur)
    approx = drift.check_column(drift.profile_column(ref, max_sorted=2000), cur)
    assert approx.score == pytest.approx(exact.score, rel=0.01) and approx.drifted == exact.drifted
    assert "ks" not in approx.scores and "ks" in exact.scores, "no KS p-value from quantiles"


def test_bad_input_is_named():
    ref = drift.profile_column(_col([1.0, 2.0, 3.0], "age"))
    with pytest.raises(DataValidationError, match="'age': reference is float, current is text"):
        drift.check_column(ref, _col(["a", "b"], "age"))
    with pytest.raises(DataValidationError, match="'age': no finite non-null values"):
        drift.check_column(ref, _col([np.nan, np.nan], "age"))
    with pytest.raises(DataValidationError, match="'age': no finite non-null values"):
        drift.check_column(ref, _col([np.inf, -np.inf], "age"))  # ±Inf count as missing, as in Evidently
    profile = drift.build_profile(pd.DataFrame({"age": [1.0, 2.0]}), ["age"])
    with pytest.raises(DataValidationError, match=r"current data lacks column\(s\) \['age'\]"):
        drift.check(profile, pd.DataFrame({"other": [1.0]}), drift.DriftConfig())
    with pytest.raises(DataValidationError, match="method 'ks' does not apply"):
        drift.check_column(drift.profile_column(_col(list("ab"))), _col(list("ab")), method="ks")


def test_config_and_profile_errors(tmp_path):
    with pytest.raises(ConfigError, match="per_column.a: method 'kss'"):
        drift.DriftConfig.from_dict({"per_column": {"a": {"method": "kss"}}})
    with pytest.raises(ConfigError, match="drift_share"):
        drift.DriftConfig.from_dict({"drift_share": 0})
    with pytest.raises(ArtifactError, match="reference profile"):
        drift.load_profile(tmp_path)


@pytest.mark.parametrize("n", [300, 20_000])
def test_merged_ecdf_matches_scipy_with_ties(n):
    rng = np.random.default_rng(7)
    ref = np.sort(rng.integers(0, 50, n).astype(float))  # heavy ties
    cur = np.sort(rng.integers(2, 52, n // 2 + 7).astype(float))
    w1, d = drift.ecdf_distances(ref, cur)
    assert w1 == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-12)
    expected = stats.ks_2samp(ref, cur)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert drift.ks_pvalue(ref, cur, d) == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_infinities_are_dropped_like_nulls():
    rng = np.random.default_rng(8)
    ref = rng.normal(size=3000)
    with_inf = np.concatenate([ref[:2000], [np.inf, -np.inf]])
    a = drift.check_column(drift.profile_column(_col(np.append(ref, np.inf))), _col(with_inf))
    b = drift.check_column(drift.profile_column(_col(ref)), _col(ref[:2000]))
    assert (a.score, a.current_rows) == (b.score, 2000)


def test_small_integer_columns_are_categorical_as_in_evidently():
    rng = np.random.default_rng(9)
    ref, cur = rng.integers(0, 8, 500), rng.integers(0, 8, 500)
    cur[:40] = 7  # more sevens
    result = drift.check_column(drift.profile_column(_col(ref)), _col(cur))
    assert (result.kind, result.method) == ("categorical", "chisquare")
    floats = drift.check_column(drift.profile_column(_col(ref.astype(float))), _col(cur.astype(float)))
    assert floats.method == "ks"  # a float column with the same values stays numeric


def test_a_changed_type_is_named_both_ways():
    with pytest.raises(DataValidationError, match="reference is bool, current is int"):
        drift.check_column(drift.profile_column(_col([True, False] * 10)), _col([1, 0] * 10))
    with pytest.raises(DataValidationError, match="reference is int, current is bool"):
        drift.check_column(drift.profile_column(_col([1, 0] * 10)), _col([True, False] * 10))


def test_per_column_typo_and_malformed_profile(tmp_path):
    profile = drift.build_profile(pd.DataFrame({"a": np.arange(50.0)}), ["a"])
    with pytest.raises(ConfigError, match=r"per_column names column\(s\) \['aa'\]"):
        drift.check(
            profile, pd.DataFrame({"a": np.arange(50.0)}), drift.DriftConfig(per_column={"aa": {"method": "ks"}})
        )
    drift.save_profile(profile, tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "profile.json").read_text())
    del meta["columns"][0]["std"]
    (tmp_path / "p" / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="malformed drift profile"):
        drift.load_profile(tmp_path / "p")


def test_results_are_strict_json():
    rng = np.random.default_rng(10)
    frame = pd.DataFrame({"x": rng.normal(size=3000), "k": rng.choice(list("abc"), 3000)})
    result = drift.check(drift.build_profile(frame, ["x", "k"], max_sorted=1000), frame, drift.DriftConfig())
    json.dumps(result, allow_nan=False)


def test_all_null_columns_are_skipped_not_counted():
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"x": rng.normal(size=500), "empty": np.nan})
    result = drift.check(drift.build_profile(frame, ["x", "empty"]), frame, drift.DriftConfig())
    assert [c["column"] for c in result["columns"]] == ["x"]
    assert result["skipped_columns"] == [{"column": "empty", "reason": "no finite values (0 in the reference)"}]


@pytest.mark.parametrize(
    "kind", ["normal", "lognormal", "cauchy", "integers", "heavy_atom", "sorted", "constant", "far_outliers", "spikes"]
)
def test_sketched_quantiles_match_the_sorted_ones(kind):
    """Long columns are profiled from a histogram, not a sort: within ~1e-4 std of the exact quantiles."""
    from components.drift_check.profile import sketch_quantiles

    rng = np.random.default_rng(12)
    n, k = 300_000, 20_000
    x = {
        "normal": rng.normal(3, 2, n),
        "lognormal": rng.lognormal(0, 1.5, n),
        "cauchy": rng.standard_cauchy(n),
        "integers": rng.integers(0, 1000, n).astype(float),
        "heavy_atom": np.where(rng.random(n) < 0.3, 5.0, rng.normal(5, 1, n)),
        "sorted": np.sort(rng.normal(size=n)),
        "constant": np.full(n, 2.0),
        "far_outliers": np.append(rng.normal(size=n - 5), [1e18] * 5),  # (x - lo) * scale overflows int64
        "spikes": np.where(np.arange(n) < 20, 1e6, 1 + rng.random(n) * 1e-9),
    }[kind]
    ordered = np.sort(x)
    exact = np.interp((np.arange(k) + 0.5) / k * (n - 1), np.arange(n), ordered)
    exact[0], exact[-1] = ordered[0], ordered[-1]
    got = sketch_quantiles(x, k)
    assert np.all(np.diff(got) >= 0) and got[0] == ordered[0] and got[-1] == ordered[-1]
    inner = np.abs(exact) < 1e5  # the outliers themselves are exact tails; compare the rest at their scale
    spread = x[np.abs(x) < 1e5].std() or 1.0
    assert np.max(np.abs(got - exact)[inner]) <= 5e-4 * spread
    np.testing.assert_array_equal(got[~inner], exact[~inner])
