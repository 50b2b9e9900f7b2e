"""The scenario library (``scenarios/*.yaml``): every scenario passes all its expectations, runs
deterministically, and together they inject every fault kind the simulator has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from sim.faults import FaultConfig
from sim.results import ScenarioResult
from sim.runner import run_scenario
from sim.scenario import load_scenario
from sim.sensors import FrameCameraConfig

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
FILES = sorted(LIBRARY.glob("*.yaml"))
#: Scenarios too long for the default run (seconds of simulated time are not the issue; wall
#: time is): the one-hour drive takes about a minute. The default run keeps a five-minute
#: drive in the same traffic (highway_traffic_five_minutes_nominal).
SLOW: frozenset[str] = frozenset({"one_hour_nominal_drive_zero_false_alarms"})
#: Fault kinds no library scenario can inject honestly yet, with the reason. A kind listed here
#: must not be covered (remove it once a passing scenario injects it).
PENDING_KINDS: dict[str, str] = {}
#: Image faults only act on rendered frames.
FRAME_KINDS = frozenset({"glare", "darkness", "blur"})


def _param(p: Path) -> Any:
    marks = [pytest.mark.slow] if p.stem in SLOW else []
    return pytest.param(p, id=p.stem, marks=marks)


def _failures(r: ScenarioResult) -> str:
    lines = [f"{r.name}: {len(r.failures)} expectation(s) failed ({r.replay_command})"]
    lines += [
        f"  {c.name}: expected {c.expected}, actual {c.actual} {c.units}"
        + (f" — {c.message}" if c.message else "")
        for c in r.failures
    ]
    return "\n".join(lines)


def _all_fault_kinds() -> set[str]:
    members = get_args(get_args(FaultConfig)[0])
    return {m.model_fields["kind"].default for m in members}


def test_the_library_is_there() -> None:
    assert len(FILES) >= 20, [p.name for p in FILES]


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_scenario_meets_every_expectation(path: Path) -> None:
    r = run_scenario(path)
    assert r.error is None, r.error
    assert r.passed, _failures(r)


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_scenario_is_well_formed(path: Path) -> None:
    cfg = load_scenario(path)
    assert cfg.name == path.stem, "a scenario is named like its file"
    assert cfg.description.strip(), "say what the situation is"
    kinds = [c.kind for c in cfg.expectations]
    assert "max_silent_failure_s" in kinds, "never silently wrong is expected of every scenario"
    silent = [c for c in cfg.expectations if c.kind == "max_silent_failure_s"]
    assert all(getattr(c, "max_s", None) == 0 and not c.optional for c in silent)
    assert len(kinds) >= 3
    if not cfg.faults:
        assert {"nominal", "max_false_alarms_per_hour"} & set(kinds), "fault-free: no alarms"
    frames = {s.channel for s in cfg.sensors if isinstance(s, FrameCameraConfig)}
    for f in cfg.faults:
        if f.kind in FRAME_KINDS:
            assert f.channel in frames, f"{f.kind} acts only on a frame-level camera channel"


def test_library_injects_every_fault_kind() -> None:
    covered = {f.kind for p in FILES for f in load_scenario(p).faults}
    every = _all_fault_kinds()
    assert len(every) == 17
    missing = every - covered - set(PENDING_KINDS)
    assert not missing, f"no scenario injects {sorted(missing)}"
    stale = covered & set(PENDING_KINDS)
    assert not stale, f"{sorted(stale)} are covered now: drop them from PENDING_KINDS"


@pytest.mark.parametrize(
    "name", ["camera_calibration_drift_cusum", "distracted_driver_no_takeover_mrm"]
)
def test_same_file_and_seed_give_identical_results(name: str) -> None:
    path = LIBRARY / f"{name}.yaml"
    a, b = run_scenario(path).to_dict(), run_scenario(path).to_dict()
    a.pop("wall_time_s")
    b.pop("wall_time_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
