"""The quiet-case fast paths of the drift, consistency, integrity, liveness and confidence
monitors against the general formulations they short-cut, on seeded random inputs: same
findings, same learnt state, same numbers bit for bit."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.special import chdtr, chdtrc

from perception.tracks import Tracks, TrackStatus
from safety.channels import ChannelConfig, FieldOfView
from safety.context import ChannelObservation, StepContext
from safety.findings import Finding
from safety.monitors.base import measurement_time
from safety.monitors.confidence import _finite_mean
from safety.monitors.consistency import ConsistencyConfig, ConsistencyMonitor
from safety.monitors.drift import DriftConfig, DriftMonitor, _drift_kernel, _growth_kernel
from safety.monitors.integrity import IntegrityConfig, IntegrityMonitor, _ChannelState

CH = [ChannelConfig(name="a"), ChannelConfig(name="b", kind="radar")]


def _tracks(rng: np.random.Generator, t: float, n: int) -> Tracks:
    """n tracks in and around a 60° sector, some coasting, some hiding behind others."""
    r = rng.uniform(5, 100, n)
    a = np.radians(rng.uniform(-70, 70, n))
    pos = np.column_stack([r * np.cos(a), r * np.sin(a)])
    if n > 1 and rng.random() < 0.5:  # one behind another
        pos[1] = pos[0] * rng.uniform(1.2, 2.0)
    updated = rng.random(n) < 0.85
    tsu = np.where(updated, 0.0, rng.choice([0.1, 0.3, 0.6, 0.9], n))
    status = rng.choice([int(TrackStatus.TENTATIVE), int(TrackStatus.CONFIRMED),
                         int(TrackStatus.COASTING)], n, p=[0.1, 0.7, 0.2])
    tr = rng.uniform(0.2, 3.0, n)
    P = np.broadcast_to(np.eye(4), (n, 4, 4)) * (tr / 2)[:, None, None]
    return Tracks(
        t=t, sensor="a", ids=np.arange(n, dtype=np.int64), status=status.astype(np.int64),
        x=np.hstack([pos, np.zeros((n, 2))]), P=P, position=pos,
        position_cov=P[:, :2, :2].copy(), age=np.full(n, 10, np.int64),
        hits=np.full(n, 10, np.int64), time_since_update=tsu, cov_trace=tr, updated=updated,
        nis=rng.chisquare(2, n), innovation=np.zeros((n, 2)),
        innovation_cov=np.broadcast_to(np.eye(2), (n, 2, 2)).copy(), scores=rng.random(n),
        labels=np.zeros(n, np.int64), det_index=np.full(n, -1, np.int64))


def _ctx(t: float, trs: dict[str, Tracks | None]) -> StepContext:
    return StepContext(t=t, dt=0.1, channels={
        k: ChannelObservation(name=k, role="primary", received=v is not None, detections=None,
                              tracks=v) for k, v in trs.items()})


def _key(fs: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.channel, f.message, f.value, f.threshold, f.window, f.track_ids)
            for f in fs]


class _GeneralDrift(DriftMonitor):
    """DriftMonitor with the learning step always through the general coasting test."""

    def _learn_quietly(self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks,
                       confirmed: np.ndarray) -> None:
        assert self._coasting(ctx, name, ch, tr, confirmed) == []


@pytest.mark.parametrize("seed", range(12))
def test_drift_quiet_learning_step_matches_the_general_coasting_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cfg = DriftConfig(occlusion=bool(seed % 3), miss_reference_steps=int(rng.integers(10, 200)))
    fast, general = DriftMonitor(cfg, CH), _GeneralDrift(cfg, CH)
    for i in range(120):
        step = {"a": _tracks(rng, 0.1 * i, int(rng.integers(0, 7))),
                "b": _tracks(rng, 0.1 * i, int(rng.integers(0, 4))) if i % 7 else None}
        c = _ctx(0.1 * i, step)
        assert _key(fast.observe(c)) == _key(general.observe(c))
        assert fast._miss == general._miss
        for k in general._growth:
            np.testing.assert_array_equal(fast._growth[k], general._growth[k])


@pytest.mark.parametrize("seed", range(10))
def test_drift_kernel_is_the_growth_kernel_plus_the_coasting_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hist = np.zeros((0, 5))
    for _ in range(30):
        n = int(rng.integers(0, 9))
        ids = rng.permutation(n).astype(np.int64)
        raw = rng.uniform(0.1, 5, n)
        updated, confirmed = rng.random(n) < 0.7, rng.random(n) < 0.8
        tsu = np.where(updated, 0.0, rng.choice([0.2, 0.5, np.nan, 0.9], n))
        R = np.broadcast_to(np.eye(2), (3, 2, 2)) * rng.uniform(0.1, 2)
        det_index = np.where(updated, rng.integers(-1, 4, n), -1).astype(np.int64)
        params = np.array([3.0, 2.0, 4.0, 0.45])
        both, n_bad, n_coast = _drift_kernel(hist, ids, raw, updated, confirmed, det_index, R,
                                             tsu, params)
        state, info, ref_bad = _growth_kernel(hist, ids, raw, updated, confirmed, det_index, R,
                                              3, 2.0, 4.0)
        np.testing.assert_array_equal(both[:, :5], state)
        np.testing.assert_array_equal(both[:, 5:], info)
        assert n_bad == ref_bad
        assert n_coast == int(np.count_nonzero(confirmed & (tsu > 0.45)))
        hist = both[:, :5]


@pytest.mark.parametrize("seed", range(20))
def test_consistency_quiet_decision_is_the_exact_tail_test(seed: int) -> None:
    """Sums at, just inside and just outside the quiet limits, repeated so that the proven
    spans are used: every decision equals the special functions' own."""
    rng = np.random.default_rng(seed)
    mon = ConsistencyMonitor(ConsistencyConfig(), [],
                             budget_per_hour=float(rng.choice([1e-3, 1.0, 1e3])))
    for _ in range(300):
        c = int(rng.integers(1, 4))
        level = mon.alpha / (2 * c)
        dofs = [int(k) for k in rng.choice([20, 21, 80, 400, 4000], c)]
        sums = []
        for k in dofs:
            d = float(k)
            hi = float(2 * k)  # near the upper critical value: bisect on the exact tail
            lo_x, hi_x = d, 50.0 * d + 1000
            for _ in range(60):
                hi = 0.5 * (lo_x + hi_x)
                lo_x, hi_x = (hi, hi_x) if chdtrc(d, hi) > level else (lo_x, hi)
            x = float(rng.choice([rng.chisquare(k), hi * (1 + rng.normal(0, 1e-7)),
                                  hi * rng.uniform(0.9, 1.1), d * rng.uniform(0.2, 1.0)]))
            sums.append(x)
        exact = all((chdtrc(float(k), x) if x >= k else chdtr(float(k), x)) > level
                    for x, k in zip(sums, dofs, strict=True))
        assert mon._quiet(sums, dofs) == exact


@pytest.mark.parametrize("n", [*range(0, 20), 31, 64, 200])
def test_confidence_finite_mean_is_numpys(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        s = rng.random(n) * rng.choice([1e-8, 1.0, 1e8], n)
        s[rng.random(n) < 0.1] = np.nan
        s[rng.random(n) < 0.05] = np.inf
        f = s[np.isfinite(s)]
        ref = float(f.sum()) / f.size if f.size else None
        assert _finite_mean(s) == ref
        assert _finite_mean(s[::-1]) == (float(f[::-1].sum()) / f.size if f.size else None)


def _measurement_time_general(obs: Any) -> float | None:
    """measurement_time as defined: the sensor timestamp converted, finite or None."""
    if obs is None:
        return None
    mt = obs.measurement_t if obs.measurement_t is not None else (
        obs.detections.t if obs.detections is not None else None)
    try:
        mtf = float(mt)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return mtf if math.isfinite(mtf) else None


@pytest.mark.parametrize("mt", [None, 1.5, np.float64(2.0), math.nan, math.inf, "3", "x", 4])
def test_measurement_time_fast_path_decides_like_the_general_conversion(mt: Any) -> None:
    for d_t in (None, 0.5, math.nan):
        obs = SimpleNamespace(measurement_t=mt,
                              detections=None if d_t is None else SimpleNamespace(t=d_t))
        got, want = measurement_time(obs), _measurement_time_general(obs)  # type: ignore[arg-type]
        assert got == want or (got is None and want is None), (mt, d_t)
    assert measurement_time(None) is None


class _SubArray(np.ndarray):
    """An ndarray subclass: the integrity monitor's general path, not its fast one."""


@pytest.mark.parametrize("seed", range(20))
def test_integrity_range_fast_path_matches_the_general_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ch = ChannelConfig(name="a", fov=FieldOfView(azimuth_min_deg=-40, azimuth_max_deg=40,
                                                 range_max=float(rng.uniform(30, 120))))
    mon = IntegrityMonitor(IntegrityConfig(), [ch])
    c = StepContext(t=1.0, dt=0.1, channels={})
    for _ in range(20):
        n = int(rng.integers(0, 12))
        r, a = rng.uniform(0, 200, n), np.radians(rng.uniform(-90, 90, n))
        z = np.column_stack([r * np.cos(a), r * np.sin(a)])
        z[rng.random(n) < 0.1, 1] = 1e7
        R = np.broadcast_to(np.eye(2), (n, 2, 2)) * rng.uniform(0.1, 30)
        fast = SimpleNamespace(z=z, R=R, space="point")
        slow = SimpleNamespace(z=z.view(_SubArray), R=R, space="point")
        assert (_key(mon._range(c, "a", ch, fast))  # type: ignore[arg-type]
                == _key(mon._range(c, "a", ch, slow)))  # type: ignore[arg-type]


def test_integrity_stuck_key_is_shape_and_float64_bytes() -> None:
    """Lists count as the same exactly when their shapes and float64 values are (a float32
    list equal in value to the float64 one counts as the same, as before)."""
    mon = IntegrityMonitor(IntegrityConfig(), [])
    st = _ChannelState()
    z = np.array([[1.0, 2.0], [3.0, 4.0]])
    seq = [z, z.copy(), z.astype(np.float32), z.reshape(1, 4), z.reshape(1, 4), z.T.copy(),
           np.zeros((0, 2)), z, z[:, ::-1][:, ::-1]]
    counts = []
    for q in seq:
        mon._stuck_step(SimpleNamespace(z=q), st)  # type: ignore[arg-type]
        counts.append(st.stuck)
    assert counts == [1, 2, 3, 1, 2, 1, 0, 1, 2]
