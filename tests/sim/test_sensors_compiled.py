"""The sensors' compiled paths give bit-identical detections (and draws) to their numpy paths."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sim.sensors import CameraConfig, CameraSensor, RadarConfig, RadarSensor, occlusion_fraction
from sim.world import Truth


def _truth(rng: np.random.Generator, n: int) -> Truth:
    pos = np.column_stack([rng.uniform(-20, 120, n), rng.uniform(-40, 40, n)])
    if n > 2:  # some actors in a row, so they occlude each other
        pos[1] = pos[0] * 1.5
        pos[2] = pos[0] * 2.0
    return Truth(
        t=0.0,
        ids=np.arange(n, dtype=np.int64),
        kinds=rng.integers(0, 4, n).astype(np.int64),
        positions=pos,
        velocities=rng.normal(size=(n, 2)) * 10,
        sizes=np.column_stack([rng.uniform(0.4, 5, n), rng.uniform(0.4, 2, n)]),
        heights=rng.uniform(1, 2, n),
        speed=float(rng.uniform(0, 30)),
        ego_position=np.zeros(2),
    )


def _same(a, b) -> None:
    for f in ("z", "R", "scores", "labels", "range_rate"):
        x, y = getattr(a, f), getattr(b, f)
        if x is None or y is None:
            assert x is None and y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, f
        if f == "R":  # the numpy path's matmul sums are BLAS's: equal where BLAS fuses them
            np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-300, err_msg=f)
        else:
            np.testing.assert_array_equal(x, y, err_msg=f)
    assert a.t == b.t and a.sensor == b.sensor and a.space == b.space


@pytest.mark.parametrize("seed", range(40))
def test_camera_points_match_numpy_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _truth(rng, int(rng.integers(0, 25)))
    cfg = CameraConfig(channel="camera", max_occlusion=float(rng.uniform(0.1, 1.0)),
                       sigma_range_growth=float(rng.uniform(0, 1e-2)))
    fast = CameraSensor(cfg)
    ref = CameraSensor(cfg)
    ref._params = None  # the numpy formulation
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    _same(fast.measure(0.5, truth, g1), ref.measure(0.5, truth, g2))
    assert g1.random() == g2.random()  # the same draws


@pytest.mark.parametrize("seed", range(40))
def test_radar_matches_numpy_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _truth(rng, int(rng.integers(0, 12)))
    cfg = RadarConfig(channel="radar", clutter_rate=float(rng.uniform(0, 4)),
                      classify=bool(seed % 2))
    fast = RadarSensor(cfg)
    ref = RadarSensor(copy.deepcopy(cfg))
    ref._params = None
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    _same(fast.measure(0.5, truth, g1), ref.measure(0.5, truth, g2))
    assert g1.random() == g2.random()


@pytest.mark.parametrize("seed", range(20))
def test_compiled_occlusion_matches_occlusion_fraction(seed: int) -> None:
    from sim.sensors import _occlusion, _sight_extent

    rng = np.random.default_rng(seed)
    truth = _truth(rng, int(rng.integers(1, 160)))
    pos = truth.positions
    az = np.arctan2(pos[:, 1], pos[:, 0])
    r, across, rden = _sight_extent(pos, truth.sizes, az)
    occ = _occlusion(pos, r, az, np.arctan2(across, rden))
    np.testing.assert_array_equal(occ, occlusion_fraction(pos, truth.sizes))
