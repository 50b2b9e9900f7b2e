"""Scenario schema: loading, errors naming file / key / reason / line, supervisor files, sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from safety.config import ConfigError
from sim.scenario import (
    ScenarioConfig,
    ScenarioError,
    load_scenario,
    sample_variant,
    scenario_from_mapping,
    scenario_json_schema,
)

BASE = """\
name: cut-in with radar dropout
description: test scenario
duration_s: 10
rate_hz: 10
seed: 3
world:
  ego: {speed: 10}
  actors:
    - {id: 1, kind: vehicle, position: [30, 0]}
    - {id: 2, kind: pedestrian, position: [20, 4]}
sensors:
  - {kind: camera, channel: camera}
  - {kind: radar, channel: radar}
supervisor:
  channels:
    - {name: camera, kind: camera, role: primary}
    - {name: radar, kind: radar, role: redundant}
faults:
  - {kind: dropout, channel: radar, start: {at: 4.0}}
human: {profile: distracted}
expectations:
  - {kind: max_silent_failure_s}
  - {kind: fault_detected, fault: 0, within_s: 1.5}
  - {kind: object_output, actor: 1}
tolerance:
  position_m: 1.5
  critical_zone: {x: [0, 50], y: [-4, 4]}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_loads_a_complete_scenario(tmp_path: Path) -> None:
    cfg = load_scenario(write(tmp_path, BASE))
    assert cfg.name == "cut-in with radar dropout"
    assert cfg.steps == 101
    assert [s.kind for s in cfg.sensors] == ["camera", "radar"]
    assert cfg.faults[0].kind == "dropout"
    assert [c.kind for c in cfg.expectations] == [
        "max_silent_failure_s",
        "fault_detected",
        "object_output",
    ]
    assert cfg.tolerance.critical_zone.x == (0.0, 50.0)
    assert cfg.human.profile == "distracted"


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def problem_of(exc: pytest.ExceptionInfo[ScenarioError], key: str) -> str:
    keys = [p.key for p in exc.value.problems]
    assert key in keys, keys
    return str(exc.value)


def test_unknown_key_names_file_key_line(tmp_path: Path) -> None:
    text = BASE.replace("human: {profile: distracted}", "human: {profile: distracted, nap: 1}")
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = problem_of(exc, "human.nap")
    assert str(p) in msg and "unknown key" in msg
    prob = next(x for x in exc.value.problems if x.key == "human.nap")
    assert (prob.line, prob.column) == (
        line_of(text, "nap"),
        text.splitlines()[prob.line - 1].index("nap") + 1,
    )


def test_bad_value_in_a_discriminated_list(tmp_path: Path) -> None:
    text = BASE.replace(
        "{kind: radar, channel: radar}", "{kind: radar, channel: radar, p_detect: 2}"
    )
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = problem_of(exc, "sensors.1.radar.p_detect")
    assert "less than or equal to 1" in msg
    prob = next(x for x in exc.value.problems if x.key == "sensors.1.radar.p_detect")
    assert prob.line == line_of(text, "p_detect")


def test_unknown_kinds_are_named(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("{kind: dropout,", "{kind: teleport,"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert "teleport" in problem_of(exc, "faults.0.kind")
    p = write(tmp_path, BASE.replace("{kind: max_silent_failure_s}", "{kind: max_silence}"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert "max_silence" in problem_of(exc, "expectations.0.kind")


def test_missing_required_key(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("duration_s: 10\n", ""))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert "required key is missing" in problem_of(exc, "duration_s")


def test_cross_references_are_checked(tmp_path: Path) -> None:
    cases = {
        "faults.0.channel": BASE.replace(
            "{kind: dropout, channel: radar", "{kind: dropout, channel: lidar"
        ),
        "sensors.1.channel": BASE.replace(
            "{kind: radar, channel: radar}", "{kind: radar, channel: lidar}"
        ),
        "expectations.2.actor": BASE.replace(
            "{kind: object_output, actor: 1}", "{kind: object_output, actor: 9}"
        ),
        "expectations.1.fault": BASE.replace("fault: 0, within_s", "fault: 4, within_s"),
    }
    for key, text in cases.items():
        with pytest.raises(ScenarioError) as exc:
            load_scenario(write(tmp_path, text))
        problem_of(exc, key)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("rate_hz: 10", "rate_hz: [10"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert exc.value.problems[0].line is not None and "YAML" in str(exc.value)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        load_scenario(write(tmp_path, "- 1\n- 2\n"))
    assert issubclass(ScenarioError, ConfigError)


def test_supervisor_from_a_relative_path(tmp_path: Path) -> None:
    sup = yaml.safe_load(BASE)["supervisor"]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "vigil.yaml").write_text(yaml.safe_dump(sup), encoding="utf-8")
    text = BASE.replace(
        BASE[BASE.index("supervisor:") : BASE.index("faults:")], "supervisor: cfg/vigil.yaml\n"
    )
    cfg = load_scenario(write(tmp_path, text))
    assert [c.name for c in cfg.supervisor.channels] == ["camera", "radar"]
    bad = dict(sup, channels=[dict(sup["channels"][0], rol="primary")])
    (tmp_path / "cfg" / "bad.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text.replace("vigil.yaml", "bad.yaml")))
    msg = problem_of(exc, "supervisor")
    assert "bad.yaml" in msg and "rol" in msg


def test_ego_at_top_level_or_in_world_not_both(tmp_path: Path) -> None:
    data = yaml.safe_load(BASE)
    data["ego"] = {"speed": 20}
    with pytest.raises(ScenarioError) as exc:
        scenario_from_mapping(data)
    problem_of(exc, "ego")
    del data["world"]["ego"]
    cfg = scenario_from_mapping(data)
    assert cfg.effective_world.ego.speed == 20


def test_json_schema_lists_kinds_and_allows_a_supervisor_path() -> None:
    schema = scenario_json_schema()
    text = json.dumps(schema)
    for kind in ("fault_detected", "takeover_lead", "bias_ramp", "radar", "uniform"):
        assert f'"{kind}"' in text
    sup = schema["properties"]["supervisor"]
    assert any(s.get("type") == "string" for s in sup["anyOf"])
    assert "name" in schema["required"] and "duration_s" in schema["required"]


SWEEP = """\
sweep:
  seeds: [100, 200]
  params:
    - {path: faults.0.start.at, dist: uniform, low: 2.0, high: 6.0}
    - {path: world.ego.speed, dist: normal, mean: 10, std: 2, low: 0}
    - {path: human.profile, dist: choice, values: [attentive, distracted, absent]}
"""


def test_sweep_variant_is_deterministic_in_the_seed(tmp_path: Path) -> None:
    cfg = load_scenario(write(tmp_path, BASE + SWEEP))
    a, pa = sample_variant(cfg, 123)
    b, pb = sample_variant(cfg, 123)
    _, pc = sample_variant(cfg, 124)
    assert pa == pb and pa != pc
    assert a == b and a.seed == 123
    assert 2.0 <= a.faults[0].start.at <= 6.0 and a.faults[0].start.at == pa["faults.0.start.at"]
    assert a.effective_world.ego.speed == pa["world.ego.speed"]
    assert a.human.profile == pa["human.profile"]
    assert isinstance(a, ScenarioConfig) and a.sweep == cfg.sweep


def test_sweep_bad_path_or_value_fails_clearly(tmp_path: Path) -> None:
    cfg = load_scenario(write(tmp_path, BASE + SWEEP.replace("world.ego.speed", "world.ego.sped")))
    with pytest.raises(ScenarioError, match="sped"):
        sample_variant(cfg, 1)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, BASE + SWEEP.replace("seeds: [100, 200]", "seeds: [5, 5]")))
    problem_of(exc, "sweep.seeds")
