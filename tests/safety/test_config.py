"""SupervisorConfig: round trip, schema, and load errors naming file, key path, reason, line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety.config import ConfigError, SupervisorConfig

BASE = """\
channels:
  - name: camera
    role: primary
  - name: radar
    kind: radar
    role: redundant
"""


def load(tmp_path: Path, text: str) -> SupervisorConfig:
    p = tmp_path / "vigil.yaml"
    p.write_text(text)
    return SupervisorConfig.from_yaml(p)


def problem(tmp_path: Path, text: str) -> tuple[ConfigError, str]:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, text)
    err = ei.value
    assert err.source.endswith("vigil.yaml")
    assert "vigil.yaml" in str(err)
    return err, str(err)


def test_default_has_two_channels_and_round_trips(tmp_path: Path) -> None:
    cfg = SupervisorConfig.default()
    assert [c.name for c in cfg.channels] == ["camera", "radar"]
    assert cfg.takeover.budget_s == 10.0
    p = tmp_path / "out.yaml"
    cfg.to_yaml(p)
    assert SupervisorConfig.from_yaml(p) == cfg


def test_minimal_file_loads(tmp_path: Path) -> None:
    cfg = load(tmp_path, BASE + "timings:\n  recover_after_s: 3.5\n")
    assert cfg.timings.recover_after_s == 3.5 and cfg.channels[1].role == "redundant"


def test_json_schema_exports() -> None:
    schema = SupervisorConfig.json_schema()
    json.dumps(schema)
    assert {"channels", "monitors", "crosscheck", "takeover", "fallback", "budget", "audit",
            "timings"} <= set(schema["properties"])
    assert schema.get("additionalProperties") is False


def test_unknown_key_names_path_and_position(tmp_path: Path) -> None:
    text = BASE + "takeover:\n  budget_s: 10\n  budgt_s: 12\n"
    err, msg = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "takeover.budgt_s" and "unknown key" in p.reason
    assert (p.line, p.column) == (9, 3)
    assert "vigil.yaml:9:3: takeover.budgt_s: unknown key" in msg


def test_unknown_key_in_channel_list(tmp_path: Path) -> None:
    err, _ = problem(tmp_path, BASE + "    colour: red\n")
    (p,) = err.problems
    assert p.key == "channels.1.colour" and p.line == 7


def test_inverted_hysteresis_band(tmp_path: Path) -> None:
    text = BASE + "monitors:\n  confidence:\n    enter: 0.6\n    exit: 0.4\n"
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key.startswith("monitors.confidence")
    assert p.key in ("monitors.confidence.enter", "monitors.confidence.exit")
    assert "hysteresis" in p.reason
    assert p.line in (9, 10)


@pytest.mark.parametrize(
    ("section", "key"),
    [("budget:\n  step_s: 0\n", "budget.step_s"),
     ("budget:\n  detector_s: -0.01\n", "budget.detector_s"),
     ("takeover:\n  budget_s: -1\n", "takeover.budget_s"),
     ("timings:\n  recover_after_s: 0\n", "timings.recover_after_s")],
)
def test_zero_or_negative_budgets(tmp_path: Path, section: str, key: str) -> None:
    err, _ = problem(tmp_path, BASE + section)
    (p,) = err.problems
    assert p.key == key and "greater than 0" in p.reason and p.line == 8


def test_takeover_budget_shorter_than_warning_stages(tmp_path: Path) -> None:
    text = BASE + "takeover:\n  budget_s: 5\n  warning_after_s: 3\n  critical_last_s: 4\n"
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "takeover.budget_s" and "shorter than the warning stages" in p.reason
    assert (p.line, p.column) == (8, 3)


def test_duplicate_channel_names(tmp_path: Path) -> None:
    text = BASE.replace("name: radar", "name: camera")
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "channels.1.name" and "duplicate channel name 'camera'" in p.reason
    assert (p.line, p.column) == (4, 5)


def test_shadow_only_configuration(tmp_path: Path) -> None:
    text = "channels:\n  - name: candidate\n    role: shadow\n"
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "channels" and "shadow" in p.reason and p.line == 1


def test_fallback_tiers_out_of_order(tmp_path: Path) -> None:
    text = BASE + ("fallback:\n  tiers:\n    - {name: hard, deceleration: 6}\n"
                   "    - {name: soft, deceleration: 2}\n")
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "fallback.tiers.1.deceleration" and (p.line, p.column) == (10, 20)


def test_model_level_error_is_pinned_to_the_field(tmp_path: Path) -> None:
    text = BASE + "    fov:\n      azimuth_min_deg: 30\n      azimuth_max_deg: 10\n"
    err, _ = problem(tmp_path, text)
    (p,) = err.problems
    assert p.key == "channels.1.fov.azimuth_max_deg" and p.line == 9


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = BASE + "budget:\n  step_s: 0\nbogus: 1\n"
    err, msg = problem(tmp_path, text)
    assert {p.key for p in err.problems} == {"budget.step_s", "bogus"}
    assert "2 problems" in msg


def test_wrong_type_and_missing_channels(tmp_path: Path) -> None:
    err, _ = problem(tmp_path, "timings: {recover_after_s: soon}\n")
    keys = {p.key: p.reason for p in err.problems}
    assert "channels" in keys and "missing" in keys["channels"]
    assert "timings.recover_after_s" in keys


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    err, _ = problem(tmp_path, BASE + "timings: [unclosed\n")
    (p,) = err.problems
    assert "YAML syntax" in p.reason and p.line is not None and p.line >= 7


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    err, _ = problem(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in err.problems[0].reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        SupervisorConfig.from_yaml(tmp_path / "nope.yaml")


def test_config_is_immutable() -> None:
    cfg = SupervisorConfig.default()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        cfg.timings = cfg.timings


def test_coverage_zone_must_be_seen_by_the_channels() -> None:
    cfg = SupervisorConfig.default()
    assert cfg.coverage is not None and len(cfg.coverage.uncovered(cfg.channels)) == 0
    data = cfg.model_dump(mode="json")
    data["coverage"] = {"x_min": 1.0, "x_max": 50.0, "half_width": 4.0}  # beside the ego
    with pytest.raises(ConfigError) as info:
        SupervisorConfig.from_mapping(data, source="zone.yaml")
    p = info.value.problems[0]
    assert p.key == "coverage" and "unseen" in p.reason and "x 1..3.5 m" in p.reason
    # a shadow channel does not count: it is never output
    data["coverage"] = {"x_min": 5.0, "x_max": 50.0, "half_width": 4.0}
    data["channels"][1]["role"] = "shadow"
    data["channels"][0]["fov"]["azimuth_max_deg"] = 10.0
    with pytest.raises(ConfigError, match="unseen"):
        SupervisorConfig.from_mapping(data, source="zone.yaml")
