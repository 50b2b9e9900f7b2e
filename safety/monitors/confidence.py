"""Confidence gating with hysteresis and debounce: a channel whose detector has lost confidence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from perception.kernels import IN1, compiled, pairwise_sum
from safety.channels import ChannelConfig
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import ChannelSet, MonitorSettings, finding, is_valid, label


class ConfidenceConfig(MonitorSettings):
    """Raise when the mean score stays below ``enter`` for ``enter_steps`` steps; clear only after
    it stays above the higher ``exit`` for ``exit_steps`` steps (a band, so it cannot flap)."""

    source: Literal["detections", "tracks"] = "detections"  # tracks: confirmed, updated tracks
    enter: float = Field(default=0.3, ge=0, le=1)
    exit: float = Field(default=0.45, ge=0, le=1)
    enter_steps: int = Field(default=5, ge=1)
    exit_steps: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _band(self) -> ConfidenceConfig:
        if self.enter >= self.exit:
            raise ValueError(
                f"inverted hysteresis band: enter ({self.enter}) must be below exit ({self.exit}), "
                "otherwise a score between them would raise and clear at once"
            )
        return self


@dataclass
class _Gate:
    low: bool = False
    below: int = 0  # consecutive samples under enter
    above: int = 0  # consecutive samples over exit
    last: float = float("nan")


class ConfidenceMonitor:
    """Per channel: debounced, hysteretic gate on the mean detection (or track) score."""

    spec = MonitorSpec(
        name="confidence",
        watches="mean score of each channel's detections (or confirmed, updated tracks)",
        threshold="below `enter` for enter_steps samples raises; above the higher `exit` for "
        "exit_steps samples clears; steps without detections leave the gate as it is",
        impact=Impact.CHANNEL,
        kinds=("confidence.low",),
    )

    def __init__(self, cfg: ConfidenceConfig, channels: Sequence[ChannelConfig]) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self._gates: dict[str, _Gate] = {}

    def reset(self) -> None:
        """Every gate back to 'confident'."""
        self._gates.clear()

    def _score(self, obs: ChannelObservation | None) -> float | None:
        if not is_valid(obs) or obs is None:
            return None
        if self.cfg.source == "tracks":
            tr = obs.tracks
            if tr is None or len(tr) == 0:
                return None
            sel = tr.confirmed & tr.updated
            s = np.asarray(tr.scores)[sel]
        else:
            if obs.detections is None or len(obs.detections) == 0:
                return None
            s = np.asarray(obs.detections.scores)
            if s.dtype == np.float64 and s.ndim == 1:
                return _finite_mean(s)
        s = s[np.isfinite(s)]
        n = s.size
        return float(s.sum()) / n if n else None  # the mean, as s.mean() (without its overhead)

    def observe(self, ctx: StepContext) -> list[Finding]:
        """A ``confidence.low`` finding for every channel whose gate is closed this step."""
        out: list[Finding] = []
        c = self.cfg
        for name, _ch, obs in self.channels.visit(ctx):
            g = self._gates.get(name)
            if g is None:  # built only when new (not a throwaway default every step)
                g = self._gates[name] = _Gate()
            score = self._score(obs)
            if score is not None:
                g.last = score
                g.below = g.below + 1 if score < c.enter else 0
                g.above = g.above + 1 if score > c.exit else 0
                if not g.low and g.below >= c.enter_steps:
                    g.low = True
                elif g.low and g.above >= c.exit_steps:
                    g.low = False
            if g.low:
                out.append(
                    finding(
                        self.spec,
                        "confidence.low",
                        ctx.t,
                        f"The detections of {label(name)} have low confidence: mean score "
                        f"{g.last:.2f}, below {c.enter:.2f} for {c.enter_steps} steps; it clears "
                        f"after {c.exit_steps} steps above {c.exit:.2f}.",
                        channel=name,
                        value=g.last,
                        threshold=c.enter,
                    )
                )
        return out


@compiled(nb.types.Tuple((nb.float64, nb.int64))(IN1))
def _finite_total(s):
    """Sum (in ``ndarray.sum``'s pairwise order) and count of the finite entries of ``s``."""
    n = s.shape[0]
    sel = np.empty(n)
    k = 0
    for i in range(n):
        if np.isfinite(s[i]):
            sel[k] = s[i]
            k += 1
    return pairwise_sum(sel, 0, k), k


def _finite_mean(s: NDArray[np.float64]) -> float | None:
    """``s[np.isfinite(s)]``'s mean as ``float(sum) / n`` (None if empty), bit for bit: a few
    scores are summed in order from 0.0 in Python (what numpy's sum does below 8 values), more
    in one kernel call."""
    if s.shape[0] < 8:
        total = 0.0
        n = 0
        for v in s.tolist():
            if math.isfinite(v):
                total += v
                n += 1
    else:
        total, n = _finite_total(s)
    return total / n if n else None
