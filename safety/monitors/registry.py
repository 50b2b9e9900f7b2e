"""The monitor table, the monitors' configuration and the factory that builds them."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safety.channels import ChannelConfig
from safety.context import Monitor, MonitorSpec
from safety.monitors.calibration import CalibrationConfig, CalibrationMonitor
from safety.monitors.confidence import ConfidenceConfig, ConfidenceMonitor
from safety.monitors.consistency import ConsistencyConfig, ConsistencyMonitor
from safety.monitors.crosschannel import CrossChannelConfig, CrossChannelMonitor
from safety.monitors.deadline import DeadlineConfig, DeadlineMonitor
from safety.monitors.distribution import DistributionConfig, DistributionMonitor
from safety.monitors.drift import DriftConfig, DriftMonitor
from safety.monitors.integrity import IntegrityConfig, IntegrityMonitor
from safety.monitors.liveness import LivenessConfig, LivenessMonitor

#: Every monitor's declaration, in the order the supervisor runs them (like openpilot's events).
MONITOR_TABLE: tuple[MonitorSpec, ...] = (
    IntegrityMonitor.spec,
    LivenessMonitor.spec,
    ConfidenceMonitor.spec,
    ConsistencyMonitor.spec,
    DriftMonitor.spec,
    CrossChannelMonitor.spec,
    CalibrationMonitor.spec,
    DistributionMonitor.spec,
    DeadlineMonitor.spec,
)


class MonitorsConfig(BaseModel):
    """All monitor settings. ``false_alarms_per_hour`` is the budget of each statistical
    monitor (consistency, calibration, distribution, cross-channel disagreement, drift
    coasting) at
    ``step_rate_hz``; thresholds follow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_rate_hz: float = Field(default=10.0, gt=0)
    false_alarms_per_hour: float = Field(default=1e-3, gt=0)
    integrity: IntegrityConfig = IntegrityConfig()
    liveness: LivenessConfig = LivenessConfig()
    confidence: ConfidenceConfig = ConfidenceConfig()
    consistency: ConsistencyConfig = ConsistencyConfig()
    drift: DriftConfig = DriftConfig()
    crosscheck: CrossChannelConfig = CrossChannelConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    distribution: DistributionConfig = DistributionConfig()
    deadline: DeadlineConfig = DeadlineConfig()

    @model_validator(mode="after")
    def _windows_hold_a_step(self) -> MonitorsConfig:
        step = 1.0 / self.step_rate_hz
        for key, value in (
            ("liveness.rate_window_s", self.liveness.rate_window_s),
            ("consistency.window_s", self.consistency.window_s),
            ("calibration.block_s", self.calibration.block_s),
            ("distribution.block_s", self.distribution.block_s),
        ):
            if value < step:
                raise ValueError(
                    f"{key} = {value:g} s is shorter than one step at step_rate_hz = "
                    f"{self.step_rate_hz:g} ({step:g} s), so it could never hold any evidence"
                )
        return self


def build_monitors(cfg: MonitorsConfig, channels: Sequence[ChannelConfig]) -> list[Monitor]:
    """The enabled monitors, configured for these channels, in :data:`MONITOR_TABLE` order."""
    rate, budget = cfg.step_rate_hz, cfg.false_alarms_per_hour
    out: list[Monitor] = []
    if cfg.integrity.enabled:
        out.append(IntegrityMonitor(cfg.integrity, channels))
    if cfg.liveness.enabled:
        out.append(LivenessMonitor(cfg.liveness, channels))
    if cfg.confidence.enabled:
        out.append(ConfidenceMonitor(cfg.confidence, channels))
    if cfg.consistency.enabled:
        out.append(
            ConsistencyMonitor(cfg.consistency, channels, step_rate_hz=rate, budget_per_hour=budget)
        )
    if cfg.drift.enabled:
        out.append(DriftMonitor(cfg.drift, channels, step_rate_hz=rate, budget_per_hour=budget))
    if cfg.crosscheck.enabled:
        out.append(
            CrossChannelMonitor(cfg.crosscheck, channels, step_rate_hz=rate, budget_per_hour=budget)
        )
    if cfg.calibration.enabled:
        out.append(
            CalibrationMonitor(cfg.calibration, channels, step_rate_hz=rate, budget_per_hour=budget)
        )
    if cfg.distribution.enabled:
        out.append(
            DistributionMonitor(
                cfg.distribution, channels, step_rate_hz=rate, budget_per_hour=budget
            )
        )
    if cfg.deadline.enabled:
        out.append(DeadlineMonitor(cfg.deadline, channels))
    return out
