"""Confidence gating with hysteresis and debounce: a channel whose detector has lost confidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

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
