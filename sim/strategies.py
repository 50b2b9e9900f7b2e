"""Hypothesis strategies for property tests of perception/safety integrations.

``detections()`` valid Detections; ``worlds()`` WorldConfigs; ``triggers()``; ``fault_configs()``
and ``fault_schedules()`` random faults with triggers inside a duration; ``sensor_configs()``;
``human_configs()``; ``scenarios()`` a full ``sim.scenario.ScenarioConfig`` when that schema is
available, else the equivalent dict; ``default_config_scenarios()`` physically plausible worlds
with fault schedules against ``SupervisorConfig.default()`` (the silent-failure property).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

from perception.detections import Detections
from safety.channels import FieldOfView
from safety.config import SupervisorConfig
from sim.faults import FaultConfig
from sim.human import HumanConfig
from sim.metrics import CriticalZone
from sim.rng import child, root
from sim.sensors import CameraConfig, RadarConfig
from sim.triggers import TriggerConfig
from sim.world import (
    KINDS,
    ActorConfig,
    ConstantVelocityMotion,
    CrossingMotion,
    EgoConfig,
    LaneChangeMotion,
    RandomWalkMotion,
    StopAndGoMotion,
    World,
    WorldConfig,
)

__all__ = [
    "DEFAULT_CONFIG_FAULT_KINDS",
    "EGO_BODY",
    "FAULT_KINDS",
    "actor_configs",
    "covered_zone",
    "default_config_scenarios",
    "detections",
    "fault_configs",
    "fault_schedules",
    "human_configs",
    "plausible_world",
    "scenarios",
    "sensor_configs",
    "triggers",
    "world_trajectory",
    "worlds",
]

#: Fault kinds that act on measurement-level (Detections) channels.
MEASUREMENT_FAULT_KINDS: tuple[str, ...] = (
    "dropout", "frozen", "latency", "jitter", "reorder", "noise", "bias_step", "bias_ramp",
    "ghost", "missed", "confidence", "nan", "detector_crash", "detector_hang",
)  # fmt: skip
#: Every fault kind.
FAULT_KINDS: tuple[str, ...] = (*MEASUREMENT_FAULT_KINDS, "glare", "darkness", "blur")


def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# ----------------------------------------------------------------------------- detections
@st.composite
def detections(
    draw: st.DrawFn,
    *,
    space: str | None = None,
    min_size: int = 0,
    max_size: int = 10,
    t: float | None = None,
    sensor: str = "sensor",
    extent: float = 80.0,
) -> Detections:
    """Valid Detections: ground points within ±``extent`` m, or boxes in a 640×480 image."""
    sp = space or draw(st.sampled_from(["point", "box"]))
    n = draw(st.integers(min_size, max_size))
    tt = t if t is not None else draw(_f(0.0, 1e4))
    scores = np.array(draw(st.lists(_f(0.0, 1.0), min_size=n, max_size=n)))
    labels = np.array(draw(st.lists(st.integers(0, len(KINDS) - 1), min_size=n, max_size=n)))
    if sp == "point":
        pts = np.array(draw(st.lists(st.tuples(_f(-extent, extent), _f(-extent, extent)),
                                     min_size=n, max_size=n))).reshape(n, 2)  # fmt: skip
        sig = np.array(draw(st.lists(_f(0.05, 5.0), min_size=n, max_size=n)))
        return Detections.from_points(
            pts, t=tt, sigma=sig, scores=scores, labels=labels, sensor=sensor
        )
    rows = draw(
        st.lists(st.tuples(_f(0, 600), _f(0, 440), _f(2, 200), _f(2, 200)), min_size=n, max_size=n)
    )
    b = np.array(rows, dtype=np.float64).reshape(n, 4)
    xyxy = np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])
    sigma = draw(_f(0.5, 5.0))
    return Detections.from_boxes(
        xyxy, t=tt, scores=scores, labels=labels, sensor=sensor, sigma_px=sigma
    )


# ----------------------------------------------------------------------------- triggers
@st.composite
def triggers(draw: st.DrawFn, *, duration: float = 20.0, simple: bool = False) -> TriggerConfig:
    """A trigger firing within ``duration``: a time, or (unless ``simple``) a condition group."""
    at = round(draw(_f(0.0, 0.9 * duration)), 3)
    if simple or draw(st.booleans()):
        return TriggerConfig(at=at)
    extra = draw(
        st.sampled_from(
            [
                {"kind": "distance", "rule": "less", "value": draw(_f(5.0, 60.0))},
                {"kind": "ego_speed", "rule": "greater", "value": draw(_f(0.0, 5.0))},
            ]
        )
    )
    time_cond = {"kind": "simulation_time", "rule": "greater_equal", "value": at}
    latest = round(min(0.95 * duration, at + 2.0), 3)  # fires by then whatever the world does
    return TriggerConfig.model_validate({"any_of": [[time_cond, extra], [
        {"kind": "simulation_time", "rule": "greater_equal", "value": latest}
    ]]})  # fmt: skip


# ----------------------------------------------------------------------------- world
#: Peak lateral acceleration a generated lane change may demand (m/s²).
MAX_LATERAL_ACCEL = 4.0


@st.composite
def actor_configs(
    draw: st.DrawFn, *, actor_id: int = 0, patterns: Sequence[str] | None = None
) -> ActorConfig:
    """One actor ahead of ego (5–60 m, ±8 m lateral) with a random motion pattern."""
    kind = draw(st.sampled_from(KINDS))
    pattern = draw(
        st.sampled_from(
            list(patterns or ())
            or ["constant_velocity", "lane_change", "crossing", "stop_and_go", "random_walk"]
        )
    )
    pos = (round(draw(_f(5.0, 60.0)), 2), round(draw(_f(-8.0, 8.0)), 2))
    motion: Any
    if pattern == "constant_velocity":
        motion = ConstantVelocityMotion(velocity=(draw(_f(0.0, 20.0)), draw(_f(-1.0, 1.0))))
    elif pattern == "lane_change":
        # a minimum-jerk lateral move of d metres in T seconds peaks at 5.77·d/T² m/s²; keep it
        # within what road users do (≤ 4 m/s², already a brisk swerve): 4 m in 1 s would be 2.3 g
        offset = draw(_f(-4.0, 4.0))
        shortest = max(1.0, float(np.sqrt(10.0 / np.sqrt(3.0) * abs(offset) / MAX_LATERAL_ACCEL)))
        motion = LaneChangeMotion(
            speed=draw(_f(0.0, 20.0)), lateral_offset=offset,
            duration=draw(_f(shortest, max(shortest, 6.0))), start_time=draw(_f(0.0, 10.0)),
        )  # fmt: skip
    elif pattern == "crossing":
        motion = CrossingMotion(
            speed=draw(_f(0.5, 3.0)), heading_deg=draw(st.sampled_from([90.0, -90.0])),
            distance=draw(_f(2.0, 16.0)), start_time=draw(_f(0.0, 10.0)),
        )  # fmt: skip
    elif pattern == "stop_and_go":
        motion = StopAndGoMotion(
            speed=draw(_f(2.0, 15.0)), go_time=draw(_f(1.0, 8.0)), stop_time=draw(_f(1.0, 6.0)),
            accel=draw(_f(0.5, 4.0)),
        )  # fmt: skip
    else:
        motion = RandomWalkMotion(sigma_accel=draw(_f(0.0, 1.5)), max_speed=draw(_f(0.5, 3.0)))
    return ActorConfig.model_validate(
        {"id": actor_id, "kind": kind, "position": pos, "motion": motion}
    )


@st.composite
def worlds(
    draw: st.DrawFn,
    *,
    min_actors: int = 0,
    max_actors: int = 6,
    ego_speed: tuple[float, float] = (0.0, 25.0),
) -> WorldConfig:
    """A WorldConfig with up to ``max_actors`` actors (unique ids) and a constant ego speed."""
    n = draw(st.integers(min_actors, max_actors))
    actors = [draw(actor_configs(actor_id=i + 1)) for i in range(n)]
    return WorldConfig(ego=EgoConfig(speed=draw(_f(*ego_speed))), actors=actors)


# ----------------------------------------------------------------------------- sensors
@st.composite
def sensor_configs(draw: st.DrawFn, *, channel: str = "camera", kind: str | None = None) -> Any:
    """A measurement-level camera or radar config with random noise and FOV."""
    k = kind or draw(st.sampled_from(["camera", "radar"]))
    half = draw(_f(20.0, 80.0))
    fov = FieldOfView(azimuth_min_deg=-half, azimuth_max_deg=half, range_max=draw(_f(30.0, 150.0)))
    rate = draw(st.sampled_from([5.0, 10.0, 20.0]))
    if k == "camera":
        return CameraConfig(
            channel=channel, rate_hz=rate, fov=fov, sigma_range=draw(_f(0.05, 1.0)),
            sigma_azimuth_deg=draw(_f(0.05, 1.0)), p_detect=draw(_f(0.7, 1.0)),
        )  # fmt: skip
    return RadarConfig(
        channel=channel, rate_hz=rate, fov=fov, sigma_range=draw(_f(0.05, 1.0)),
        clutter_rate=draw(_f(0.0, 3.0)), p_detect=draw(_f(0.7, 1.0)),
    )  # fmt: skip


# ----------------------------------------------------------------------------- faults
def _params(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    if kind == "dropout":
        return {"probability": draw(_f(0.3, 1.0))}
    if kind == "frozen":
        return {"restamp": draw(st.booleans())}
    if kind == "latency":
        return {"delay": draw(_f(0.1, 2.0))}
    if kind == "jitter":
        return {"sigma": draw(_f(0.01, 0.3))}
    if kind == "reorder":
        return {"probability": draw(_f(0.1, 1.0))}
    if kind == "noise":
        return {"sigma": draw(_f(0.2, 5.0)), "inflate_R": draw(st.booleans())}
    if kind == "bias_step":
        return {"offset": (draw(_f(-5.0, 5.0)), draw(_f(-5.0, 5.0)))}
    if kind == "bias_ramp":
        return {"rate": (draw(_f(-1.0, 1.0)), draw(_f(-1.0, 1.0)))}
    if kind == "ghost":
        return {"count": draw(st.integers(1, 3))}
    if kind == "missed":
        return {"probability": draw(_f(0.2, 1.0))}
    if kind == "confidence":
        return {"scale": draw(_f(0.0, 0.9)), "shift": draw(_f(-0.3, 0.0))}
    if kind == "nan":
        return {"fraction": draw(_f(0.05, 1.0))}
    if kind == "detector_hang":
        return {"seconds": draw(_f(0.05, 2.0))}
    if kind == "glare":
        return {"center": (draw(_f(0.1, 0.9)), draw(_f(0.1, 0.9))), "radius": draw(_f(0.05, 0.5))}
    if kind == "darkness":
        return {"gain": draw(_f(0.05, 0.6)), "gamma": draw(_f(1.0, 3.0))}
    if kind == "blur":
        return {"sigma": draw(_f(1.0, 8.0))}
    return {}


@st.composite
def fault_configs(
    draw: st.DrawFn,
    *,
    channels: Sequence[str] = ("camera",),
    duration: float = 20.0,
    kinds: Sequence[str] | None = None,
    stop_triggers: bool = False,
) -> Any:
    """One fault on one of ``channels``, starting within ``duration`` and lasting 0.5 s or more.

    With ``stop_triggers`` the end is a ``duration``, a ``stop`` trigger inside the run (possibly
    re-armed: ``repeat``), or never.
    """
    kind = draw(st.sampled_from(list(kinds or MEASUREMENT_FAULT_KINDS)))
    start = draw(triggers(duration=duration))
    length = draw(st.one_of(st.none(), _f(0.5, max(0.5, duration / 2))))
    data = {
        "kind": kind, "channel": draw(st.sampled_from(list(channels))),
        "start": start.model_dump(), "duration": length,
        **_params(draw, kind),
    }  # fmt: skip
    if stop_triggers and length is not None and draw(st.booleans()):
        # the same length expressed as a stop trigger (time after the start's earliest time)
        stop_at = round(min(_earliest(start) + length, 0.98 * duration), 3)
        data.update(duration=None, stop={"at": stop_at}, repeat=draw(st.booleans()))
    from pydantic import TypeAdapter

    return TypeAdapter(FaultConfig).validate_python(data)


@st.composite
def fault_schedules(
    draw: st.DrawFn,
    *,
    channels: Sequence[str] = ("camera", "radar"),
    duration: float = 20.0,
    min_faults: int = 0,
    max_faults: int = 3,
    kinds: Sequence[str] | None = None,
    stop_triggers: bool = False,
) -> list[Any]:
    """A list of faults with triggers inside ``duration`` (possibly several on one channel)."""
    n = draw(st.integers(min_faults, max_faults))
    return [
        draw(fault_configs(channels=channels, duration=duration, kinds=kinds,
                           stop_triggers=stop_triggers))
        for _ in range(n)
    ]  # fmt: skip


def _earliest(trigger: TriggerConfig) -> float:
    """The earliest simulation time at which ``trigger`` may fire (0 if it has no time bound)."""
    times = [
        float(c.value) for g in trigger.groups() for c in g if c.kind == "simulation_time"
    ]
    return min(times, default=0.0)


# ----------------------------------------------------------------------------- human
@st.composite
def human_configs(draw: st.DrawFn) -> HumanConfig:
    """A driver: attentive, distracted or absent, default or random reaction parameters."""
    profile = draw(st.sampled_from(["attentive", "distracted", "absent"]))
    if profile == "absent":
        return HumanConfig(profile="absent")
    return HumanConfig.model_validate({
        "profile": profile, "median": draw(st.one_of(st.none(), _f(0.5, 12.0))),
        "sigma": draw(st.one_of(st.none(), _f(0.0, 1.0))),
    })  # fmt: skip


# ----------------------------------------------------------------------------- scenarios
@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    duration: float = 10.0,
    max_actors: int = 4,
    max_faults: int = 2,
    channels: Sequence[str] = ("camera", "radar"),
    as_dict: bool = False,
) -> Any:
    """A scenario: world, one measurement-level sensor per channel, faults, human and seed.

    Returns a validated ``sim.scenario.ScenarioConfig`` when that module exists (unless
    ``as_dict``), else the plain dict (keys: name, duration_s, seed, world, sensors,
    supervisor (one channel per sensor: the first primary, the rest redundant), faults, human).
    """
    world = draw(worlds(max_actors=max_actors))
    sensors = [
        draw(sensor_configs(channel=c, kind="radar" if "radar" in c else "camera"))
        for c in channels
    ]
    faults = draw(fault_schedules(channels=channels, duration=duration, max_faults=max_faults))
    supervisor = {
        "channels": [
            {
                "name": s.channel, "kind": "radar" if s.kind == "radar" else "camera",
                "role": "primary" if i == 0 else "redundant", "expected_rate_hz": s.rate_hz,
                "fov": s.fov.model_dump(mode="json"),
            }
            for i, s in enumerate(sensors)
        ]
    }  # fmt: skip
    data: dict[str, Any] = {
        "name": f"generated-{draw(st.integers(0, 10**6))}",
        "duration_s": duration,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "world": world.model_dump(mode="json"),
        "sensors": [s.model_dump(mode="json") for s in sensors],
        "supervisor": supervisor,
        "faults": [f.model_dump(mode="json", exclude_none=True) for f in faults],
        "human": draw(human_configs()).model_dump(mode="json", exclude_none=True),
    }
    if as_dict:
        return data
    return _to_scenario(data)


def _to_scenario(data: dict[str, Any]) -> Any:
    try:
        from sim.scenario import ScenarioConfig
    except ImportError:  # the scenario schema is not available: hand back the dict
        return data
    return ScenarioConfig.model_validate(data)


# ----------------------------------------------------------------------------- default config
#: Fault kinds that act on the default configuration's channels (measurement-level ground points).
#: glare, darkness and blur corrupt rendered frames only: on Detections they change nothing.
DEFAULT_CONFIG_FAULT_KINDS: tuple[str, ...] = MEASUREMENT_FAULT_KINDS

#: The ego's body in its own frame (x_min, x_max, y_min, y_max) m: the sensors sit at the front
#: bumper (the origin) and the body extends 4.5 m behind it.
EGO_BODY: tuple[float, float, float, float] = (-4.5, 0.0, -0.9, 0.9)


def world_trajectory(
    world: WorldConfig, *, duration: float, rate_hz: float = 10.0, seed: int = 0
) -> NDArray[np.float64]:
    """Ego-frame actor positions (steps, actors, 2) exactly as ``run_scenario`` sees them.

    The world draws from the run's ``"world"`` stream, as the runner does; the ego keeps its
    configured speed (the runner only changes it once a minimal-risk manoeuvre is commanded).
    """
    w = World(world, child(root(int(seed)), "world"))
    steps = int(np.floor(duration * rate_hz + 1e-9)) + 1
    out = np.empty((steps, len(world.actors), 2))
    truth = w.truth()
    for i in range(steps):
        if i > 0:
            truth = w.step(i / rate_hz - w.t)
        out[i] = truth.positions
    return out


def _half_extents(world: WorldConfig) -> NDArray[np.float64]:
    """(A, 2) half extents along x and y of each actor's footprint, for its direction of travel.

    Crossing actors walk across the road (length along y); random walkers turn any way (the
    larger half size on both axes).
    """
    out = np.empty((len(world.actors), 2))
    for i, a in enumerate(world.actors):
        length, width, _ = a.footprint()
        pattern = a.motion.pattern
        if pattern == "crossing":
            out[i] = (width / 2, length / 2)
        elif pattern == "random_walk":
            out[i] = max(length, width) / 2
        else:
            out[i] = (length / 2, width / 2)
    return out


def _colliding(
    world: WorldConfig, pos: NDArray[np.float64], clearance: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which actors ever come within ``clearance`` of the ego body, and of each other (A, A)."""
    h = _half_extents(world)
    x0, x1, y0, y1 = EGO_BODY
    ego_c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    ego_h = np.array([(x1 - x0) / 2, (y1 - y0) / 2])
    d_ego = np.abs(pos - ego_c)  # (T, A, 2)
    ego = np.any(np.all(d_ego < ego_h + h + clearance, axis=2), axis=0)
    d = np.abs(pos[:, :, None, :] - pos[:, None, :, :])  # (T, A, A, 2)
    pair = np.any(np.all(d < h[:, None, :] + h[None, :, :] + clearance, axis=3), axis=0)
    np.fill_diagonal(pair, False)
    return ego, pair


def plausible_world(
    world: WorldConfig,
    *,
    duration: float,
    rate_hz: float = 10.0,
    seed: int = 0,
    clearance: float = 0.3,
) -> WorldConfig:
    """``world`` without the actors that would drive into the ego or into an earlier actor.

    The simulated world has no collisions: actors pass through each other and through the ego,
    which no sensor model or safety argument is meant for (two cars in one place, a car inside
    the ego). Dropping an actor can change the random walkers' draws, so it re-simulates until
    no collision is left.
    """
    while world.actors:
        pos = world_trajectory(world, duration=duration, rate_hz=rate_hz, seed=seed)
        ego, pair = _colliding(world, pos, clearance)
        drop = ego.copy()
        for i in range(len(world.actors)):  # keep the earlier actor of a colliding pair
            if not drop[i] and np.any(pair[i, :i] & ~drop[:i]):
                drop[i] = True
        if not drop.any():
            break
        keep = [a for a, d in zip(world.actors, drop, strict=True) if not d]
        world = world.model_copy(update={"actors": keep})
    return world


def covered_zone(
    cfg: SupervisorConfig, zone: CriticalZone | None = None, *, margin: float = 0.5
) -> CriticalZone:
    """The part of ``zone`` (its x range trimmed) inside every non-shadow ground channel's FOV.

    Fault detection by redundancy can only be asked for where the channels overlap; outside
    them an actor is unseen without any fault (a coverage question, not a fault-detection one).
    ``margin`` keeps the zone that far inside the FOV edges.
    """
    z = zone or CriticalZone()
    y = max(abs(z.y[0]), abs(z.y[1])) + margin
    x_lo, x_hi = z.x
    for c in cfg.channels:
        if c.role == "shadow" or c.frame != "ground":
            continue
        half = np.radians(min(-c.fov.azimuth_min_deg, c.fov.azimuth_max_deg))
        if half <= 0:
            raise ValueError(f"channel {c.name!r} does not look ahead: no zone to cover")
        near = y / np.tan(half) if half < np.pi / 2 else 0.0
        x_lo = max(x_lo, near, c.fov.range_min + margin)
        x_hi = min(x_hi, float(np.sqrt(max((c.fov.range_max - margin) ** 2 - y * y, 0.0))))
    if x_hi <= x_lo:
        raise ValueError("the channels' fields of view leave nothing of the critical zone")
    return CriticalZone(x=(round(float(x_lo), 3), round(float(x_hi), 3)), y=z.y)


@st.composite
def default_config_scenarios(
    draw: st.DrawFn,
    *,
    duration: float = 12.0,
    rate_hz: float = 10.0,
    min_actors: int = 1,
    max_actors: int = 4,
    min_faults: int = 1,
    max_faults: int = 3,
    kinds: Sequence[str] | None = None,
    config: SupervisorConfig | None = None,
) -> Any:
    """A scenario against ``SupervisorConfig.default()`` (or ``config``) with a fault schedule.

    Plausible world (:func:`plausible_world`), one default-model sensor per channel seeing
    exactly the channel's declared FOV, ``min_faults``–``max_faults`` faults of ``kinds``
    (default: every kind that acts on these channels) on random channels, with start triggers
    and stop triggers or durations inside the run, an absent driver (a takeover request runs
    into the MRM, the most demanding path), and the critical zone of the tolerance trimmed to
    what the channels cover (:func:`covered_zone`). Returns a validated ``ScenarioConfig``.
    """
    from sim.scenario import ScenarioConfig

    sup = config or SupervisorConfig.default()
    seed = draw(st.integers(0, 2**32 - 1))
    world = draw(worlds(min_actors=min_actors, max_actors=max_actors))
    world = plausible_world(world, duration=duration, rate_hz=rate_hz, seed=seed)
    sensors: list[Any] = []
    for c in sup.channels:
        if c.kind == "radar":
            sensors.append(RadarConfig(channel=c.name, rate_hz=c.expected_rate_hz, fov=c.fov))
        else:
            sensors.append(CameraConfig(channel=c.name, rate_hz=c.expected_rate_hz, fov=c.fov))
    names = [c.name for c in sup.channels]
    faults = draw(
        fault_schedules(
            channels=names, duration=duration, min_faults=min_faults, max_faults=max_faults,
            kinds=kinds or DEFAULT_CONFIG_FAULT_KINDS, stop_triggers=True,
        )
    )  # fmt: skip
    data: dict[str, Any] = {
        "name": f"property-{seed}",
        "description": "generated by sim.strategies.default_config_scenarios",
        "duration_s": duration,
        "rate_hz": rate_hz,
        "seed": seed,
        "world": world.model_dump(mode="json"),
        "sensors": [s.model_dump(mode="json") for s in sensors],
        "supervisor": sup.model_dump(mode="json"),
        "faults": [f.model_dump(mode="json", exclude_none=True) for f in faults],
        "human": {"profile": "absent"},
        "tolerance": {"critical_zone": covered_zone(sup).model_dump(mode="json")},
    }
    return ScenarioConfig.model_validate(data)
