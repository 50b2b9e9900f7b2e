"""Second-round fast paths of the distribution and cross-channel monitors against the
formulations they replace: the per-channel compiled step against the numpy selection, the
monitor's fast path against its general path (same findings, same state), the score pooling
against ``np.unique``, the block CUSUM against ``Cusum.update``, and the chain step against
``_link_chains`` and the numpy mean test."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from perception.imagestats import ImageStats
from perception.kernels import pairwise_sum
from perception.tracks import Tracks, TrackStatus
from safety.channels import ChannelConfig, FieldOfView
from safety.context import ChannelObservation, StepContext
from safety.crosscheck import CrosscheckResult, Disagreement
from safety.monitors.base import occluded
from safety.monitors.changepoint import Cusum
from safety.monitors.crosschannel import (
    _HIST,
    _N,
    CrossChannelConfig,
    CrossChannelMonitor,
    _chain_step,
    _link_chains,
)
from safety.monitors.distribution import (
    _FROZEN,
    _SAMPLE,
    STATS,
    DistributionConfig,
    DistributionMonitor,
    _Channel,
    _channel_step,
    _pool_by_bin,
    _score_residuals,
    _score_samples,
)

SEEDS = range(30)


def _tracks(rng: np.random.Generator, n: int, t: float = 0.0, sensor: str = "a",
            space: str = "point") -> Tracks:
    pos = np.column_stack([rng.uniform(-5, 90, n), rng.uniform(-30, 30, n)])
    pos[rng.random(n) < 0.2] = pos[0] * 1.3 if n else 0.0  # same bearing, farther: hidden
    pos[rng.random(n) < 0.05, 0] = np.nan
    scores = rng.uniform(0, 1, n)
    scores[rng.random(n) < 0.1] = np.nan
    z = np.zeros
    return Tracks(
        t=t, sensor=sensor, ids=np.arange(n, dtype=np.int64),
        status=rng.choice([0, 1, 2], n).astype(np.int64), x=np.hstack([pos, z((n, 2))]),
        P=np.broadcast_to(np.eye(4), (n, 4, 4)).copy(), position=pos,
        position_cov=np.broadcast_to(np.eye(2), (n, 2, 2)).copy(), age=z(n, np.int64),
        hits=z(n, np.int64), time_since_update=z(n), cov_trace=z(n),
        updated=rng.random(n) < 0.85, nis=z(n), innovation=z((n, 2)),
        innovation_cov=z((n, 2, 2)), scores=scores,
        labels=rng.integers(0, 3, n).astype(np.int64), det_index=z(n, np.int64), space=space,
    )


# ---------------------------------------------------------------- the compiled channel step
@pytest.mark.parametrize("seed", SEEDS)
def test_channel_step_matches_numpy_selection(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tr = _tracks(rng, int(rng.integers(0, 25)))
    fovs = [FieldOfView(azimuth_min_deg=-30, azimuth_max_deg=30, range_max=80),
            FieldOfView(azimuth_min_deg=-45, azimuth_max_deg=40, range_min=2, range_max=120)]
    fovs = fovs[:int(rng.integers(0, 3))]
    margin, hw, occ_hw, bin_m = 2.0, 1.5, 0.9, 10.0
    geo = np.array([[hw, occ_hw, bin_m, margin]] + [f.sector_limits[0].tolist() for f in fovs])
    table = np.full((3, 12), np.nan)
    table[rng.random(table.shape) < 0.7] = 0.5
    s0, c0 = float(rng.normal()), 3.0
    # the general path
    seen = tr.confirmed & tr.updated
    if seen.any():
        seen &= ~occluded(tr, seen, hw, occ_hw)
    pts = tr.position[seen]
    inside = np.ones(len(pts), bool)
    for f in fovs:
        inside &= f.contains(pts, margin=margin)
    lab, bins, sc = _score_samples(tr.scores, tr.labels, tr.position, seen, bin_m, True)
    s, c, stop = _score_residuals(lab, bins, sc, table, s0, c0, 0)
    # the compiled step, writing after a few rows already held
    at = 3
    ibuf, fbuf = np.full((at + len(tr), 2), -7, np.int64), np.full(at + len(tr), -7.0)
    ok, count, m, s1, c1, stop1 = _channel_step(
        tr.confirmed, tr.updated, tr.position, tr.scores, tr.labels, geo, ibuf, fbuf, table, at,
        _SAMPLE, s0, c0)
    assert ok and count == float(np.count_nonzero(inside)) and m == sc.shape[0]
    np.testing.assert_array_equal(ibuf[at:at + m, 0], lab)
    np.testing.assert_array_equal(ibuf[at:at + m, 1], bins)
    np.testing.assert_array_equal(fbuf[at:at + m], sc)
    assert (ibuf[:at] == -7).all() and (s1, c1, stop1) == (s0, c0, m)
    *_, s2, c2, stop2 = _channel_step(
        tr.confirmed, tr.updated, tr.position, tr.scores, tr.labels, geo, ibuf, fbuf, table, 0,
        _SAMPLE | _FROZEN, s0, c0)
    assert (s2, c2, stop2) == (s, c, stop)


def test_channel_step_refuses_mismatched_arrays() -> None:
    rng = np.random.default_rng(0)
    tr = _tracks(rng, 5)
    geo = np.array([[1.5, 0.9, 10.0, 2.0]])
    buf = np.zeros((10, 2), np.int64), np.zeros(10)
    assert not _channel_step(tr.confirmed, tr.updated[:4], tr.position, tr.scores, tr.labels,
                             geo, *buf, np.zeros((0, 0)), 0, _SAMPLE, 0.0, 0.0)[0]
    assert not _channel_step(tr.confirmed, tr.updated, tr.position, tr.scores, tr.labels,
                             geo, buf[0][:3], buf[1][:3], np.zeros((0, 0)), 0, _SAMPLE, 0.0,
                             0.0)[0]


# ---------------------------------------------------------------- the monitor, both paths
def _digest(mon: DistributionMonitor) -> dict[str, str]:
    out = {}
    for name, st in mon._ch.items():
        k = st.n_block
        out[name] = repr((
            st.sums, st.counts, st.last.tolist(), st.frozen.tolist(), st.provisional.tolist(),
            st.centre.tolist(), st.sigma.tolist(), st.min_shift.tolist(), st.cusum.pos.tolist(),
            st.cusum.neg.tolist(), st.cusum.k.tolist(), st.cusum.h.tolist(), st.alarm.tolist(),
            st.env_run.tolist(), st.env_alarm.tolist(), st.alerting, sorted(st.bin_mean.items()),
            sorted(st.bins.items()), list(st.history), st.total, st.onset, st.culprit,
            st.ref_n, st.ref, [tuple(np.asarray(x).tolist() for x in b) for b in st.score_ref],
            st.ibuf[:k].tolist(), st.fbuf[:k].tolist(), st.n_sum, st.n_steps, st.start,
            st.relative, st.table.tolist()))
    return out


def _stream(seed: int, steps: int) -> list[StepContext]:
    """Three ground channels (one a shadow), an image channel with box tracks from time to time,
    a channel nobody configured turning up, dropouts, occlusions and shifts of a's scores, rate
    and brightness half-way."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(steps):
        t = 0.1 * i
        late = i > steps // 2
        n_world = int(rng.poisson(5))
        pts = np.column_stack([rng.uniform(3, 90, n_world), rng.uniform(-25, 25, n_world)])
        if n_world > 2 and rng.random() < 0.3:
            pts[1] = pts[0] * 1.5  # hidden behind the first
        chans = {}
        for name in ("a", "b", "s", "x"):
            if name == "x" and i < steps // 3:
                continue
            p_det = 0.4 if late and name == "a" else 0.95
            keep = rng.random(n_world) < p_det
            n = int(keep.sum())
            mean = 0.6 if late and name == "a" else 0.85
            sc = rng.beta(20 * mean / (1 - mean), 20, n)
            lab = (np.arange(n) % 2).astype(np.int64)
            z = np.zeros
            tr = Tracks(
                t=t, sensor=name, ids=np.arange(n, dtype=np.int64),
                status=np.full(n, int(TrackStatus.CONFIRMED), np.int64),
                x=np.hstack([pts[keep], z((n, 2))]), P=np.broadcast_to(np.eye(4), (n, 4, 4)),
                position=pts[keep], position_cov=np.broadcast_to(np.eye(2), (n, 2, 2)),
                age=z(n, np.int64), hits=z(n, np.int64), time_since_update=z(n),
                cov_trace=z(n), updated=rng.random(n) < 0.9, nis=z(n), innovation=z((n, 2)),
                innovation_cov=z((n, 2, 2)), scores=sc, labels=lab,
                det_index=z(n, np.int64),
                space="box" if name == "a" and i % 97 == 5 else "point")
            img = ImageStats(f"{name}{i}", (50.0 if late and name == "a" else 120.0)
                             + rng.normal(0, 2), 40 + rng.normal(0, 1), 300 + rng.normal(0, 9),
                             (480, 640)) if name in ("a", "b") else None
            valid = rng.random() > 0.03
            chans[name] = ChannelObservation(
                name=name, role="shadow" if name == "s" else "primary", received=valid,
                detections=None, tracks=tr if rng.random() > 0.02 else None,
                image_stats=img)
        xc = CrosscheckResult(active=("b",) if late and i % 7 == 0 else ("a", "b"))
        out.append(StepContext(t=t, dt=0.1, channels=chans, crosscheck=xc))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_matches_general_path(seed: int) -> None:
    cfg = DistributionConfig(reference_blocks=5, score_bin_samples=6, block_s=0.3)
    channels = [ChannelConfig(name="a"), ChannelConfig(name="b", kind="radar"),
                ChannelConfig(name="s", kind="radar", role="shadow")]
    fast = DistributionMonitor(cfg, channels)
    general = DistributionMonitor(cfg, channels)
    general._fast_accumulate = lambda *a: False  # type: ignore[method-assign]
    found = 0
    for c in _stream(seed, 500):
        got = [f.to_dict() for f in fast.observe(copy.copy(c))]
        want = [f.to_dict() for f in general.observe(copy.copy(c))]
        assert got == want
        found += len(got)
    assert _digest(fast) == _digest(general)
    assert found, "the stream raised no finding"
    assert all(st.frozen.all() for n, st in fast._ch.items() if n in ("b",))


def test_image_fields_of_view_take_the_general_path() -> None:
    img = FieldOfView(image_width=640, image_height=480)
    mon = DistributionMonitor(DistributionConfig(), [ChannelConfig(name="a", fov=img)])
    mon.observe(StepContext(t=0.0, dt=0.1, channels={}))
    assert mon._lay is not None and mon._lay.lanes[0].geo is None


# ---------------------------------------------------------------- score reference pooling
@pytest.mark.parametrize("seed", SEEDS)
def test_pool_by_bin_matches_unique(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    lab = rng.integers(-3, 4, n).astype(np.int64)
    bins = rng.choice([0, 1, 7, 2**40, -5], n).astype(np.int64)
    sc = rng.uniform(0, 1, n)
    keys, inv, pooled = _pool_by_bin(lab, bins, sc)
    want_keys, want_inv = np.unique(np.stack([lab, bins], 1), axis=0, return_inverse=True)
    want_inv = want_inv.reshape(-1)
    want = np.split(sc[np.argsort(want_inv, kind="stable")],
                    np.cumsum(np.bincount(want_inv, minlength=len(want_keys)))[:-1])
    np.testing.assert_array_equal(keys, want_keys)
    np.testing.assert_array_equal(inv, want_inv)
    assert len(pooled) == len(want)
    for g, w in zip(pooled, want, strict=True):
        np.testing.assert_array_equal(g, w)
        if g.size:
            assert float(np.add.reduce(g)) / g.size == float(np.mean(w))


# ---------------------------------------------------------------- block CUSUM on floats
@pytest.mark.parametrize("seed", SEEDS)
def test_cusum_block_matches_cusum_update(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = len(STATS)
    st = _Channel()
    st.cusum = Cusum(rng.uniform(0, 1, n), rng.choice([0.0, 2.0, 5.0, np.inf], n), n,
                     float(rng.choice([1.5, np.inf])))
    st.centre = rng.normal(0, 1, n)
    st.sigma = rng.choice([0.5, 1.0, 0.0, np.nan], n)
    ref = copy.deepcopy(st.cusum)
    for _ in range(40):
        mean = rng.normal(0, 4, n)
        mean[rng.random(n) < 0.15] = np.nan
        mean[rng.random(n) < 0.05] = np.inf
        frozen = rng.random(n) < 0.8
        st.frozen = frozen
        known = frozen & np.isfinite(mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(known, mean - st.centre, 0.0) / np.where(known, st.sigma, 1.0)
            want = ref.update(z, known) & frozen
            got = DistributionMonitor._cusum_block(st, mean.tolist(),
                                                   np.isfinite(mean).tolist(), frozen.tolist())
        assert got == want.tolist()
        np.testing.assert_array_equal(st.cusum.pos, ref.pos)
        np.testing.assert_array_equal(st.cusum.neg, ref.neg)


# ---------------------------------------------------------------- cross-channel chains
@pytest.mark.parametrize("k", [*range(1, 40), 127, 128, 129, 300])
def test_pairwise_sum_matches_add_reduce(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(20):
        a = rng.chisquare(2, k) * 10 ** rng.uniform(-3, 3, k)
        assert pairwise_sum(a, 0, k) == np.add.reduce(a)
        row = np.concatenate([rng.normal(size=3), a])
        assert pairwise_sum(row, 3, k) == np.add.reduce(row[3:])


@pytest.mark.parametrize("seed", SEEDS)
def test_chain_step_matches_link_chains(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 10))
    m, p = int(rng.integers(1, 6)), int(rng.integers(0, 6))
    pos = rng.uniform(0, 8, (m, 2))
    pos[rng.random(m) < 0.1] = np.nan
    prev_pos = rng.uniform(0, 8, (p, 2))
    prev_count = rng.integers(1, 9, p)
    count = rng.integers(1, 5, m)
    stat = rng.chisquare(2, m) * 20
    stat[rng.random(m) < 0.2] = np.nan
    miss = rng.random(m) < 0.3
    old = rng.chisquare(2, (p, k)) * 20
    want_n, want_h = _link_chains(pos, count, stat, prev_pos, prev_count,
                                  old if p else np.zeros((0, 1)), p > 0, 3.0, k)
    d2_min = 20.0
    want_hit = (want_n >= k) & (miss | (np.add.reduce(want_h, axis=1) / k >= d2_min))
    prev = np.column_stack([prev_pos, prev_count, old, np.zeros(p)])
    rows = np.column_stack([pos, stat, count, miss, np.zeros(m)])
    state, hits = _chain_step(rows, prev, 3.0, k, d2_min)
    np.testing.assert_array_equal(state[:, :2], pos)
    np.testing.assert_array_equal(state[:, _N], want_n)
    np.testing.assert_array_equal(state[:, _HIST:_HIST + k], want_h)
    np.testing.assert_array_equal(state[:, _HIST + k] != 0, want_hit)
    assert hits == int(want_hit.sum())


def test_crosschannel_findings_from_lists_keep_their_text() -> None:
    """A persistent miss and a persistent position disagreement, reported with the same text
    and numbers as before (the per-disagreement values now travel as lists)."""
    mon = CrossChannelMonitor(CrossChannelConfig(persist_steps=3),
                              [ChannelConfig(name="a"), ChannelConfig(name="b")])
    out = []
    for i in range(5):
        ds = [Disagreement(("a", "b"), (4, -1), float(i + 1), 3.0, np.array([20.0, 1.0]),
                           kind="miss", steps=i + 1),
              Disagreement(("a", "b"), (5, 9), 80.0, 9.2, np.array([30.0, -2.0]))]
        out = mon.observe(StepContext(t=0.1 * i, dt=0.1, channels={},
                                      crosscheck=CrosscheckResult(disagreements=ds)))
    assert [(f.kind, f.channel, f.value, f.track_ids) for f in out] == [
        ("crosscheck.disagreement", None, 80.0, (4, 5, 9)),
        ("crosscheck.miss", "b", 5.0, (4, 5, 9))]
    assert "for 5 steps in a row" in out[0].message and "80.0" in out[0].message
    assert out[1].message == ("Channel 'b' has not seen 1 object(s) that channel 'a' tracks "
                              "inside its field of view, for 5 steps in a row; they are still "
                              "output, from 'a' alone.")


@pytest.mark.parametrize("form", [list, lambda p: np.asarray(p).reshape(1, 2),
                                  lambda p: np.asarray(p, np.float32), tuple])
def test_crosschannel_rows_from_other_position_types(form: object) -> None:
    """Positions that are not (2,) float64 arrays take the general conversion: same rows."""
    ds = [Disagreement(("a", "b"), (1, -1), 2.5, 3.0, np.array([20.25, 1.5]), kind="miss",
                       steps=2),
          Disagreement(("a", "b"), (2, 7), 81.0, 9.2, np.array([30.0, -2.0]), steps=3)]
    other = [dataclasses.replace(d, position=form(d.position.tolist()))  # type: ignore
             for d in ds]
    rows, miss = CrossChannelMonitor._rows(ds)
    rows2, miss2 = CrossChannelMonitor._rows(other)
    np.testing.assert_array_equal(rows, rows2)
    np.testing.assert_array_equal(rows, [[20.25, 1.5, 2.5, 2, 1, 3.0],
                                         [30.0, -2.0, 81.0, 3, 0, 9.2]])
    assert miss == miss2 == [True, False]
