"""SeriesBuilder stores the same series whether rows come as ready arrays or as sequences."""

from __future__ import annotations

import numpy as np

from safety.statemachine import HealthState
from sim.results import SeriesBuilder


def _record(as_arrays: bool) -> object:
    rng = np.random.default_rng(5)
    b = SeriesBuilder(["1", "2"], ["camera", "radar"])
    for i in range(12):
        n = int(rng.integers(0, 4))
        ids = rng.integers(0, 9, n).astype(np.int64)
        pos = rng.normal(size=(n, 2))
        flags = rng.integers(0, 8, n).astype(np.int64)
        objects = (ids, pos, flags) if as_arrays else (ids.tolist(), pos.tolist(), flags.tolist())
        tracks = {"camera": objects} if i % 3 else {}
        state = [HealthState.NOMINAL, "DEGRADED", HealthState.DEGRADED][i % 3]
        b.add_step(i * 0.1, state, rng.normal(size=(2, 2)), objects,
                   stage=None if i % 2 else "advisory", tracks=tracks)
    return b.build()


def test_array_and_sequence_rows_give_the_same_series() -> None:
    a, b = _record(True), _record(False)
    assert a.state.tolist() == b.state.tolist() == [0, 1, 1] * 4
    assert a.takeover_stage.tolist() == b.takeover_stage.tolist()
    for x, y in [(a.objects, b.objects), *((a.tracks[c], b.tracks[c]) for c in a.tracks)]:
        for f in ("offsets", "ids", "pos", "flags"):
            u, v = getattr(x, f), getattr(y, f)
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)
