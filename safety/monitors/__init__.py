"""Monitors: small independent units that turn one supervisor step into evidence-carrying findings.

``MONITOR_TABLE`` declares them all, ``MonitorsConfig`` configures them (one sub-model each), and
``build_monitors(cfg, channels)`` instantiates the enabled ones.
"""

from safety.monitors.base import MonitorSettings
from safety.monitors.calibration import CalibrationConfig, CalibrationMonitor
from safety.monitors.changepoint import (
    Cusum,
    CusumDesign,
    PageHinkley,
    design_cusum,
    false_alarm_rate,
    siegmund_arl,
    threshold_for_arl,
    two_sided_arl,
)
from safety.monitors.confidence import ConfidenceConfig, ConfidenceMonitor
from safety.monitors.consistency import ConsistencyConfig, ConsistencyMonitor
from safety.monitors.crosschannel import CrossChannelConfig, CrossChannelMonitor
from safety.monitors.deadline import DeadlineConfig, DeadlineMonitor
from safety.monitors.distribution import DistributionConfig, DistributionMonitor
from safety.monitors.drift import DriftConfig, DriftMonitor
from safety.monitors.integrity import IntegrityConfig, IntegrityMonitor
from safety.monitors.liveness import LivenessConfig, LivenessMonitor
from safety.monitors.registry import MONITOR_TABLE, MonitorsConfig, build_monitors

__all__ = [
    "MONITOR_TABLE",
    "CalibrationConfig",
    "CalibrationMonitor",
    "ConfidenceConfig",
    "ConfidenceMonitor",
    "ConsistencyConfig",
    "ConsistencyMonitor",
    "CrossChannelConfig",
    "CrossChannelMonitor",
    "Cusum",
    "CusumDesign",
    "DeadlineConfig",
    "DeadlineMonitor",
    "DistributionConfig",
    "DistributionMonitor",
    "DriftConfig",
    "DriftMonitor",
    "IntegrityConfig",
    "IntegrityMonitor",
    "LivenessConfig",
    "LivenessMonitor",
    "MonitorSettings",
    "MonitorsConfig",
    "PageHinkley",
    "build_monitors",
    "design_cusum",
    "false_alarm_rate",
    "siegmund_arl",
    "threshold_for_arl",
    "two_sided_arl",
]
