"""Scenario simulator: world truth → sensor models → fault injectors → Supervisor → metrics."""

from sim.runner import run_scenario
from sim.scenario import ScenarioConfig, load_scenario

__all__ = ["ScenarioConfig", "load_scenario", "run_scenario"]
