"""Traffic motion: actors that keep the ego company for a whole soak drive."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.world import ActorConfig, EgoConfig, World, WorldConfig


def _world(**motion: object) -> World:
    actor = ActorConfig.model_validate(
        {"id": 1, "position": [40.0, -3.5], "motion": {"pattern": "traffic", **motion}}
    )
    return World(WorldConfig(ego=EgoConfig(speed=25.0), actors=[actor]))


def test_traffic_gap_breathes_around_its_start_and_never_leaves() -> None:
    w = _world(amplitude=10.0, period=100.0)
    xs, vs = [], []
    for _ in range(36_000):  # an hour at 10 Hz
        tr = w.step(0.1)
        xs.append(tr.positions[0, 0])
        vs.append(tr.velocities[0, 0])
    x = np.array(xs)
    assert x.min() == pytest.approx(30.0, abs=0.01) and x.max() == pytest.approx(50.0, abs=0.01)
    # the relative velocity is the derivative of the gap (trackers see smooth motion)
    np.testing.assert_allclose(np.diff(x) / 0.1, 0.5 * (np.array(vs[1:]) + vs[:-1]), atol=0.02)


def test_traffic_changes_lanes_smoothly_in_turn() -> None:
    w = _world(amplitude=0.0, lanes=[0.0], lane_period=20.0, lane_change_s=4.0)
    ys = np.array([w.step(0.1).positions[0, 1] for _ in range(600)])  # 60 s
    t = np.arange(1, 601) * 0.1
    assert ys[t < 19.95].max() == pytest.approx(-3.5)  # starting lane until the first change
    assert ys[(t > 24.05) & (t < 39.95)] == pytest.approx(0.0)  # cut in
    assert ys[(t > 44.05) & (t < 59.95)] == pytest.approx(-3.5)  # and back
    assert np.abs(np.diff(ys)).max() < 3.5 * 1.875 * 0.1 / 4.0 + 1e-9  # min-jerk peak speed


def test_traffic_needs_an_ego_frame_position_and_a_lane_change_that_fits() -> None:
    with pytest.raises(ValidationError, match="ego-frame"):
        ActorConfig.model_validate({"id": 1, "position": [0, 0], "frame": "world",
                                    "motion": {"pattern": "traffic"}})
    with pytest.raises(ValidationError, match="lane_change_s"):
        ActorConfig.model_validate({"id": 1, "position": [0, 0], "motion": {
            "pattern": "traffic", "lane_period": 3.0, "lane_change_s": 4.0}})
