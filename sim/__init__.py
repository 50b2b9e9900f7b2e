"""Scenario simulator: world truth → sensor models → fault injectors → Supervisor → metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.runner import run_scenario
    from sim.scenario import ScenarioConfig, load_scenario

__all__ = ["ScenarioConfig", "load_scenario", "run_scenario"]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: ``vigil``'s command line starts (and can say
    that the first run compiles the kernels) before the simulator and its kernels load."""
    if name == "run_scenario":
        from sim.runner import run_scenario

        return run_scenario
    if name in ("ScenarioConfig", "load_scenario"):
        import sim.scenario

        return getattr(sim.scenario, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
