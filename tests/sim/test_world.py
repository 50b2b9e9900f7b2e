"""World: determinism to the bit, seed independence, and each motion pattern."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from pydantic import ValidationError

from sim.rng import child, generator, key_words, root
from sim.sensors import CameraConfig, CameraSensor, RadarConfig, RadarSensor
from sim.strategies import worlds
from sim.triggers import TriggerConfig
from sim.world import (
    ActorConfig,
    ConstantVelocityMotion,
    CrossingMotion,
    EgoConfig,
    LaneChangeMotion,
    RandomWalkMotion,
    StopAndGoMotion,
    Truth,
    World,
    WorldConfig,
    kind_code,
)

DT = 0.05


def run(world: World, seconds: float, dt: float = DT) -> list[Truth]:
    return [world.step(dt) for _ in range(round(seconds / dt))]


def mixed_world() -> WorldConfig:
    return WorldConfig(
        ego=EgoConfig(speed_profile=[(0.0, 10.0), (5.0, 15.0)]),
        actors=[
            ActorConfig(id=1, position=(20, 3.5), motion=LaneChangeMotion(speed=12, start_time=1)),
            ActorConfig(id=2, kind="pedestrian", position=(30, -5), motion=CrossingMotion()),
            ActorConfig(id=3, position=(15, 0), motion=StopAndGoMotion()),
            ActorConfig(id=4, kind="robot", position=(10, -5), motion=RandomWalkMotion()),
            ActorConfig(id=5, kind="cyclist", position=(40, 2), motion=RandomWalkMotion()),
        ],
    )


# ----------------------------------------------------------------------------- determinism
def test_same_config_and_seed_is_bit_identical() -> None:
    a = run(World(mixed_world(), child(root(7), "world")), 8.0)
    b = run(World(mixed_world(), child(root(7), "world")), 8.0)
    for ta, tb in zip(a, b, strict=True):
        assert ta.positions.tobytes() == tb.positions.tobytes()
        assert ta.velocities.tobytes() == tb.velocities.tobytes()
        assert ta.t == tb.t and ta.speed == tb.speed


def test_other_seed_changes_random_walk_only() -> None:
    a = run(World(mixed_world(), 1), 4.0)[-1]
    b = run(World(mixed_world(), 2), 4.0)[-1]
    rw = np.isin(a.ids, [4, 5])
    assert not np.array_equal(a.positions[rw], b.positions[rw])
    np.testing.assert_array_equal(a.positions[~rw], b.positions[~rw])


def test_child_streams_are_keyed_not_ordered() -> None:
    ss = root(123)
    x1 = generator(ss, "sensor", "radar").random(5)
    # deriving other children first (or not at all) changes nothing
    generator(ss, "sensor", "camera").random(100)
    x2 = generator(ss, "sensor", "radar").random(5)
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, generator(ss, "sensor", "camera").random(5))
    assert key_words("radar") == key_words("radar") and key_words("radar") != key_words("radar2")


def test_adding_a_sensor_does_not_change_another_sensors_draws() -> None:
    """A scenario run with radar alone and with camera + radar: radar outputs are bit-identical."""

    def radar_outputs(with_camera: bool) -> list[bytes]:
        ss = root(42)
        world = World(mixed_world(), child(ss, "world"))
        sensors: list[tuple[object, np.random.Generator]] = []
        if with_camera:
            sensors.append(
                (CameraSensor(CameraConfig(channel="camera")), generator(ss, "sensor", "camera"))
            )
        radar = RadarSensor(RadarConfig(channel="radar", clutter_rate=2.0))
        sensors.append((radar, generator(ss, "sensor", "radar")))
        out = []
        for _ in range(60):
            truth = world.step(0.1)
            for sensor, rng in sensors:
                d = sensor.measure(truth.t, truth, rng)  # type: ignore[attr-defined]
                if sensor is radar:
                    out.append(d.z.tobytes() + d.scores.tobytes())
        return out

    assert radar_outputs(False) == radar_outputs(True)


# ----------------------------------------------------------------------------- patterns
def test_constant_velocity_in_ego_frame() -> None:
    cfg = WorldConfig(
        ego=EgoConfig(speed=10.0),
        actors=[
            ActorConfig(
                id=1, position=(20.0, 1.0), motion=ConstantVelocityMotion(velocity=(12.0, 0.5))
            )
        ],
    )
    truth = run(World(cfg), 2.0)[-1]
    np.testing.assert_allclose(truth.positions[0], [20.0 + 2.0 * 2.0, 1.0 + 0.5 * 2.0], atol=1e-9)
    np.testing.assert_allclose(truth.velocities[0], [2.0, 0.5])
    assert truth.speed == 10.0
    assert truth.kinds[0] == kind_code("vehicle")


def test_world_frame_position_is_relative_to_ego_start() -> None:
    cfg = WorldConfig(
        ego=EgoConfig(speed=0.0, start=(100.0, 5.0)),
        actors=[
            ActorConfig(id=1, position=(110.0, 5.0), frame="world"),
            ActorConfig(id=2, position=(10.0, 0.0), frame="ego"),
        ],
    )
    t = World(cfg).truth()
    np.testing.assert_allclose(t.positions, [[10.0, 0.0], [10.0, 0.0]])


def test_ego_speed_profile_is_integrated() -> None:
    cfg = WorldConfig(ego=EgoConfig(speed_profile=[(0.0, 0.0), (4.0, 8.0)]))
    w = World(cfg)
    run(w, 6.0)
    # 0→8 m/s over 4 s (16 m) then 2 s at 8 m/s (16 m)
    assert w.ego_position[0] == pytest.approx(32.0, abs=1e-6)
    assert w.ego_speed == 8.0


def test_lane_change_minimum_jerk_profile() -> None:
    m = LaneChangeMotion(speed=10.0, lateral_offset=-3.5, duration=3.0, start_time=2.0)
    cfg = WorldConfig(
        ego=EgoConfig(speed=10.0), actors=[ActorConfig(id=1, position=(15, 3.5), motion=m)]
    )
    w = World(cfg)
    traj = run(w, 7.0)
    ts = np.array([tr.t for tr in traj])
    ys = np.array([tr.positions[0, 1] for tr in traj])
    vy = np.array([tr.velocities[0, 1] for tr in traj])
    assert np.all(ys[ts <= 2.0 + 1e-9] == 3.5)  # nothing before the start
    assert np.allclose(ys[ts >= 5.0 - 1e-9], 0.0, atol=1e-9)  # complete after the duration
    assert np.all(np.diff(ys) <= 1e-12)  # monotone towards the target lane
    mid = np.argmin(np.abs(ts - 3.5))
    assert vy[mid] == pytest.approx(-3.5 * 1.875 / 3.0, rel=1e-6)  # peak of min-jerk speed
    np.testing.assert_allclose([tr.positions[0, 0] for tr in traj], 15.0, atol=1e-9)


def test_lane_change_starts_on_trigger() -> None:
    trig = TriggerConfig.model_validate(
        {"any_of": [[{"kind": "distance", "actor": 1, "rule": "less", "value": 10.0}]]}
    )
    m = LaneChangeMotion(speed=5.0, lateral_offset=-3.0, duration=2.0, start_trigger=trig)
    cfg = WorldConfig(
        ego=EgoConfig(speed=10.0), actors=[ActorConfig(id=1, position=(30, 3.0), motion=m)]
    )
    w = World(cfg)
    traj = run(w, 8.0)
    # gap closes at 5 m/s from ~30 m: distance < 10 m at t ≈ 4 s (hypot with y = 3)
    moving = [tr.t for tr in traj if tr.positions[0, 1] < 3.0 - 1e-9]
    assert moving, "lane change never started"
    assert 3.8 < moving[0] < 4.3
    assert traj[-1].positions[0, 1] == pytest.approx(0.0, abs=1e-9)


def test_crossing_waits_walks_and_stops() -> None:
    m = CrossingMotion(speed=1.5, heading_deg=90.0, distance=6.0, start_time=1.0)
    cfg = WorldConfig(
        ego=EgoConfig(speed=0.0),
        actors=[ActorConfig(id=1, kind="pedestrian", position=(10, -3), motion=m)],
    )
    traj = run(World(cfg), 7.0)
    at = {round(tr.t, 2): tr for tr in traj}
    assert at[1.0].positions[0].tolist() == [10.0, -3.0]
    assert at[3.0].positions[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert at[3.0].velocities[0, 1] == pytest.approx(1.5)
    assert at[6.0].positions[0, 1] == pytest.approx(3.0, abs=1e-9)  # stopped after 6 m
    assert at[6.0].velocities[0].tolist() == [0.0, 0.0]


def test_stop_and_go_alternates_within_accel_limit() -> None:
    m = StopAndGoMotion(speed=6.0, go_time=4.0, stop_time=4.0, accel=2.0)
    cfg = WorldConfig(
        ego=EgoConfig(speed=0.0), actors=[ActorConfig(id=1, position=(10, 0), motion=m)]
    )
    traj = run(World(cfg), 16.0)
    v = np.array([tr.velocities[0, 0] for tr in traj])
    assert v.min() >= 0.0 and v.max() <= 6.0 + 1e-12
    assert np.all(np.abs(np.diff(v)) <= 2.0 * DT + 1e-12)
    ts = np.array([tr.t for tr in traj])
    assert v[np.argmin(np.abs(ts - 3.9))] == pytest.approx(6.0)  # cruising in the go phase
    assert v[np.argmin(np.abs(ts - 7.9))] == pytest.approx(0.0)  # stopped in the stop phase
    x = np.array([tr.positions[0, 0] for tr in traj])
    assert np.all(np.diff(x) >= 0.0)


def test_random_walk_respects_speed_cap() -> None:
    m = RandomWalkMotion(sigma_accel=3.0, max_speed=1.2)
    cfg = WorldConfig(
        ego=EgoConfig(speed=0.0),
        actors=[ActorConfig(id=i, kind="robot", position=(10, i), motion=m) for i in range(5)],
    )
    traj = run(World(cfg, 3), 10.0)
    speeds = np.array([np.hypot(tr.velocities[:, 0], tr.velocities[:, 1]) for tr in traj])
    assert speeds.max() <= 1.2 + 1e-9
    assert speeds.mean() > 0.3  # it does move


# ----------------------------------------------------------------------------- config
def test_config_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="unique"):
        WorldConfig(actors=[ActorConfig(id=1, position=(1, 0)), ActorConfig(id=1, position=(2, 0))])
    with pytest.raises(ValidationError):
        ActorConfig.model_validate({"id": 1, "position": (1, 0), "colour": "red"})
    with pytest.raises(ValidationError):
        ActorConfig.model_validate({"id": 1, "position": (1, 0), "motion": {"pattern": "teleport"}})
    with pytest.raises(ValidationError, match="increase"):
        EgoConfig(speed_profile=[(1.0, 2.0), (1.0, 3.0)])


def test_yaml_like_dict_round_trip() -> None:
    cfg = mixed_world()
    again = WorldConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


@given(worlds(max_actors=5))
def test_random_worlds_are_finite_and_deterministic(cfg: WorldConfig) -> None:
    a = run(World(cfg, 5), 2.0, dt=0.1)[-1]
    b = run(World(cfg, 5), 2.0, dt=0.1)[-1]
    assert np.all(np.isfinite(a.positions)) and np.all(np.isfinite(a.velocities))
    assert a.positions.tobytes() == b.positions.tobytes()
    assert a.positions.shape == (len(cfg.actors), 2)
