"""The drift statistics, computed from a reference profile and a current column.

Each function reproduces the statistic Evidently 0.7.23 computes for its default tests (with
scipy), from the profile's sorted values or counts instead of the raw reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from components.drift_check.profile import ColumnProfile


def ecdf_distances(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """W1 distance and KS statistic of two sorted samples, from one merge of the two.

    A stable argsort of the concatenation merges the two sorted runs in linear time; cumulative
    counts along it are both empirical CDFs. Only the last position of each run of equal values
    is a CDF value (that is where the value's mass is complete), so the KS maximum is taken there;
    the W1 integral is unaffected, its step width being zero inside such runs.
    """
    n_r, n_c = len(ref_sorted), len(cur_sorted)
    merged = np.concatenate([ref_sorted, cur_sorted])
    order = np.argsort(merged, kind="stable")
    grid = merged[order]
    from_ref = order < n_r
    gaps = np.diff(grid)
    diff = np.cumsum(from_ref)[:-1] / n_r - np.cumsum(~from_ref)[:-1] / n_c
    w1 = float(np.sum(np.abs(diff) * gaps))
    ends = gaps > 0
    d = float(np.max(np.abs(diff[ends]))) if ends.any() else 0.0
    return w1, d


def ks_pvalue(ref_sorted: np.ndarray, cur_sorted: np.ndarray, d: float | None = None) -> float:
    """Two-sided two-sample KS p-value as scipy's ``ks_2samp`` (method ``auto``) computes it.

    Up to 10,000 values per side scipy's exact computation runs; above, its asymptotic formula
    (``kstwo.sf(d, round(n·m/(n+m)))``) on the statistic ``d`` from :func:`ecdf_distances`.
    """
    from scipy.stats import ks_2samp, kstwo

    n_r, n_c = len(ref_sorted), len(cur_sorted)
    if max(n_r, n_c) <= 10_000:
        return float(ks_2samp(ref_sorted, cur_sorted).pvalue)
    if d is None:
        d = ecdf_distances(ref_sorted, cur_sorted)[1]
    return float(np.clip(kstwo.sf(d, np.round(n_r * n_c / (n_r + n_c))), 0, 1))


def _percents(ref: ColumnProfile, cur: np.ndarray | Any) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current shares per bucket, binned as Evidently bins them."""
    if ref.kind == "numeric" and ref.counts is None:
        assert ref.values is not None
        # Only for columns with > DOMAIN_CAP distinct values (so hi > lo), and non-empty ``cur``.
        lo, hi = min(float(ref.values[0]), float(cur[0])), max(float(ref.values[-1]), float(cur[-1]))
        bins = math.ceil(math.log2(ref.n + len(cur))) + 1  # Sturges over the combined data
        edges = np.linspace(lo, hi, bins + 1)
        ref_counts = _hist_sorted(ref.values, edges) * (ref.n / len(ref.values))
        cur_counts = _hist_sorted(cur, edges)
        r, c = ref_counts / ref.n, cur_counts / len(cur)
    else:
        cur_counts_map = cur if isinstance(cur, dict) else {}
        keys = list(dict.fromkeys([*(ref.counts or {}), *cur_counts_map]))
        r = np.array([(ref.counts or {}).get(k, 0) for k in keys], dtype=np.float64) / ref.n
        total = sum(cur_counts_map.values())
        c = np.array([cur_counts_map.get(k, 0) for k in keys], dtype=np.float64) / total
    return r, c


def _hist_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram of already-sorted values (last bin closed), by binary search."""
    idx = np.searchsorted(sorted_values, edges, side="left")
    idx[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(idx).astype(np.float64)


def _fill_zeroes(p: np.ndarray) -> np.ndarray:
    nonzero = p[p != 0]
    if not len(nonzero):
        return p
    smallest = nonzero.min()
    return np.where(p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, p)


def jensenshannon(r: np.ndarray, c: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log), as scipy computes it."""
    from scipy.spatial import distance

    return float(distance.jensenshannon(r, c))


def psi(r: np.ndarray, c: np.ndarray) -> float:
    """Population stability index over zero-filled shares."""
    return float(np.sum((r - c) * np.log(r / c)))


def chisquare_pvalue(ref: ColumnProfile, cur_counts: dict[Any, int]) -> float:
    """Chi² goodness of fit of the current counts against the reference shares."""
    from scipy.stats import chisquare

    keys = list(dict.fromkeys([*(ref.counts or {}), *cur_counts]))
    m = sum(cur_counts.values())
    f_exp = np.array([(ref.counts or {}).get(k, 0) * m / ref.n for k in keys])
    f_obs = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(f_obs, f_exp).pvalue)


def z_pvalue(ref: ColumnProfile, cur_counts: dict[Any, int]) -> float:
    """Two-proportion z-test on the share of the first key (sorted) in reference vs current."""
    from scipy.stats import norm

    keys = sorted(set(ref.counts or {}) | set(cur_counts), key=lambda k: (str(type(k)), k))
    if len(keys) == 1:
        return 1.0
    n1, n2 = ref.n, sum(cur_counts.values())
    p1 = 1 - (ref.counts or {}).get(keys[0], 0) / n1
    p2 = 1 - cur_counts.get(keys[0], 0) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denom = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))  # > 0: two keys are present
    return float(2 * (1 - norm.cdf(abs((p1 - p2) / denom))))
