"""Safety layer: monitors, cross-checking, the health state machine, handoff and audit.

Knows perception's data types, never how detections were made.
"""

from safety.config import SupervisorConfig
from safety.findings import Finding, Impact
from safety.statemachine import HealthState
from safety.supervisor import StepOutput, Supervisor

__all__ = ["Finding", "HealthState", "Impact", "StepOutput", "Supervisor", "SupervisorConfig"]
