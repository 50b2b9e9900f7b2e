"""The tracker's one-call step (``_step_kernel``) against its general step, and the packed
output against the definitions of the derived fields: same tracks, same numbers bit for bit,
whatever path a step takes (births, deletions, predict-only steps, empty frames)."""

from __future__ import annotations

import numpy as np
import pytest

from perception.detections import Detections
from perception.tracker import Tracker
from perception.tracks import Tracks, TrackStatus

FIELDS = ("ids", "status", "x", "P", "position", "position_cov", "age", "hits",
          "time_since_update", "cov_trace", "updated", "nis", "innovation", "innovation_cov",
          "scores", "labels", "det_index", "confirmed")


def _frames(seed: int, model: str, steps: int = 40) -> list[tuple[float, Detections | None]]:
    """Objects moving in a line with noise, dropouts, empty frames, clutter and jittered time."""
    rng = np.random.default_rng(seed)
    dz = 4 if model == "box" else 2
    k = int(rng.integers(1, 7))
    p = rng.uniform(0.0, 40.0, (k, dz))
    v = rng.normal(0.0, 2.0, (k, dz))
    if model == "box":
        p[:, 2:] = rng.uniform(20.0, 60.0, (k, 2))
        v[:, 2:] = 0.0
    out: list[tuple[float, Detections | None]] = []
    t = 0.0
    for i in range(steps):
        t += 0.1 + (0.02 * float(rng.uniform()) if seed % 2 else 0.0)
        r = rng.random()
        if r < 0.12:
            out.append((t, None))
            continue
        if r < 0.17 or (25 <= i < 29 and seed % 3 == 0):  # empty frames (tracks die)
            out.append((t, Detections.empty(t, "s", "box" if model == "box" else "point")))
            continue
        seen = rng.random(k) < 0.85
        z = (p + v * t)[seen] + rng.normal(0.0, 0.3, (int(seen.sum()), dz))
        n_clutter = int(rng.random() < 0.25)
        if n_clutter:
            c = rng.uniform(0.0, 40.0, (1, dz))
            if model == "box":
                c[:, 2:] = 30.0
            z = np.concatenate([z, c])
        m = z.shape[0]
        R = np.broadcast_to(0.09 * np.eye(dz), (m, dz, dz)).copy()
        rr = rng.normal(0.0, 1.0, (m,)) if model != "box" and seed % 4 == 1 else None
        out.append((t, Detections(z=z, R=R, scores=rng.uniform(0.1, 1.0, (m,)),
                                   labels=rng.integers(0, 3, (m,)), t=t, sensor="s",
                                   space="box" if model == "box" else "point", range_rate=rr)))
    return out


def _assert_same(a: Tracks, b: Tracks) -> None:
    assert a.t == b.t and a.sensor == b.sensor and a.space == b.space
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        np.testing.assert_array_equal(x, y, err_msg=f)


def _assert_definitions(tr: Tracks, prev_t_update: dict[int, float]) -> None:
    """Each derived field equals its definition from the state arrays."""
    n = len(tr)
    np.testing.assert_array_equal(tr.position, tr.x[:, :2])
    np.testing.assert_array_equal(tr.position_cov, tr.P[:, :2, :2])
    np.testing.assert_array_equal(tr.cov_trace, tr.position_cov[:, 0, 0] + tr.position_cov[:, 1, 1])
    np.testing.assert_array_equal(
        tr.confirmed, (tr.status == TrackStatus.CONFIRMED) | (tr.status == TrackStatus.COASTING))
    assert tr.confirmed.dtype == np.bool_ and tr.updated.dtype == np.bool_
    assert np.all(np.isnan(tr.nis[~tr.updated]))
    assert np.all(np.isfinite(tr.nis[tr.updated]))
    assert np.all(np.isnan(tr.innovation[~tr.updated]))
    assert np.all(np.isnan(tr.innovation_cov[~tr.updated]))
    assert np.all(tr.det_index[tr.updated] >= 0)
    np.testing.assert_array_equal(tr.time_since_update[tr.updated], np.zeros(tr.updated.sum()))
    for i, tid in enumerate(tr.ids.tolist()):
        if tid in prev_t_update and not tr.updated[i] and tr.det_index[i] < 0:
            assert tr.time_since_update[i] == tr.t - prev_t_update[tid]
    for a in (getattr(tr, f) for f in FIELDS):
        assert not a.flags.writeable
        assert a.shape[:1] == (n,)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("model", ["cv", "ca", "box"])
def test_one_call_step_equals_the_general_step(seed: int, model: str) -> None:
    kw = {"n_init": 2, "init_window": 3, "max_coast": 0.35}
    fused = Tracker(model, **kw)  # type: ignore[arg-type]
    general = Tracker(model, **kw)  # type: ignore[arg-type]
    general._fused = False
    assert fused._fused == (model != "box" or fused._fused)
    prev: dict[int, float] = {}
    for t, d in _frames(seed, model):
        a = fused.step(t, d)
        b = general.step(t, d)
        _assert_same(a, b)
        np.testing.assert_array_equal(fused.deleted_ids, general.deleted_ids)
        _assert_definitions(a, prev)
        prev = {int(i): t - float(s) for i, s in zip(a.ids, a.time_since_update, strict=True)}
    assert len(fused) == len(general)
    _assert_same(fused.peek(fused.t + 0.1), general.peek(general.t + 0.1))  # type: ignore[operator]


def test_steps_without_tracks_publish_empty_arrays_and_keep_counting() -> None:
    tr = Tracker("cv", n_init=2, init_window=3)
    for i in range(3):
        out = tr.step(0.1 * (i + 1), None if i % 2 else Detections.empty(0.1 * (i + 1)))
        assert len(out) == 0 and out.t == pytest.approx(0.1 * (i + 1))
        assert out.x.shape == (0, 4) and out.innovation_cov.shape == (0, 2, 2)
        assert out.confirmed.dtype == np.bool_ and out.det_index.dtype == np.int64
    z = np.array([[1.0, 2.0]])
    out = tr.step(0.4, Detections(z=z, R=0.1 * np.eye(2)[None], scores=np.ones(1),
                                  labels=np.zeros(1, np.int64), t=0.4))
    assert out.ids.tolist() == [0] and out.age.tolist() == [0]
    out = tr.step(0.5, None)
    assert out.age.tolist() == [1]


def test_published_fields_are_stored_not_recomputed() -> None:
    tr = Tracker("cv", n_init=1, init_window=1)
    z = np.array([[1.0, 2.0], [5.0, 5.0]])
    d = Detections(z=z, R=np.broadcast_to(0.1 * np.eye(2), (2, 2, 2)).copy(), scores=np.ones(2),
                   labels=np.zeros(2, np.int64), t=0.1)
    tr.step(0.1, d)
    out = tr.step(0.2, Detections(**{**d.__dict__, "t": 0.2}))
    assert out.confirmed is out.confirmed
    assert out.nis is out.nis and out.cov_trace is out.cov_trace
    sub = out.subset(np.array([1]))
    np.testing.assert_array_equal(sub.confirmed, [True])
