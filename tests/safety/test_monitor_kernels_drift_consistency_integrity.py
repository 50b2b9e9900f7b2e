"""The compiled kernels of the drift, consistency and integrity monitors against the numpy
formulations they replace (kept here as the reference), on seeded random inputs including
NaN, negative and absurd values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perception.kernels import pairwise_sum
from perception.tracks import Tracks, TrackStatus
from safety.channels import ChannelConfig, FieldOfView
from safety.context import ChannelObservation, StepContext
from safety.monitors.consistency import (
    ConsistencyConfig,
    ConsistencyMonitor,
    _nis_total,
    _tails,
    holm_reject,
)
from safety.monitors.drift import _NO_R, _growth_kernel
from safety.monitors.integrity import _count_far_ground, _inside_ground

# ----------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("n", [*range(0, 140), 200, 255, 256, 257, 1000, 4099])
def test_pairwise_sum_is_bit_identical_to_numpy_sum(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(5):
        a = rng.exponential(2.0, n) * rng.choice([1e-6, 1.0, 1e6], n)
        assert pairwise_sum(a, 0, n) == a.sum()


def _nis_total_ref(nis: np.ndarray, updated: np.ndarray, confirmed: np.ndarray,
                   confirmed_only: bool) -> tuple[float, int]:
    sel = updated & np.isfinite(nis) & (nis >= 0)
    if confirmed_only:
        sel &= confirmed
    return float(nis[sel].sum()), int(np.count_nonzero(sel))


@pytest.mark.parametrize("seed", range(40))
def test_nis_total_matches_the_masked_numpy_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 150))
    nis = rng.chisquare(2, n)
    nis[rng.random(n) < 0.1] = np.nan
    nis[rng.random(n) < 0.05] = np.inf
    nis[rng.random(n) < 0.05] = -1.0
    updated = rng.random(n) < 0.8
    confirmed = rng.random(n) < 0.7
    for only in (True, False):
        assert _nis_total(nis, updated, confirmed, only) == _nis_total_ref(
            nis, updated, confirmed, only)


# ----------------------------------------------------------------------------- integrity


def _far_ground_ref(z: np.ndarray, R: np.ndarray | None, fov: FieldOfView, max_abs: float,
                    margin: float, sigmas: float) -> int:
    pos = z[:, :2]
    absurd = ~np.all(np.abs(pos) <= max_abs, axis=1)
    sd = (np.sqrt(np.clip(R[:, 0, 0] + R[:, 1, 1], 0.0, None)) if R is not None
          else np.zeros(len(pos)))
    inside = _inside_ground(fov, pos, margin + sigmas * sd)
    return int(np.count_nonzero(absurd | ~inside))


@pytest.mark.parametrize("seed", range(40))
def test_count_far_ground_matches_the_numpy_field_of_view_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    fov = FieldOfView(azimuth_min_deg=float(rng.uniform(-90, -10)),
                      azimuth_max_deg=float(rng.uniform(10, 90)),
                      range_min=float(rng.uniform(0, 2)), range_max=float(rng.uniform(30, 150)))
    r = rng.uniform(0, 250, n)
    a = np.radians(rng.uniform(-180, 180, n))
    z = np.column_stack([r * np.cos(a), r * np.sin(a), rng.normal(0, 1, n)])
    z[rng.random(n) < 0.05, 0] = np.nan
    z[rng.random(n) < 0.05, 1] = 1e7
    z[rng.random(n) < 0.03] = 0.0
    L = rng.normal(0, 2, (n, 3, 3))
    R = L @ np.transpose(L, (0, 2, 1))
    R[rng.random(n) < 0.05, 0, 0] = -50.0  # negative trace: no widening
    R[rng.random(n) < 0.05, 1, 1] = np.nan
    for max_abs, margin, sigmas in ((1e5, 10.0, 5.0), (100.0, 0.0, 0.0), (1e5, 2.5, 1.0)):
        args = (max_abs, margin, sigmas, fov.range_min, fov.range_max, fov.azimuth_min_deg,
                fov.azimuth_max_deg)
        assert _count_far_ground(z, R, *args) == _far_ground_ref(z, R, fov, max_abs, margin,
                                                                  sigmas)
        assert _count_far_ground(z, np.zeros((0, 2, 2)), *args) == _far_ground_ref(
            z, None, fov, max_abs, margin, sigmas)


# ----------------------------------------------------------------------------- drift


class _GrowthRef:
    """The numpy formulation of DriftMonitor's covariance-growth bookkeeping."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.trace = np.zeros(0)
        self.run = np.zeros(0, np.int64)
        self.start = np.zeros(0)
        self.scale = np.zeros(0)

    def step(self, ids: np.ndarray, raw: np.ndarray, updated: np.ndarray,
             confirmed: np.ndarray, det_index: np.ndarray, R: np.ndarray | None,
             growth_steps: int, growth_factor: float, limit: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = ids.size
        scale = np.full(n, np.nan)
        if R is not None and len(R):
            ok = (det_index >= 0) & (det_index < len(R)) & updated
            if ok.any():
                r = R[det_index[ok], 0, 0] + R[det_index[ok], 1, 1]
                scale[ok] = np.where(np.isfinite(r) & (r > 0), r, np.nan)
        g = self
        pos = np.searchsorted(g.ids, ids)
        pos_c = np.minimum(pos, max(g.ids.size - 1, 0))
        found = (pos < g.ids.size) & (g.ids[pos_c] == ids) if g.ids.size else np.zeros(n, bool)
        prev_scale = np.where(found, g.scale[pos_c] if g.ids.size else 1.0, 1.0)
        scale = np.where(np.isfinite(scale), scale, prev_scale)
        trace = raw / scale
        prev_trace = np.where(found, g.trace[pos_c] if g.ids.size else 0.0, np.nan)
        prev_run = np.where(found, g.run[pos_c] if g.ids.size else 0, 0)
        prev_start = np.where(found, g.start[pos_c] if g.ids.size else 0.0, np.nan)
        grow = found & updated & (trace > prev_trace)
        run = np.where(grow, prev_run + 1, 0)
        start = np.where(grow & (prev_run > 0), prev_start, np.where(grow, prev_trace, trace))
        order = np.argsort(ids, kind="stable")
        self.ids, self.trace, self.run = ids[order], trace[order], run[order]
        self.start, self.scale = start[order], scale[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(start > 0, trace / start, np.inf)
        growing = confirmed & (run >= growth_steps) & (ratio >= growth_factor)
        big = confirmed & ~(raw <= limit)
        return big, growing, ratio


@pytest.mark.parametrize("seed", range(25))
def test_growth_kernel_matches_the_numpy_bookkeeping(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = _GrowthRef()
    hist = np.zeros((0, 5))
    live = list(range(int(rng.integers(0, 8))))
    next_id = len(live)
    trace = {i: float(rng.uniform(0.5, 5)) for i in live}
    for _ in range(80):
        live = [i for i in live if rng.random() > 0.05]  # deaths
        for _ in range(int(rng.poisson(0.3))):  # births
            live.append(next_id)
            trace[next_id] = float(rng.uniform(0.5, 5))
            next_id += 1
        ids = np.array(live, dtype=np.int64)
        if rng.random() < 0.2:
            ids = rng.permutation(ids)  # out of id order now and then
        n = ids.size
        for i in ids:
            trace[int(i)] *= float(rng.choice([0.8, 1.0, 1.3, 1.6]))
        raw = np.array([trace[int(i)] for i in ids])
        raw[rng.random(n) < 0.03] = np.nan
        updated = rng.random(n) < 0.7
        confirmed = rng.random(n) < 0.8
        d = int(rng.integers(0, 6))
        det_index = np.where(updated, rng.integers(-1, d + 2, n), -1).astype(np.int64)
        L = rng.normal(0, 1, (d, 2, 2))
        R = L @ np.transpose(L, (0, 2, 1)) * rng.uniform(0.1, 3.0)
        if d:
            R[rng.random(d) < 0.1, 0, 0] = np.nan
            R[rng.random(d) < 0.1, 1, 1] = -10.0
        use_r = rng.random() < 0.8
        args = (5, 2.0, 40.0)
        big, growing, ratio = ref.step(ids, raw, updated, confirmed, det_index,
                                       R if use_r else None, *args)
        hist, info, n_bad = _growth_kernel(hist, ids, raw, updated, confirmed, det_index,
                                           R if use_r and d else _NO_R, *args)
        assert np.array_equal(hist[:, 0], ref.ids)
        np.testing.assert_array_equal(hist[:, 1], ref.trace)
        np.testing.assert_array_equal(hist[:, 2], ref.run)
        np.testing.assert_array_equal(hist[:, 3], ref.start)
        np.testing.assert_array_equal(hist[:, 4], ref.scale)
        flag = info[:, 0].astype(np.int64)
        assert np.array_equal((flag & 1) != 0, big)
        assert np.array_equal((flag & 2) != 0, growing)
        assert n_bad == int(np.count_nonzero(big | growing))
        np.testing.assert_array_equal(info[:, 1], ratio)


@pytest.mark.parametrize("seed", range(30))
def test_quiet_step_is_exactly_a_step_without_rejections(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        c = int(rng.integers(1, 5))
        dofs = [int(k) for k in rng.integers(20, 5000, c)]
        sums = [float(rng.chisquare(k) * rng.choice([0.5, 0.8, 1.0, 1.2, 2.0])) for k in dofs]
        mon = ConsistencyMonitor(ConsistencyConfig(), [],
                                 budget_per_hour=float(rng.choice([1e-3, 1.0, 1e3, 3e4])))
        p = _tails(np.asarray(sums), np.asarray(dofs, dtype=np.float64))
        rej, _ = holm_reject(p, mon.alpha)
        if mon.alpha / (2 * c) < 0.25:
            assert mon._quiet(sums, dofs) == (not rej.any())
        else:
            assert not mon._quiet(sums, dofs)


def test_consistency_converts_arrays_the_kernel_does_not_take() -> None:
    def step(dtype: type) -> float:
        mon = ConsistencyMonitor(ConsistencyConfig(min_dof=2), [ChannelConfig(name="a")])
        tr = Tracks.empty(0.0, "a")
        n = 3
        tr = dataclasses.replace(
            tr, ids=np.arange(n), status=np.full(n, int(TrackStatus.CONFIRMED)),
            updated=np.ones(n, bool), nis=np.array([1.0, 2.0, 3.5], dtype=dtype),
            innovation=np.zeros((n, 2)), x=np.zeros((n, 4)))
        o = ChannelObservation(name="a", role="primary", received=True, detections=None,
                               tracks=tr)
        mon.observe(StepContext(t=0.0, dt=0.0, channels={"a": o}))
        return sum(mon._windows["a"].nis)

    assert step(np.float32) == step(np.float64) == 6.5
