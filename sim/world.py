"""The simulated world: an ego vehicle driving along +x and actors with simple motion patterns.

Ground truth comes out as a structure of arrays in the ego frame (x forward, y left, metres),
which is the frame every ground channel reports in. The ego keeps heading +x, so the ego frame is
the world frame translated by the ego position. Everything random comes from the seed sequence
handed to :class:`World`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, Literal

import numpy as np
from numpy.random import SeedSequence
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.rng import root
from sim.triggers import Trigger, TriggerConfig, TriggerContext

__all__ = [
    "DEFAULT_SIZES",
    "KINDS",
    "ActorConfig",
    "ConstantVelocityMotion",
    "CrossingMotion",
    "EgoConfig",
    "LaneChangeMotion",
    "MotionConfig",
    "RandomWalkMotion",
    "StopAndGoMotion",
    "TrafficMotion",
    "Truth",
    "World",
    "WorldConfig",
    "kind_code",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Actor kinds; an actor's label in Detections is its index here.
KINDS: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist", "robot")
Kind = Literal["vehicle", "pedestrian", "cyclist", "robot"]
#: Default (length, width, height) in metres per kind.
DEFAULT_SIZES: dict[str, tuple[float, float, float]] = {
    "vehicle": (4.5, 1.8, 1.5),
    "pedestrian": (0.5, 0.5, 1.75),
    "cyclist": (1.8, 0.6, 1.7),
    "robot": (0.8, 0.6, 1.0),
}


def kind_code(kind: str) -> int:
    """The integer label of an actor kind (its index in :data:`KINDS`)."""
    return KINDS.index(kind)


# ----------------------------------------------------------------------------- configs
class EgoConfig(BaseModel):
    """Ego motion: constant ``speed`` or a piecewise-linear ``speed_profile`` [(t, v), ...]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speed: float = Field(default=10.0, ge=0.0)
    speed_profile: list[tuple[float, float]] | None = None
    start: tuple[float, float] = (0.0, 0.0)  # world position at t = 0

    @model_validator(mode="after")
    def _check(self) -> EgoConfig:
        prof = self.speed_profile
        if prof is not None:
            if len(prof) == 0:
                raise ValueError("speed_profile must have at least one (t, speed) point")
            ts = [p[0] for p in prof]
            if any(b <= a for a, b in pairwise(ts)):
                raise ValueError("speed_profile times must increase strictly")
            if any(p[1] < 0 for p in prof):
                raise ValueError("speed_profile speeds must be >= 0")
        return self

    def speed_at(self, t: float) -> float:
        """Ego speed at time ``t`` (m/s); the profile is held constant beyond its ends."""
        if self.speed_profile is None:
            return float(self.speed)
        ts, vs = zip(*self.speed_profile, strict=True)
        return float(np.interp(t, ts, vs))


class _Motion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstantVelocityMotion(_Motion):
    """Constant ground velocity (vx, vy) in m/s."""

    pattern: Literal["constant_velocity"] = "constant_velocity"
    velocity: tuple[float, float] = (0.0, 0.0)


class LaneChangeMotion(_Motion):
    """Cut-in / lane change: longitudinal ``speed`` and a minimum-jerk lateral move.

    The lateral move of ``lateral_offset`` m (+ left) takes ``duration`` s and starts at
    ``start_time`` or, if given, when ``start_trigger`` first fires.
    """

    pattern: Literal["lane_change"] = "lane_change"
    speed: float = 10.0
    lateral_offset: float = -3.5
    duration: float = Field(default=3.0, gt=0.0)
    start_time: float = Field(default=0.0, ge=0.0)
    start_trigger: TriggerConfig | None = None


class CrossingMotion(_Motion):
    """Road crossing: walk at ``speed`` along ``heading_deg`` (world, CCW from +x), ``distance`` m.

    Waits at its initial position until ``start_time`` (or ``start_trigger``), stops at the end.
    """

    pattern: Literal["crossing"] = "crossing"
    speed: float = Field(default=1.4, gt=0.0)
    heading_deg: float = -90.0
    distance: float = Field(default=8.0, gt=0.0)
    start_time: float = Field(default=0.0, ge=0.0)
    start_trigger: TriggerConfig | None = None


class StopAndGoMotion(_Motion):
    """Traffic-jam lead: drives at ``speed`` for ``go_time`` s, stops for ``stop_time`` s, repeats.

    Speed changes are limited to ``accel`` m/s²; ``phase`` shifts the cycle (s).
    """

    pattern: Literal["stop_and_go"] = "stop_and_go"
    speed: float = Field(default=8.0, ge=0.0)
    go_time: float = Field(default=5.0, gt=0.0)
    stop_time: float = Field(default=3.0, gt=0.0)
    accel: float = Field(default=2.0, gt=0.0)
    phase: float = 0.0
    initial_speed: float | None = Field(default=None, ge=0.0)


class RandomWalkMotion(_Motion):
    """Random walk in velocity (white-noise acceleration ``sigma_accel`` m/s²/√Hz), speed-capped."""

    pattern: Literal["random_walk"] = "random_walk"
    velocity: tuple[float, float] = (0.0, 0.0)
    sigma_accel: float = Field(default=0.5, ge=0.0)
    max_speed: float = Field(default=2.0, gt=0.0)


class TrafficMotion(_Motion):
    """Traffic that keeps the ego company for any duration (long soak drives): the gap ahead
    oscillates, ``x(t) = position.x + amplitude · sin(2π (t + phase) / period)`` in the ego
    frame (so it moves with the ego's speed profile), and every ``lane_period`` s the actor
    changes lane (minimum jerk over ``lane_change_s``) to the next of ``lanes`` (ego-frame
    lateral offsets, visited in turn after its starting one; empty: it keeps its lane).
    Only for actors whose ``position`` is in the ego frame.
    """

    pattern: Literal["traffic"] = "traffic"
    amplitude: float = Field(default=10.0, ge=0.0)
    period: float = Field(default=120.0, gt=0.0)
    phase: float = 0.0
    lanes: list[float] = Field(default_factory=list)
    lane_period: float = Field(default=60.0, gt=0.0)
    lane_change_s: float = Field(default=4.0, gt=0.0)
    lane_phase: float = 0.0

    @model_validator(mode="after")
    def _change_fits(self) -> TrafficMotion:
        if self.lane_change_s > self.lane_period:
            raise ValueError("lane_change_s must not exceed lane_period")
        return self


MotionConfig = Annotated[
    ConstantVelocityMotion
    | LaneChangeMotion
    | CrossingMotion
    | StopAndGoMotion
    | RandomWalkMotion
    | TrafficMotion,
    Field(discriminator="pattern"),
]


class ActorConfig(BaseModel):
    """One actor: id, kind, footprint, initial position and motion pattern.

    ``position`` is in the ego frame at t = 0 (``frame="ego"``, default) or in the world frame.
    Velocities in motion patterns are ground (world) velocities. ``size`` is (length, width) m;
    defaults depend on ``kind`` (see :data:`DEFAULT_SIZES`), as does ``height``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0)
    kind: Kind = "vehicle"
    size: tuple[float, float] | None = None
    height: float | None = Field(default=None, gt=0.0)
    position: tuple[float, float]
    frame: Literal["ego", "world"] = "ego"
    motion: MotionConfig = Field(default_factory=ConstantVelocityMotion)

    @model_validator(mode="after")
    def _check(self) -> ActorConfig:
        if self.size is not None and (self.size[0] <= 0 or self.size[1] <= 0):
            raise ValueError("size (length, width) must be positive")
        if self.motion.pattern == "traffic" and self.frame != "ego":
            raise ValueError("traffic motion needs an ego-frame position (frame: ego)")
        return self

    def footprint(self) -> tuple[float, float, float]:
        """(length, width, height) with the kind's defaults filled in."""
        d = DEFAULT_SIZES[self.kind]
        length, width = self.size if self.size is not None else d[:2]
        return float(length), float(width), float(self.height if self.height is not None else d[2])


class WorldConfig(BaseModel):
    """The world: ego motion and actors (ids must be unique)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ego: EgoConfig = Field(default_factory=EgoConfig)
    actors: list[ActorConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> WorldConfig:
        ids = [a.id for a in self.actors]
        if len(ids) != len(set(ids)):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"actor ids must be unique, duplicated: {dup}")
        return self


# ----------------------------------------------------------------------------- truth
@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth at one instant (SoA, ego frame: x forward, y left).

    ``positions`` (N, 2) m, ``velocities`` (N, 2) m/s relative to ego, ``sizes`` (N, 2)
    (length, width), ``heights`` (N,), ``kinds`` (N,) int codes into :data:`KINDS`
    (= Detections labels), ``speed`` the ego speed, ``ego_position`` its world position.
    """

    t: float
    ids: IntArray
    kinds: IntArray
    positions: FloatArray
    velocities: FloatArray
    sizes: FloatArray
    heights: FloatArray
    speed: float
    ego_position: FloatArray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def ranges(self) -> FloatArray:
        """Distance of each actor centre from the ego origin (m)."""
        return np.hypot(self.positions[:, 0], self.positions[:, 1])

    @property
    def azimuths(self) -> FloatArray:
        """Bearing of each actor centre (rad, CCW from x forward)."""
        return np.arctan2(self.positions[:, 1], self.positions[:, 0])

    def bearings(self) -> FloatArray:
        """:attr:`azimuths`, computed once per instant and read-only (the sensors' shared copy)."""
        d = self.__dict__
        az: FloatArray | None = d.get("_bearings")
        if az is None:
            pos = self.positions
            az = np.arctan2(pos[:, 1], pos[:, 0])
            az.setflags(write=False)
            d["_bearings"] = az
        return az

    @property
    def range_rates(self) -> FloatArray:
        """Radial component of relative velocity (m/s, negative = approaching)."""
        r = np.maximum(self.ranges, 1e-9)
        return np.einsum("ij,ij->i", self.positions, self.velocities) / r

    def kind_names(self) -> list[str]:
        """Kinds as strings."""
        return [KINDS[k] for k in self.kinds]

    def subset(self, index: NDArray[np.bool_] | IntArray) -> Truth:
        """The actors selected by a mask or index."""
        i = np.asarray(index)
        return Truth(
            self.t,
            self.ids[i],
            self.kinds[i],
            self.positions[i],
            self.velocities[i],
            self.sizes[i],
            self.heights[i],
            self.speed,
            self.ego_position,
        )

    def context(self, supervisor_state: object = None) -> TriggerContext:
        """A trigger context for this instant."""
        return TriggerContext.from_truth(self, supervisor_state)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- world
def _read_only(a: NDArray[Any]) -> NDArray[Any]:
    """A read-only copy of ``a``."""
    c = a.copy()
    c.setflags(write=False)
    return c


def _min_jerk(tau: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Minimum-jerk profile s(τ) = 10τ³ − 15τ⁴ + 6τ⁵ and ds/dτ, τ clipped to [0, 1]."""
    c = np.clip(tau, 0.0, 1.0)
    s = c**3 * (10.0 + c * (-15.0 + 6.0 * c))
    ds = 30.0 * c**2 * (1.0 - c) ** 2
    return s, ds


class World:
    """Steps actors and ego forward; ``truth()`` returns the state in the ego frame.

    Actors of one motion pattern are advanced together with array operations. Random-walk
    actors draw from a generator built from ``seed_seq`` (the runner hands the "world" child).
    """

    def __init__(self, cfg: WorldConfig, seed_seq: SeedSequence | int = 0) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(root(seed_seq))
        # truth()'s read-only copies of ids, kinds, sizes, heights (with what they copy)
        self._const: tuple[NDArray[Any], ...] | None = None
        actors = cfg.actors
        n = len(actors)
        self.t = 0.0
        self._ego_pos = np.asarray(cfg.ego.start, dtype=np.float64).copy()
        self.ego_speed = cfg.ego.speed_at(0.0)
        self.ids = np.array([a.id for a in actors], dtype=np.int64)
        self.kinds = np.array([kind_code(a.kind) for a in actors], dtype=np.int64)
        fp = np.array([a.footprint() for a in actors], dtype=np.float64).reshape(n, 3)
        self.sizes = fp[:, :2].copy()
        self.heights = fp[:, 2].copy()
        pos = np.array([a.position for a in actors], dtype=np.float64).reshape(n, 2)
        ego_frame = np.array([a.frame == "ego" for a in actors], dtype=bool)
        pos[ego_frame] += self._ego_pos
        self.pos = pos
        self.p0 = pos.copy()
        self.vel = np.zeros((n, 2))
        patterns = [a.motion.pattern for a in actors]
        self._groups: dict[str, IntArray] = {
            p: np.array([i for i, q in enumerate(patterns) if q == p], dtype=np.int64)
            for p in (
                "constant_velocity", "lane_change", "crossing", "stop_and_go", "random_walk",
                "traffic",
            )
        }
        m = [a.motion for a in actors]
        # groups are built in actor order, so a full constant-velocity group is every actor
        self._cv_all = n > 0 and len(self._groups["constant_velocity"]) == n
        self._others = len(self._groups["constant_velocity"]) < n

        def param(name: str, pattern: str) -> FloatArray:
            return np.array([getattr(m[i], name) for i in self._groups[pattern]], dtype=np.float64)

        # constant velocity / random walk: initial velocity
        for p in ("constant_velocity", "random_walk"):
            idx = self._groups[p]
            if len(idx):
                self.vel[idx] = np.array([m[i].velocity for i in idx], dtype=np.float64)
        # start times (lane change, crossing); inf until a trigger fires
        self.t_start = np.full(n, np.inf)
        self._start_triggers: dict[int, Trigger] = {}
        for p in ("lane_change", "crossing"):
            for i in self._groups[p]:
                mi = m[i]
                trig = mi.start_trigger
                if trig is None:
                    self.t_start[i] = mi.start_time
                else:
                    self._start_triggers[int(i)] = Trigger(trig)
        lc = self._groups["lane_change"]
        self._lc_speed = param("speed", "lane_change")
        self._lc_offset = param("lateral_offset", "lane_change")
        self._lc_duration = param("duration", "lane_change")
        self.vel[lc, 0] = self._lc_speed
        cr = self._groups["crossing"]
        head = np.deg2rad(param("heading_deg", "crossing"))
        self._cr_dir = (
            np.column_stack([np.cos(head), np.sin(head)]) if len(cr) else np.zeros((0, 2))
        )
        self._cr_speed = param("speed", "crossing")
        self._cr_distance = param("distance", "crossing")
        sg = self._groups["stop_and_go"]
        self._sg_speed = param("speed", "stop_and_go")
        self._sg_go = param("go_time", "stop_and_go")
        self._sg_stop = param("stop_time", "stop_and_go")
        self._sg_accel = param("accel", "stop_and_go")
        self._sg_phase = param("phase", "stop_and_go")
        init = np.array(
            [m[i].initial_speed if m[i].initial_speed is not None else m[i].speed for i in sg],
            dtype=np.float64,
        )
        self.vel[sg, 0] = init
        rw = self._groups["random_walk"]
        self._rw_sigma = param("sigma_accel", "random_walk")
        self._rw_max = param("max_speed", "random_walk")
        del rw
        tf = self._groups["traffic"]
        self._tf_gap = np.array([actors[i].position[0] for i in tf], dtype=np.float64)
        self._tf_amp = param("amplitude", "traffic")
        self._tf_period = param("period", "traffic")
        self._tf_phase = param("phase", "traffic")
        self._tf_lane_period = param("lane_period", "traffic")
        self._tf_lane_change = param("lane_change_s", "traffic")
        self._tf_lane_phase = param("lane_phase", "traffic")
        self._tf_lanes = [
            np.array([actors[i].position[1], *m[i].lanes], dtype=np.float64) for i in tf
        ]
        if len(tf):
            self._step_traffic(0.0)

    # ------------------------------------------------------------------ stepping
    def step(self, dt: float) -> Truth:
        """Advance by ``dt`` seconds and return the new truth."""
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        if self._start_triggers:
            ctx = self.truth().context()
            for i, trig in list(self._start_triggers.items()):
                if trig.evaluate(ctx):
                    self.t_start[i] = self.t
                    del self._start_triggers[i]
        t0, t1 = self.t, round(self.t + dt, 9)  # no drift from summing dt (1 ns grid)
        ego = self.cfg.ego
        if ego.speed_profile is None:  # constant speed (what speed_at returns)
            v0 = v1 = float(ego.speed)
        else:
            v0, v1 = ego.speed_at(t0), ego.speed_at(t1)
        self._ego_pos[0] += 0.5 * (v0 + v1) * dt
        self.ego_speed = v1
        self._step_cv(dt)
        if self._others:
            self._step_lane_change(dt, t1)
            self._step_crossing(t1)
            self._step_stop_and_go(dt, t1)
            self._step_random_walk(dt)
            self._step_traffic(t1)
        self.t = t1
        return self.truth()

    def _step_cv(self, dt: float) -> None:
        if self._cv_all:  # every actor (in order): the same update without fancy indexing
            self.pos += self.vel * dt
            return
        idx = self._groups["constant_velocity"]
        if len(idx):
            self.pos[idx] += self.vel[idx] * dt

    def _step_lane_change(self, dt: float, t1: float) -> None:
        idx = self._groups["lane_change"]
        if not len(idx):
            return
        self.pos[idx, 0] += self._lc_speed * dt
        with np.errstate(invalid="ignore"):
            tau = (t1 - self.t_start[idx]) / self._lc_duration
        tau = np.nan_to_num(tau, nan=0.0, neginf=0.0)
        s, ds = _min_jerk(tau)
        moving = (tau > 0.0) & (tau < 1.0)
        self.pos[idx, 1] = self.p0[idx, 1] + self._lc_offset * s
        self.vel[idx, 1] = np.where(moving, self._lc_offset * ds / self._lc_duration, 0.0)

    def _step_crossing(self, t1: float) -> None:
        idx = self._groups["crossing"]
        if not len(idx):
            return
        elapsed = np.maximum(t1 - self.t_start[idx], 0.0)  # inf start → -inf → 0
        travelled = np.minimum(self._cr_speed * elapsed, self._cr_distance)
        self.pos[idx] = self.p0[idx] + travelled[:, None] * self._cr_dir
        moving = (elapsed > 0.0) & (travelled < self._cr_distance)
        self.vel[idx] = np.where(moving[:, None], self._cr_speed[:, None] * self._cr_dir, 0.0)

    def _step_stop_and_go(self, dt: float, t1: float) -> None:
        idx = self._groups["stop_and_go"]
        if not len(idx):
            return
        cycle = self._sg_go + self._sg_stop
        going = np.mod(t1 + self._sg_phase, cycle) < self._sg_go
        target = np.where(going, self._sg_speed, 0.0)
        v = self.vel[idx, 0]
        dv = np.clip(target - v, -self._sg_accel * dt, self._sg_accel * dt)
        v_new = v + dv
        self.pos[idx, 0] += 0.5 * (v + v_new) * dt
        self.vel[idx, 0] = v_new
        self.vel[idx, 1] = 0.0

    def _step_random_walk(self, dt: float) -> None:
        idx = self._groups["random_walk"]
        if not len(idx):
            return
        noise = self.rng.normal(0.0, 1.0, (len(idx), 2)) * (self._rw_sigma * np.sqrt(dt))[:, None]
        v = self.vel[idx] + noise
        speed = np.hypot(v[:, 0], v[:, 1])
        scale = np.minimum(1.0, self._rw_max / np.maximum(speed, 1e-12))
        v = v * scale[:, None]
        self.pos[idx] += 0.5 * (self.vel[idx] + v) * dt
        self.vel[idx] = v

    def _step_traffic(self, t1: float) -> None:
        idx = self._groups["traffic"]
        if not len(idx):
            return
        w = 2.0 * np.pi / self._tf_period
        arg = w * (t1 + self._tf_phase)
        gap = self._tf_gap + self._tf_amp * np.sin(arg)
        dgap = self._tf_amp * w * np.cos(arg)
        tl = t1 + self._tf_lane_phase
        k = np.floor(tl / self._tf_lane_period).astype(np.int64)
        tau = (tl - k * self._tf_lane_period) / self._tf_lane_change
        s, ds = _min_jerk(tau)
        sizes = np.array([len(v) for v in self._tf_lanes], dtype=np.int64)
        lanes = [self._tf_lanes[j] for j in range(len(idx))]
        now = np.array([lanes[j][k[j] % sizes[j]] for j in range(len(idx))])
        before = np.array([lanes[j][(k[j] - 1) % sizes[j]] if k[j] > 0 else now[j]
                           for j in range(len(idx))])
        y = before + (now - before) * s
        vy = (now - before) * ds / self._tf_lane_change * ((tau > 0) & (tau < 1))
        self.pos[idx, 0] = self._ego_pos[0] + gap
        self.pos[idx, 1] = self._ego_pos[1] + y
        self.vel[idx, 0] = self.ego_speed + dgap
        self.vel[idx, 1] = vy

    # ------------------------------------------------------------------ output
    @property
    def ego_position(self) -> FloatArray:
        """Ego world position (m)."""
        return self._ego_pos.copy()

    def truth(self) -> Truth:
        """Ground truth now, in the ego frame (safe to keep: fresh arrays, and read-only copies
        of the actors' constant ids, kinds and sizes, shared by every instant)."""
        const = self._const
        if const is None or const[0] is not self.ids or const[1] is not self.kinds or (
            const[2] is not self.sizes or const[3] is not self.heights
        ):
            const = self._const = (self.ids, self.kinds, self.sizes, self.heights,
                                   *(_read_only(a) for a in (
                                       self.ids, self.kinds, self.sizes, self.heights)))
        speed = float(self.ego_speed)
        truth = object.__new__(Truth)  # Truth's fields, set as its frozen __init__ would
        truth.__dict__.update(
            t=float(self.t),
            ids=const[4],
            kinds=const[5],
            positions=self.pos - self._ego_pos,
            velocities=self.vel - np.array([speed, 0.0]),
            sizes=const[6],
            heights=const[7],
            speed=speed,
            ego_position=self._ego_pos.copy(),
        )
        return truth
