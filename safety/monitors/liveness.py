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
    finding,
    is_valid,
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
        out: list[Finding] = []
        for name, ch, obs in self.channels.visit(ctx):
            st = self._state.get(name)
            if st is None:  # built only when new (not a throwaway default every step)
                st = self._state[name] = _ChannelState()
            valid = is_valid(obs)
            if valid:
                st.last_valid = t
                st.arrivals.append(t)
            if obs is not None and obs.last_received_t is not None:
                st.last_valid = max(st.last_valid or -float("inf"), float(obs.last_received_t))
            while st.arrivals and (
                st.arrivals[0] <= t - self.cfg.rate_window_s or st.arrivals[0] > t
            ):
                st.arrivals.popleft()
            since = t - (st.last_valid if st.last_valid is not None else self._t0)
            never = st.last_valid is None
            # a channel that has never delivered is not vouched for once it has missed its
            # first two expected deliveries (its timeout assumes it was running before)
            limit = min(ch.timeout_s, 2.0 / ch.expected_rate_hz) if never else ch.timeout_s
            if since > limit:
                out.append(
                    finding(
                        self.spec,
                        "liveness.stale",
                        t,
                        f"{label(name).capitalize()} has delivered no valid input "
                        f"{'since start-up, ' if never else ''}for {since:.2f} s "
                        f"(limit {limit:.2f} s).",
                        channel=name,
                        value=since,
                        threshold=limit,
                        window=since,
                    )
                )
            elif t - self._t0 >= self.cfg.rate_window_s:
                rate = len(st.arrivals) / self.cfg.rate_window_s
                floor = self.cfg.min_rate_fraction * ch.expected_rate_hz
                if rate < floor:
                    out.append(
                        finding(
                            self.spec,
                            "liveness.rate",
                            t,
                            f"{label(name).capitalize()} delivered {rate:.1f} valid inputs "
                            "per second "
                            f"over the last {self.cfg.rate_window_s:g} s, below the floor of "
                            f"{floor:.1f} (expected {ch.expected_rate_hz:g}).",
                            channel=name,
                            value=rate,
                            threshold=floor,
                            window=self.cfg.rate_window_s,
                        )
                    )
            mt = measurement_time(obs) if valid else None
            if mt is not None and t - mt > self.cfg.max_latency_s:
                out.append(
                    finding(
                        self.spec,
                        "liveness.latency",
                        t,
                        f"The data of {label(name)} arrived {t - mt:.3f} s after it was measured "
                        f"(limit {self.cfg.max_latency_s:.3f} s).",
                        channel=name,
                        value=t - mt,
                        threshold=self.cfg.max_latency_s,
                    )
                )
        return out
