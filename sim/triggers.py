"""Start/stop triggers in the manner of ASAM OpenSCENARIO: an OR of AND groups of conditions.

Each condition has a rule, an ``edge`` (rising / falling / rising_or_falling / none) and a
``delay``; a trigger fires when every condition of at least one group holds. ``at: 5.0`` is
shorthand for "simulation time >= 5 s". Triggers are stateful (edges need the previous value).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Condition",
    "ConditionConfig",
    "DistanceCondition",
    "Edge",
    "EgoSpeedCondition",
    "SimulationTimeCondition",
    "SupervisorStateCondition",
    "Trigger",
    "TriggerConfig",
    "TriggerContext",
    "as_trigger_config",
]

Edge = Literal["rising", "falling", "rising_or_falling", "none"]
Rule = Literal["greater", "less", "greater_equal", "less_equal"]


@dataclass
class TriggerContext:
    """What a condition may look at: time, ego speed, actor positions (ego frame), supervisor state.

    ``supervisor_state`` is a value (e.g. ``"DEGRADED"``) or a callable returning one, so the
    runner can hand in ``lambda: supervisor.state`` without copying it each step.
    """

    t: float
    ego_speed: float = 0.0
    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    positions: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    supervisor_state: str | Callable[[], Any] | None = None

    def state(self) -> str | None:
        """The supervisor state as a string (calling it if it is a callable)."""
        s = self.supervisor_state
        if callable(s):
            s = s()
        return None if s is None else str(s)

    @classmethod
    def from_truth(
        cls, truth: Any, supervisor_state: str | Callable[[], Any] | None = None
    ) -> TriggerContext:
        """Build from a :class:`sim.world.Truth` (anything with t, speed, ids, positions)."""
        return cls(
            t=float(truth.t),
            ego_speed=float(truth.speed),
            ids=np.asarray(truth.ids),
            positions=np.asarray(truth.positions),
            supervisor_state=supervisor_state,
        )


class _ConditionBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edge: Edge = "none"
    delay: float = Field(default=0.0, ge=0.0)


class SimulationTimeCondition(_ConditionBase):
    """Simulation time compared with ``value`` (s)."""

    kind: Literal["simulation_time"] = "simulation_time"
    rule: Rule = "greater"
    value: float

    def raw(self, ctx: TriggerContext) -> bool:
        return _compare(ctx.t, self.rule, self.value)


class DistanceCondition(_ConditionBase):
    """Distance from ego to actor ``actor`` (or to the nearest actor if None) vs ``value`` (m).

    With no actor present (or the named actor absent) the distance is +inf.
    """

    kind: Literal["distance"] = "distance"
    actor: int | None = None
    rule: Rule = "less"
    value: float = Field(ge=0.0)

    def raw(self, ctx: TriggerContext) -> bool:
        pos = np.asarray(ctx.positions, dtype=np.float64).reshape(-1, 2)
        if self.actor is not None:
            pos = pos[np.asarray(ctx.ids) == self.actor]
        d = float(np.hypot(pos[:, 0], pos[:, 1]).min()) if len(pos) else float("inf")
        return _compare(d, self.rule, self.value)


class EgoSpeedCondition(_ConditionBase):
    """Ego speed compared with ``value`` (m/s)."""

    kind: Literal["ego_speed"] = "ego_speed"
    rule: Rule = "greater"
    value: float

    def raw(self, ctx: TriggerContext) -> bool:
        return _compare(ctx.ego_speed, self.rule, self.value)


class SupervisorStateCondition(_ConditionBase):
    """The supervisor's health state is one of ``states`` (``negate``: none of); unknown → False."""

    kind: Literal["supervisor_state"] = "supervisor_state"
    states: list[str] = Field(min_length=1)
    negate: bool = False

    def raw(self, ctx: TriggerContext) -> bool:
        s = ctx.state()
        if s is None:  # unknown state: the condition cannot be asserted either way
            return False
        inside = s.upper() in {x.upper() for x in self.states}
        return inside != self.negate


ConditionConfig = Annotated[
    SimulationTimeCondition | DistanceCondition | EgoSpeedCondition | SupervisorStateCondition,
    Field(discriminator="kind"),
]


class TriggerConfig(BaseModel):
    """OR of AND groups (``any_of: [[cond, cond], [cond]]``), or the shorthand ``at: <time>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float | None = Field(default=None, ge=0.0)
    any_of: list[list[ConditionConfig]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"at": float(data)}
        return data

    @model_validator(mode="after")
    def _check(self) -> TriggerConfig:
        if self.at is None and not self.any_of:
            raise ValueError("a trigger needs 'at' or at least one condition group in 'any_of'")
        if any(len(group) == 0 for group in self.any_of):
            raise ValueError("condition groups in 'any_of' must not be empty")
        return self

    def groups(self) -> list[list[Any]]:
        """All condition groups, with ``at`` expanded to a simulation-time condition."""
        groups: list[list[Any]] = [list(g) for g in self.any_of]
        if self.at is not None:
            groups.append([SimulationTimeCondition(rule="greater_equal", value=self.at)])
        return groups


def as_trigger_config(value: TriggerConfig | float | dict[str, Any] | None) -> TriggerConfig | None:
    """Accept a config, a bare time, or a mapping (convenience for code building configs)."""
    if value is None or isinstance(value, TriggerConfig):
        return value
    return TriggerConfig.model_validate(value)


class Condition:
    """One stateful condition: raw rule → edge detection → delay."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._prev: bool | None = None
        self._pending: deque[float] = deque()  # fire times of delayed edge events
        self._history: deque[tuple[float, bool]] = deque()  # (t, level) for delayed levels

    def reset(self) -> None:
        """Forget the previous value and anything pending."""
        self._prev = None
        self._pending.clear()
        self._history.clear()

    def evaluate(self, ctx: TriggerContext) -> bool:
        """Whether the condition holds at ``ctx.t`` (edges hold only at the step they occur)."""
        value = bool(self.cfg.raw(ctx))
        prev, self._prev = self._prev, value
        edge: Edge = self.cfg.edge
        delay = float(self.cfg.delay)
        t = float(ctx.t)
        if edge == "none":
            if delay == 0.0:
                return value
            self._history.append((t, value))
            cutoff = t - delay + 1e-12
            while len(self._history) >= 2 and self._history[1][0] <= cutoff:
                self._history.popleft()
            if self._history and self._history[0][0] <= cutoff:
                return self._history[0][1]
            return False
        fired = prev is not None and (
            (edge == "rising" and value and not prev)
            or (edge == "falling" and prev and not value)
            or (edge == "rising_or_falling" and value != prev)
        )
        if delay == 0.0:
            return fired
        if fired:
            self._pending.append(t + delay)
        if self._pending and self._pending[0] <= t + 1e-12:
            while self._pending and self._pending[0] <= t + 1e-12:
                self._pending.popleft()
            return True
        return False


class Trigger:
    """A stateful trigger: ``evaluate(ctx)`` is True when all conditions of some group hold.

    Every condition is evaluated each step (no short-circuit), so edge state stays correct.
    """

    def __init__(self, cfg: TriggerConfig | float | dict[str, Any]) -> None:
        cfg_ = as_trigger_config(cfg)
        assert cfg_ is not None
        self.cfg: TriggerConfig = cfg_
        self.groups: list[list[Condition]] = [[Condition(c) for c in g] for g in cfg_.groups()]

    def reset(self) -> None:
        """Reset every condition's edge and delay state."""
        for group in self.groups:
            for cond in group:
                cond.reset()

    def evaluate(self, ctx: TriggerContext) -> bool:
        """Evaluate all conditions at ``ctx`` and combine them (OR over groups of AND)."""
        results = [[c.evaluate(ctx) for c in group] for group in self.groups]
        return any(all(group) for group in results)

    def describe(self) -> str:
        """A short human-readable rendering, e.g. ``t > 5`` or ``(distance < 10 and ...)``."""
        parts = []
        for group in self.cfg.groups():
            parts.append(" and ".join(_describe(c) for c in group))
        return " or ".join(f"({p})" if " and " in p and len(parts) > 1 else p for p in parts)


def _describe(c: Any) -> str:
    op = {"greater": ">", "less": "<", "greater_equal": ">=", "less_equal": "<="}
    if isinstance(c, SimulationTimeCondition):
        s = f"t {op[c.rule]} {c.value:g}"
    elif isinstance(c, DistanceCondition):
        who = "nearest actor" if c.actor is None else f"actor {c.actor}"
        s = f"distance to {who} {op[c.rule]} {c.value:g} m"
    elif isinstance(c, EgoSpeedCondition):
        s = f"ego speed {op[c.rule]} {c.value:g} m/s"
    else:
        s = f"supervisor state {'not ' if c.negate else ''}in {c.states}"
    if c.edge != "none":
        s += f" ({c.edge} edge)"
    if c.delay:
        s += f" after {c.delay:g} s"
    return s


def _compare(x: float, rule: Rule, value: float) -> bool:
    if rule == "greater":
        return x > value
    if rule == "less":
        return x < value
    if rule == "greater_equal":
        return x >= value - 1e-9  # tolerant of accumulated step times
    return x <= value + 1e-9


def evaluate_all(triggers: Sequence[Trigger], ctx: TriggerContext) -> list[bool]:
    """Evaluate several triggers at one context (convenience for the runner)."""
    return [trig.evaluate(ctx) for trig in triggers]
