"""Channel liveness: silence beyond the timeout, delivery rate below a floor, latency."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    ChannelSet,
    MonitorSettings,
    label,
    measurement_time,
)


class LivenessConfig(MonitorSettings):
    """Rate floor = ``min_rate_fraction`` · expected rate over ``rate_window_s``; latency bound."""

    rate_window_s: float = Field(default=2.0, gt=0)
    min_rate_fraction: float = Field(default=0.5, gt=0, le=1)
    max_latency_s: float = Field(default=0.3, gt=0)


@dataclass
class _ChannelState:
    last_valid: float | None = None
    arrivals: deque[float] = field(default_factory=deque)


class LivenessMonitor:
    """Per channel: is valid input still arriving, often enough, and fresh enough?"""

    spec = MonitorSpec(
        name="liveness",
        watches="valid-input arrivals and measurement timestamps of each channel",
        threshold="no valid input for > channel timeout_s; received rate over a window below a "
        "fraction of expected_rate_hz; t − measurement_t above max_latency_s",
        impact=Impact.CHANNEL,
        kinds=("liveness.stale", "liveness.rate", "liveness.latency"),
    )

    def __init__(self, cfg: LivenessConfig, channels: Sequence[ChannelConfig]) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self._state: dict[str, _ChannelState] = {}
        self._t0: float | None = None

    def reset(self) -> None:
        """Forget arrivals; silence is measured again from the next step."""
        self._state.clear()
        self._t0 = None

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channels that are silent, slow or late."""
        t = float(ctx.t)
        if self._t0 is None or t < self._t0:
            self._t0 = t
        t0 = self._t0
        cfg = self.cfg
        window = cfg.rate_window_s
        t_old = t - window
        out: list[Finding] = []
        for name, ch, obs in self.channels.visit(ctx):
            st = self._state.get(name)
            if st is None:  # built only when new (not a throwaway default every step)
                st = self._state[name] = _ChannelState()
            arrivals = st.arrivals
            valid = obs is not None and bool(obs.received) and obs.input_error is None
            if valid:
                st.last_valid = t
                arrivals.append(t)
            if obs is not None and obs.last_received_t is not None:
                st.last_valid = max(st.last_valid or -float("inf"), float(obs.last_received_t))
            while arrivals and (arrivals[0] <= t_old or arrivals[0] > t):
                arrivals.popleft()
            never = st.last_valid is None
            since = t - (t0 if st.last_valid is None else st.last_valid)
            # a channel that has never delivered is not vouched for once it has missed its
            # first two expected deliveries (its timeout assumes it was running before)
            limit = min(ch.timeout_s, 2.0 / ch.expected_rate_hz) if never else ch.timeout_s
            if since > limit:
                out.append(self._finding(
                    "liveness.stale", t,
                    f"{label(name).capitalize()} has delivered no valid input "
                    f"{'since start-up, ' if never else ''}for {since:.2f} s "
                    f"(limit {limit:.2f} s).",
                    name, since, limit, since))
            elif t - t0 >= window:
                rate = len(arrivals) / window
                floor = cfg.min_rate_fraction * ch.expected_rate_hz
                if rate < floor:
                    out.append(self._finding(
                        "liveness.rate", t,
                        f"{label(name).capitalize()} delivered {rate:.1f} valid inputs "
                        "per second "
                        f"over the last {window:g} s, below the floor of "
                        f"{floor:.1f} (expected {ch.expected_rate_hz:g}).",
                        name, rate, floor, window))
            if valid:
                mt = measurement_time(obs)
                if mt is not None and t - mt > cfg.max_latency_s:
                    out.append(self._finding(
                        "liveness.latency", t,
                        f"The data of {label(name)} arrived {t - mt:.3f} s after it was "
                        f"measured (limit {cfg.max_latency_s:.3f} s).",
                        name, t - mt, cfg.max_latency_s, 0.0))
        return out

    def _finding(self, kind: str, t: float, message: str, channel: str, value: float,
                 threshold: float, window: float) -> Finding:
        """What :func:`finding` builds for a channel finding without tracks, built directly."""
        return Finding(kind, self.spec.name, channel, self.spec.impact, float(value),
                       float(threshold), float(window), message, t)
