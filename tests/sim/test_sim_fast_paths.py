"""The simulator's leaner per-step paths give what the formulations they replace give."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from perception.metrics import euclidean_distance, evaluate, evaluate_points
from sim.metrics import FrameMatches, match_frames
from sim.results import PointSets, SeriesBuilder
from sim.sensors import CameraConfig, CameraSensor, RadarConfig, RadarSensor
from sim.world import ActorConfig, EgoConfig, Truth, World, WorldConfig


# ----------------------------------------------------------------------------- match_frames
def _match_frames_numpy(truth: np.ndarray, hyp: PointSets, gate: float) -> FrameMatches:
    """The vectorised numpy formulation match_frames replaced."""
    T, A = truth.shape[0], truth.shape[1]
    row = np.full((T, A), -1, np.int64)
    dist = np.full((T, A), np.nan)
    counts = np.diff(hyp.offsets)
    if A == 0 or T == 0 or counts.size == 0 or counts.max(initial=0) == 0:
        return FrameMatches(row, dist)
    omax = int(counts.max())
    step = hyp.step_index()
    rank = np.arange(step.size) - hyp.offsets[step]
    padded = np.full((T, omax, 2), np.nan)
    padded[step, rank] = hyp.pos
    d = np.sqrt(((truth[:, :, None, :] - padded[:, None, :, :]) ** 2).sum(-1))
    d = np.where(np.isnan(d), np.inf, d)
    nn = np.argmin(d, axis=2)
    dn = np.take_along_axis(d, nn[:, :, None], axis=2)[:, :, 0]
    ok = dn <= gate
    key = np.where(ok, nn, -1 - np.arange(A)[None, :])
    srt = np.sort(key, axis=1)
    conflict = np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0), axis=1)
    local = np.where(ok, nn, -1)
    for i in np.flatnonzero(conflict):
        c = d[i]
        feasible = c <= gate
        big = gate * (A + omax + 1) * 4.0 + 1.0
        r, k = linear_sum_assignment(np.where(feasible, c, big))
        keep = feasible[r, k]
        local[i] = -1
        local[i, r[keep]] = k[keep]
    m = local >= 0
    ti = np.broadcast_to(np.arange(T)[:, None], (T, A))
    row[m] = hyp.offsets[ti[m]] + local[m]
    dist[m] = d[ti[m], np.arange(A)[None, :].repeat(T, 0)[m], local[m]]
    return FrameMatches(row, dist)


def _random_run(rng: np.random.Generator, T: int, A: int) -> tuple[np.ndarray, PointSets]:
    truth = rng.uniform(-10, 10, (T, A, 2))
    truth[rng.random((T, A)) < 0.2] = np.nan  # absent actors
    counts = rng.integers(0, 5, T)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    k = int(offsets[-1])
    # hypotheses near the actors (so several actors may claim one point), plus clutter
    src = rng.integers(0, max(A, 1), k)
    steps = np.repeat(np.arange(T), counts)
    pos = rng.uniform(-10, 10, (k, 2))
    if A:
        near = np.nan_to_num(truth[steps, src], nan=0.0) + rng.normal(0, 1.0, (k, 2))
        pick = rng.random(k) < 0.7
        pos[pick] = near[pick]
    ids = rng.integers(0, 8, k).astype(np.int64)
    return truth, PointSets(offsets, ids, pos, np.ones(k, np.int64))


@pytest.mark.parametrize("seed", range(30))
def test_match_frames_equals_the_numpy_formulation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth, hyp = _random_run(rng, int(rng.integers(0, 40)), int(rng.integers(0, 5)))
    gate = float(rng.uniform(0.5, 6.0))
    got, want = match_frames(truth, hyp, gate), _match_frames_numpy(truth, hyp, gate)
    np.testing.assert_array_equal(got.row, want.row)
    np.testing.assert_array_equal(got.dist, want.dist)


# ----------------------------------------------------------------------------- MOT scores
@pytest.mark.parametrize("seed", range(30))
def test_evaluate_points_equals_evaluate(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    T, A = int(rng.integers(0, 60)), int(rng.integers(0, 5))
    truth, hyp = _random_run(rng, T, A)
    gate = float(rng.uniform(0.5, 6.0))
    present = ~np.isnan(truth[:, :, 0])
    aid = np.arange(A, dtype=np.int64)
    gt = {i: (aid[present[i]], truth[i, present[i]]) for i in range(T)}
    hy = {i: (hyp.ids[hyp.at(i)], hyp.pos[hyp.at(i)]) for i in range(T)}
    want = evaluate(gt, hy, lambda a, b: euclidean_distance(a, b, max_dist=gate))
    offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int64)
    ids = np.broadcast_to(aid, present.shape)[present]
    got = evaluate_points(ids, truth[present], offsets, hyp.ids, hyp.pos, hyp.offsets, gate)
    a, b = got.as_dict(), want.as_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])), k


@pytest.mark.parametrize("seed", range(6))
def test_evaluate_points_many_ids_path_equals_the_compiled_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import perception.metrics as pm

    rng = np.random.default_rng(200 + seed)
    truth, hyp = _random_run(rng, 50, 3)
    present = ~np.isnan(truth[:, :, 0])
    offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int64)
    ids = np.broadcast_to(np.arange(3, dtype=np.int64), present.shape)[present]
    args = (ids, truth[present], offsets, hyp.ids, hyp.pos, hyp.offsets, 2.5)
    compiled_path = evaluate_points(*args)
    monkeypatch.setattr(pm, "_DENSE_PAIRS_MAX", 0)
    python_path = evaluate_points(*args)
    assert compiled_path.as_dict().keys() == python_path.as_dict().keys()
    for k, v in compiled_path.as_dict().items():
        w = python_path.as_dict()[k]
        assert v == w or (np.isnan(v) and np.isnan(w)), k


def test_evaluate_points_rejects_mismatched_offsets() -> None:
    with pytest.raises(ValueError):
        evaluate_points(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(2, np.int64),
                        np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(3, np.int64), 1.0)


# ----------------------------------------------------------------------------- recording
@pytest.mark.parametrize("seed", range(10))
def test_add_run_step_stores_what_add_step_stores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chans = ["camera", "radar"]
    a = SeriesBuilder(["1", "2"], chans, spaces={"radar": "point", "camera": "point"})
    b = SeriesBuilder(["1", "2"], chans, spaces={"radar": "point", "camera": "point"})
    for i in range(int(rng.integers(0, 30))):
        k = int(rng.integers(0, 4))
        ids = rng.integers(0, 9, k).astype(np.int64)
        pos = rng.normal(size=(k, 2))
        flags = rng.integers(0, 8, k).astype(np.int64)
        truth = rng.normal(size=(2, 2))
        tracks_a, tracks_b = {}, {}
        for c in chans:
            if rng.random() < 0.8:
                m = int(rng.integers(0, 4))
                t_ids = rng.integers(0, 9, m).astype(np.int64)
                t_pos = rng.normal(size=(m, 4))[:, :2]  # a view, as a tracker hands it
                conf = rng.random(m) < 0.5
                tracks_a[c] = (t_ids, t_pos, conf)
                tracks_b[c] = (t_ids, t_pos, conf.astype(np.int64))
        stage = None if rng.random() < 0.7 else "warning"
        state = ["NOMINAL", "DEGRADED"][int(rng.integers(0, 2))]
        # mix the two kinds of position the runner may hand over
        rows = [(int(ids[j]), pos[j].tolist() if j % 2 else pos[j], int(flags[j]))
                for j in range(k)]
        if rng.random() < 0.2:  # an occasional ready-made array step in between
            a.add_step(i * 0.1, state, truth, (ids, pos, flags), stage=stage, ego_speed=3.0,
                       active_faults=1, overran=False, tracks=tracks_b)
        else:
            a.add_run_step(i * 0.1, state, truth, rows, stage, 3.0, 1, False, tracks_a)
        b.add_step(i * 0.1, state, truth, (ids, pos, flags), stage=stage, ego_speed=3.0,
                   active_faults=1, overran=False, tracks=tracks_b)
    sa, sb = a.build(), b.build()
    for f in ("t", "state", "takeover_stage", "ego_speed", "active_faults", "overran",
              "truth_pos"):
        x, y = getattr(sa, f), getattr(sb, f)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    for pa, pb in [(sa.objects, sb.objects)] + [(sa.tracks[c], sb.tracks[c]) for c in chans]:
        for f in ("offsets", "ids", "pos", "flags"):
            x, y = getattr(pa, f), getattr(pb, f)
            assert x.dtype == y.dtype and x.shape == y.shape, f
            np.testing.assert_array_equal(x, y)
    assert sa.stage_names == sb.stage_names


# ----------------------------------------------------------------------------- world, sensors
def _world() -> World:
    return World(WorldConfig(
        ego=EgoConfig(speed=12.0),
        actors=[ActorConfig(id=3, kind="vehicle", position=(30.0, 0.5)),
                ActorConfig(id=5, kind="pedestrian", position=(12.0, -4.0))],
    ), 1)


def test_truth_shares_read_only_constants_and_fresh_state() -> None:
    w = _world()
    t0, t1 = w.truth(), w.step(0.1)
    for f in ("ids", "kinds", "sizes", "heights"):
        a = getattr(t1, f)
        assert not a.flags.writeable
        np.testing.assert_array_equal(a, getattr(w, f))
        assert a is getattr(t0, f)  # the same read-only copy at every instant
    assert t1.positions is not t0.positions and t1.positions.flags.writeable
    np.testing.assert_array_equal(t1.velocities, w.vel - np.array([w.ego_speed, 0.0]))
    np.testing.assert_array_equal(t1.bearings(), t1.azimuths)
    assert t1.bearings() is t1.bearings() and not t1.bearings().flags.writeable
    w.sizes = w.sizes * 2.0  # a replaced array is picked up
    np.testing.assert_array_equal(w.truth().sizes, w.sizes)


def test_one_normal_call_draws_what_two_calls_draw() -> None:
    for n in (0, 1, 3, 9):
        g1, g2 = np.random.default_rng(n), np.random.default_rng(n)
        a, b = g1.standard_normal((n, 3)), g1.standard_normal(n)
        c = g2.standard_normal(4 * n)
        np.testing.assert_array_equal(c, np.concatenate([a.reshape(-1), b]))
        assert g1.bit_generator.state == g2.bit_generator.state


@pytest.mark.parametrize("seed", range(10))
def test_camera_draws_as_separate_calls_did(seed: int) -> None:
    w = _world()
    truth = w.step(0.1)
    sensor = CameraSensor(CameraConfig(channel="camera"))
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    got = sensor.measure(0.1, truth, g1)
    n = len(truth)
    u, noise, snoise = g2.random(n), g2.standard_normal((n, 2)), g2.standard_normal(n)
    want = sensor._measure_numpy(0.1, truth, u, noise, snoise)
    np.testing.assert_array_equal(got.z, want.z)
    np.testing.assert_allclose(got.R, want.R, rtol=1e-14)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert g1.bit_generator.state == g2.bit_generator.state


@pytest.mark.parametrize("seed", range(5))
def test_radar_scan_with_no_rows_is_what_from_polar_makes(seed: int) -> None:
    far = Truth(0.0, np.arange(2), np.zeros(2, np.int64), np.array([[500.0, 0.0], [0.0, -600.0]]),
                np.zeros((2, 2)), np.ones((2, 2)), np.ones(2), 10.0, np.zeros(2))
    fast = RadarSensor(RadarConfig(channel="radar", clutter_rate=0.0))
    ref = RadarSensor(RadarConfig(channel="radar", clutter_rate=0.0))
    ref._params = None  # the numpy formulation, through Detections.from_polar
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    a, b = fast.measure(0.0, far, g1), ref.measure(0.0, far, g2)
    assert len(a) == len(b) == 0 and a.range_rate is None and b.range_rate is None
    assert a.z.shape == b.z.shape and a.R.shape == b.R.shape and a.sensor == b.sensor
    assert g1.bit_generator.state == g2.bit_generator.state
