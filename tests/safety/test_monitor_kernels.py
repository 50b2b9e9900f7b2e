"""The monitors' compiled kernels against the numpy formulations they replace (kept here as the
reference), on seeded random inputs with the awkward values mixed in (NaN, inf, -0.0, ties)."""

from __future__ import annotations

import numpy as np
import pytest

from safety.monitors.calibration import _bias_kernel, weighted_bias
from safety.monitors.changepoint import Cusum
from safety.monitors.crosschannel import _link_chains
from safety.monitors.distribution import (
    DistributionConfig,
    DistributionMonitor,
    _bin_table,
    _Channel,
    _score_residuals,
    _score_samples,
)

SEEDS = range(40)


# ---------------------------------------------------------------- references (old formulations)
def ref_bin_keys(scores, labels, pos, seen, bin_m, ranged):  # type: ignore[no-untyped-def]
    sc = scores[seen]
    lab = labels[seen]
    if ranged:
        p = pos[seen]
        with np.errstate(invalid="ignore"):
            bins = (np.hypot(p[:, 0], p[:, 1]) // bin_m).astype(np.int64)
    else:
        bins = np.zeros(len(sc), np.int64)
    ok = np.isfinite(sc) & (bins >= 0)
    return lab[ok], bins[ok], sc[ok]


def ref_add_scores(sums, counts, bins_learning, bin_mean, keys, scores, n_samples):  # type: ignore[no-untyped-def]
    s, c = np.float64(sums), np.float64(counts)
    for key, sc in zip(keys, scores, strict=True):
        mu = bin_mean.get(key)
        if mu is not None:
            s += sc - mu
            c += 1.0
            continue
        learning = bins_learning.setdefault(key, [])
        learning.append(sc)
        if len(learning) >= n_samples:
            bin_mean[key] = float(np.mean(learning))
            del bins_learning[key]
    return float(s), float(c)


def ref_cusum(pos, neg, k, h, cap, x, valid):  # type: ignore[no-untyped-def]
    ok = np.isfinite(x) if valid is None else (np.asarray(valid, bool) & np.isfinite(x))
    lim = np.where(h > 0, cap * np.where(h > 0, h, 1.0), np.inf)
    xs = np.where(ok, x, 0.0)
    pos = np.where(ok, np.clip(pos + xs - k, 0.0, lim), pos)
    neg = np.where(ok, np.clip(neg - xs - k, 0.0, lim), neg)
    return pos, neg


def ref_weighted_bias(r, C):  # type: ignore[no-untyped-def]
    ok = np.all(np.isfinite(r), axis=1) & np.all(np.isfinite(C), axis=(1, 2))
    det = C[:, 0, 0] * C[:, 1, 1] - C[:, 0, 1] * C[:, 1, 0]
    ok &= (C[:, 0, 0] > 0) & (C[:, 1, 1] > 0) & (det > 0)
    if not ok.any():
        return np.full(2, np.nan), np.full((2, 2), np.nan)
    info = np.linalg.inv(C[ok])
    cov_b = np.linalg.inv(info.sum(axis=0))
    return cov_b @ np.einsum("nij,nj->i", info, r[ok]), cov_b


def ref_link(pos, count, stat, prev_pos, prev_count, old, radius, k):  # type: ignore[no-untyped-def]
    hist = np.repeat(np.where(np.isfinite(stat), stat, np.inf)[:, None], k, axis=1)
    if prev_pos.size:
        dist = np.linalg.norm(pos[:, None, :] - prev_pos[None, :, :], axis=2)
        link = np.where(dist <= radius, prev_count[None, :], 0)
        chained = 1 + np.max(link, axis=1)
        linked = np.max(link, axis=1) > 0
        src = np.argmax(link, axis=1)
        if old is not None and linked.any():
            hist[linked, 1:] = old[src[linked], :-1]
        count = np.maximum(count, chained)
    return count, hist


# ---------------------------------------------------------------- distribution
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ranged", [True, False])
def test_score_samples_match_numpy_selection(seed: int, ranged: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 30))
    scores = rng.uniform(0, 1, n)
    scores[rng.random(n) < 0.1] = np.nan
    scores[rng.random(n) < 0.05] = np.inf
    labels = rng.integers(-1, 4, n)
    pos = rng.normal(0, 40, (n, 2))
    pos[rng.random(n) < 0.1, 0] = np.nan
    pos[rng.random(n) < 0.05, 1] = 1e300
    pos[rng.random(n) < 0.05] = 0.0
    pos[rng.random(n) < 0.05] = [10.0, 0.0]  # on a bin edge
    seen = rng.random(n) < 0.7
    got = _score_samples(scores, labels, pos, seen, 10.0, ranged)
    want = ref_bin_keys(scores, labels, pos, seen, 10.0, ranged)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed", SEEDS)
def test_add_scores_matches_sequential_loop(seed: int) -> None:
    """Residual sums bit-identical to the per-score loop, bins learnt mid-step included, with
    keys inside and outside the dense table."""
    rng = np.random.default_rng(seed)
    mon = DistributionMonitor(DistributionConfig(score_bin_samples=5), [])
    st = _Channel()
    st.frozen[0] = True
    labels = [0, 1, 2, 70, -1]  # 70 and -1: outside the dense table
    known = {(a, b): float(rng.uniform(0, 1)) for a in labels for b in (0, 3, 5000)
             if rng.random() < 0.5}
    st.bin_mean = dict(known)
    st.table = _bin_table(st.bin_mean)
    st.sums[0], st.counts[0] = float(rng.normal()), float(rng.integers(0, 10))
    ref_sum, ref_count = st.sums[0], st.counts[0]
    ref_learning: dict[tuple[int, int], list[float]] = {}
    ref_known = dict(known)
    for _ in range(6):
        m = int(rng.integers(0, 12))
        lab = rng.choice(labels, m).astype(np.int64)
        bins = rng.choice([0, 3, 5000], m).astype(np.int64)
        sc = rng.uniform(0, 1, m)
        mon._add_scores(st, (lab, bins, sc))
        keys = list(zip(lab.tolist(), bins.tolist(), strict=True))
        ref_sum, ref_count = ref_add_scores(ref_sum, ref_count, ref_learning, ref_known, keys,
                                            sc.tolist(), 5)
        assert (st.sums[0], st.counts[0]) == (ref_sum, ref_count)
        assert st.bin_mean == ref_known
        assert st.bins == ref_learning
        np.testing.assert_array_equal(st.table, _bin_table(ref_known))


def test_score_residuals_stops_at_unknown_bin() -> None:
    table = np.array([[0.5, np.nan]])
    lab = np.array([0, 0, 0], np.int64)
    bins = np.array([0, 1, 0], np.int64)
    s, c, i = _score_residuals(lab, bins, np.array([0.7, 0.1, 0.2]), table, 1.0, 2.0, 0)
    assert (s, c, i) == (1.0 + (0.7 - 0.5), 3.0, 1)
    assert _score_residuals(lab, bins, np.array([0.7, 0.1, 0.2]), table, s, c, 2) == (
        s + (0.2 - 0.5), 4.0, 3)


FROZE: list[int] = []


@pytest.mark.parametrize("seed", range(8))
def test_score_reference_freeze_matches_pooled_dicts(seed: int) -> None:
    """Bin means and the block residual means from arrays equal the per-key pooled lists."""
    rng = np.random.default_rng(seed)
    cfg = DistributionConfig(reference_blocks=5, score_bin_samples=8)
    mon = DistributionMonitor(cfg, [])
    st = _Channel()
    blocks = []
    for _ in range(5):
        m = int(rng.integers(1, 15))
        blk = (rng.integers(0, 2, m), rng.integers(0, 2, m), rng.uniform(0, 1, m))
        blocks.append(blk)
        st.score_ref.append(blk)
    mon._maybe_freeze_score(st)
    pooled: dict[tuple[int, int], list[float]] = {}
    for lab, bins, sc in blocks:
        for a, b, x in zip(lab.tolist(), bins.tolist(), sc.tolist(), strict=True):
            pooled.setdefault((a, b), []).append(x)
    want = {k: float(np.mean(v)) for k, v in pooled.items() if len(v) >= 8}
    values = []
    for lab, bins, sc in blocks:
        res = [x - want[(a, b)] for a, b, x in zip(lab.tolist(), bins.tolist(), sc.tolist(),
                                                  strict=True) if (a, b) in want]
        if res:
            values.append(float(np.mean(res)))
    if len(values) < 5:
        assert not st.frozen[0] and st.bin_mean == {}
        return
    FROZE.append(seed)
    assert st.frozen[0]
    assert st.bin_mean == want
    assert st.bins == {k: v for k, v in pooled.items() if k not in want}
    assert st.centre[0] == float(np.median(values))


def test_score_reference_freeze_cases_were_exercised() -> None:
    for seed in range(8):
        if seed not in FROZE:
            test_score_reference_freeze_matches_pooled_dicts(seed)
    assert FROZE, "no seed reached a frozen score reference"


# ---------------------------------------------------------------- changepoint
@pytest.mark.parametrize("seed", SEEDS)
def test_cusum_update_matches_where_clip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    k = rng.uniform(0, 1, n)
    h = rng.choice([0.0, 2.0, 5.0, np.inf], n)
    cap = float(rng.choice([1.5, np.inf]))
    cus = Cusum(k, h, n, cap)
    pos, neg = cus.pos.copy(), cus.neg.copy()
    for _ in range(30):
        x = rng.normal(0, 3, n)
        x[rng.random(n) < 0.1] = np.nan
        x[rng.random(n) < 0.05] = -0.0
        x[rng.random(n) < 0.05] = np.inf
        valid = None if rng.random() < 0.3 else rng.random(n) < 0.8
        alarm = cus.update(x, valid)
        pos, neg = ref_cusum(pos, neg, k, h, cap, x, valid)
        np.testing.assert_array_equal(cus.pos, pos)
        np.testing.assert_array_equal(cus.neg, neg)
        assert np.array_equal(np.signbit(cus.pos), np.signbit(pos))
        np.testing.assert_array_equal(alarm, np.maximum(pos, neg) > h)


def test_cusum_update_broadcasts_a_scalar_mask() -> None:
    cus = Cusum(0.5, 5.0, 3)
    cus.update(np.array([1.0, 2.0, 3.0]), True)
    np.testing.assert_array_equal(cus.pos, [0.5, 1.5, 2.5])


# ---------------------------------------------------------------- calibration
@pytest.mark.parametrize("seed", SEEDS)
def test_weighted_bias_matches_inverse_formulation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 60))
    r = rng.normal(0, 1, (m, 2))
    A = rng.normal(0, 1, (m, 2, 2))
    C = A @ A.transpose(0, 2, 1) + 0.05 * np.eye(2)
    C[rng.random(m) < 0.1, 0, 0] = -1.0  # not positive definite
    r[rng.random(m) < 0.1, 1] = np.nan
    C[rng.random(m) < 0.05, 0, 1] = np.inf
    beta, cov = weighted_bias(r, C)
    want_b, want_c = ref_weighted_bias(r, C)
    np.testing.assert_allclose(beta, want_b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov, want_c, rtol=1e-9, atol=1e-12)


def test_bias_kernel_no_usable_rows_is_nan() -> None:
    beta, cov = _bias_kernel(np.zeros((2, 2)), np.zeros((2, 2, 2)))
    assert np.isnan(beta).all() and np.isnan(cov).all()


# ---------------------------------------------------------------- crosscheck monitor
@pytest.mark.parametrize("seed", SEEDS)
def test_link_chains_matches_distance_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 7))
    m, p = int(rng.integers(1, 6)), int(rng.integers(0, 6))
    pos = rng.uniform(0, 8, (m, 2))
    pos[rng.random(m) < 0.1] = np.nan
    prev_pos = rng.uniform(0, 8, (p, 2))
    prev_count = rng.integers(1, 4, p)  # ties on purpose
    count = rng.integers(1, 5, m)
    stat = rng.chisquare(2, m)
    stat[rng.random(m) < 0.2] = np.nan
    old = rng.chisquare(2, (p, k)) if rng.random() < 0.8 else None
    got = _link_chains(pos, count, stat, prev_pos, prev_count,
                       np.zeros((0, 1)) if old is None else old, old is not None, 3.0, k)
    want = ref_link(pos, count, stat, prev_pos, prev_count, old, 3.0, k)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
