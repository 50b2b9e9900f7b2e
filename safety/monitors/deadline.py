"""Step deadline: the supervisor's own cycle took longer than its budget."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import MonitorSettings, finding


class DeadlineConfig(MonitorSettings):
    """An isolated overrun is information; ``escalate_after`` in a row is a system fault."""

    escalate_after: int = Field(default=3, ge=1)


class DeadlineMonitor:
    """Compares the previous step's wall time with the step budget."""

    spec = MonitorSpec(
        name="deadline",
        watches="wall time of the previous supervisor step",
        threshold="elapsed > budget: information; escalate_after consecutive overruns: system",
        impact=Impact.SYSTEM,
        kinds=("deadline.overrun",),
    )

    def __init__(self, cfg: DeadlineConfig, channels: Sequence[ChannelConfig] = ()) -> None:
        self.cfg = cfg
        self._run = 0

    def reset(self) -> None:
        """Forget the overrun streak."""
        self._run = 0

    def observe(self, ctx: StepContext) -> list[Finding]:
        """``deadline.overrun`` when the last step overran; SYSTEM once it keeps doing so."""
        budget, elapsed = float(ctx.budget), float(ctx.last_step_elapsed)
        if not budget > 0 or not elapsed > budget:
            self._run = 0
            return []
        self._run += 1
        persistent = self._run >= self.cfg.escalate_after
        msg = (
            f"The safety check took {elapsed * 1e3:.1f} ms, over its {budget * 1e3:.1f} ms "
            f"budget"
            + (
                f", {self._run} cycles in a row, so its results come too late to rely on."
                if persistent
                else " (isolated)."
            )
        )
        return [
            finding(
                self.spec,
                "deadline.overrun",
                ctx.t,
                msg,
                impact=Impact.SYSTEM if persistent else Impact.INFO,
                value=elapsed,
                threshold=budget,
                window=self._run * max(ctx.dt, 0.0),
            )
        ]
