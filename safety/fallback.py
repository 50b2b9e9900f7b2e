"""Minimal-risk manoeuvre: pick the gentlest stopping tier that still stops before an obstacle.

Tiers go from comfortable stop to emergency stop, each with a deceleration limit (m/s²). Without
an ego speed the comfortable stop is commanded; if even the strongest tier cannot stop in time,
the strongest is still commanded and the outcome says "failed", so it is never silent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from safety.crosscheck import VouchedObject

Outcome = Literal["commanded", "failed"]


class FallbackTier(BaseModel):
    """One way of stopping: a name and the deceleration it may command (m/s²)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    deceleration: float = Field(gt=0)


class FallbackConfig(BaseModel):
    """MRM tiers (gentlest first) and the geometry used to judge whether a tier suffices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[FallbackTier] = Field(
        default_factory=lambda: [
            FallbackTier(name="comfortable_stop", deceleration=2.0),
            FallbackTier(name="emergency_stop", deceleration=6.0),
        ],
        min_length=1,
    )
    path_half_width_m: float = Field(default=1.5, gt=0)  # lateral extent of the ego path
    stop_margin_m: float = Field(default=2.0, ge=0)  # keep this gap to the obstacle
    actuation_delay_s: float = Field(default=0.2, ge=0)  # before braking takes effect

    @model_validator(mode="after")
    def _tiers_ordered(self) -> FallbackConfig:
        names = [t.name for t in self.tiers]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"@tiers.{i}.name: duplicate tier name {n!r}")
        for i in range(1, len(self.tiers)):
            if self.tiers[i].deceleration <= self.tiers[i - 1].deceleration:
                raise ValueError(
                    f"@tiers.{i}.deceleration: tiers must go from gentlest to strongest "
                    f"({self.tiers[i].deceleration} m/s² is not above "
                    f"{self.tiers[i - 1].deceleration} m/s²)"
                )
        return self


@dataclass(frozen=True)
class MrmCommand:
    """What the minimal-risk manoeuvre commands and whether it can succeed."""

    tier: str  # tier name ("none" when no tier could be commanded)
    deceleration: float  # m/s² commanded
    reason: str
    outcome: Outcome  # "failed": cannot stop in time even at the strongest tier, or no tier
    t: float = 0.0
    required_deceleration: float | None = None  # to stop before the nearest in-path object
    obstacle_distance: float | None = None  # metres to the nearest in-path object

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit log."""
        return {
            "tier": self.tier, "deceleration": self.deceleration, "reason": self.reason,
            "outcome": self.outcome, "t": self.t,
            "required_deceleration": self.required_deceleration,
            "obstacle_distance": self.obstacle_distance,
        }


def nearest_in_path(objects: Sequence[VouchedObject], half_width: float) -> float | None:
    """Longitudinal distance (m) to the nearest object ahead inside the ego path, if any."""
    if not objects:
        return None
    pos = np.array([o.position for o in objects], dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(pos).all(axis=1) & (pos[:, 0] > 0.0) & (np.abs(pos[:, 1]) <= half_width)
    if not ok.any():
        return None
    return float(pos[ok, 0].min())


def required_deceleration(speed: float, distance: float, cfg: FallbackConfig) -> float:
    """Deceleration (m/s²) needed to stop from ``speed`` within ``distance`` minus margin/delay."""
    if speed <= 0.0:
        return 0.0
    room = distance - cfg.stop_margin_m - speed * cfg.actuation_delay_s
    if room <= 0.0:
        return math.inf
    return speed * speed / (2.0 * room)


def plan_mrm(
    t: float,
    objects: Sequence[VouchedObject],
    ego_speed: float | None,
    cfg: FallbackConfig,
    reason: str,
    *,
    available: Sequence[str] | None = None,
    at_least: str | None = None,
) -> MrmCommand:
    """Choose the gentlest commandable tier whose deceleration stops before the nearest object.

    ``objects`` must be in the ground frame (metres, x forward). ``available`` restricts the tiers
    that can be commanded (None: all); ``at_least`` keeps the tier from getting gentler than one
    already commanded. No ego speed → comfortable (gentlest) tier.
    """
    tiers = [tr for tr in cfg.tiers if available is None or tr.name in available]
    if at_least is not None:
        names = [tr.name for tr in cfg.tiers]
        if at_least in names:
            floor = cfg.tiers[names.index(at_least)].deceleration
            tiers = [tr for tr in tiers if tr.deceleration >= floor] or tiers[-1:]
    if not tiers:
        return MrmCommand("none", 0.0, f"{reason} No stopping tier can be commanded.", "failed", t)
    speed = None if ego_speed is None or not math.isfinite(ego_speed) else abs(float(ego_speed))
    dist = nearest_in_path(objects, cfg.path_half_width_m)
    if speed is None or dist is None:
        tier = tiers[0]
        return MrmCommand(tier.name, tier.deceleration, reason, "commanded", t, None, dist)
    need = required_deceleration(speed, dist, cfg)
    for tier in tiers:
        if tier.deceleration >= need:
            return MrmCommand(tier.name, tier.deceleration, reason, "commanded", t, need, dist)
    strongest = tiers[-1]
    why = (
        f"{reason} Even {strongest.name.replace('_', ' ')} ({strongest.deceleration:g} m/s²) "
        f"cannot stop before the object {dist:.1f} m ahead."
    )
    return MrmCommand(strongest.name, strongest.deceleration, why, "failed", t, need, dist)
