"""The vigil command line: exit codes, messages, report round trip through `vigil plot`,
schemas, replay, tracking on a shipped sample, audit logs."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenario_fixtures import RADAR_DROPOUT

from sim.cli import build_parser, collect_scenarios, main

SCENARIO: dict[str, Any] = RADAR_DROPOUT


def write(path: Path, **changes: Any) -> Path:
    data = copy.deepcopy(SCENARIO)
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    d = tmp_path / "suite"
    d.mkdir()
    write(d / "a_pass.yaml")
    write(d / "b_fail.yaml", name="too demanding", expectations=[
        {"kind": "max_silent_failure_s"},
        {"kind": "fault_detected", "fault": 0, "within_s": 0.01, "name": "instant detection"},
    ])
    return d


def test_run_passing_scenario_exits_0_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path / "ok.yaml")
    rep = tmp_path / "rep"
    assert main(["run", str(f), "--report", str(rep), "--jobs", "1"]) == 0
    for name in ("index.html", "report.md", "results.json", "junit.xml"):
        assert (rep / name).is_file()
    assert len(list((rep / "plots").glob("*.png"))) == 2
    out = capsys.readouterr().out
    assert "radar dropout" in out and "PASS" in out and "all 1 scenarios passed" in out


def test_failed_expectation_exits_1_naming_scenario_and_criterion(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "j" / "out.xml"
    code = main(["run", str(suite), "--report", str(tmp_path / "rep"), "--junit", str(junit),
                 "--jobs", "2", "--seed", "4"])
    assert code == 1
    out = capsys.readouterr().out
    assert "Failed expectations" in out
    assert "too demanding" in out and "instant detection" in out
    assert "--seed 4" in out  # the replay command of the failing scenario
    assert junit.is_file() and not (tmp_path / "rep" / "junit.xml").exists()
    doc = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert [r["seed"] for r in doc["results"]] == [4, 4]
    assert [r["passed"] for r in doc["results"]] == [True, False]


def test_bad_scenario_file_exits_2_with_file_key_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path / "bad.yaml", duration_z=3.0)
    good = write(tmp_path / "good.yaml")
    code = main(["run", str(good), str(bad), "--report", str(tmp_path / "rep")])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "duration_z" in err and "unknown key" in err
    assert "Traceback" not in err
    assert not (tmp_path / "rep").exists()  # nothing ran


def test_bad_value_names_the_nested_key(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(SCENARIO)
    data["sensors"][1]["clutter_rate"] = -1
    f = tmp_path / "neg.yaml"
    f.write_text(yaml.safe_dump(data))
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err
    assert "neg.yaml" in err and "sensors.1" in err and "clutter_rate" in err


@pytest.mark.parametrize("argv", [
    ["run", "/no/such/dir"],
    ["plot", "/no/such/results.json"],
    ["replay", "/no/such.yaml"],
    ["audit", "verify", "/no/such.log"],
    ["track", "/no/such/det.txt"],
    ["sweep", "/no/such.yaml", "--variants", "2"],
    ["run"],
    ["schema", "nonsense"],
])
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err


def test_console_script_exit_code_and_message(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", duration_s=-1)
    res = subprocess.run([sys.executable, "-m", "sim.cli", "run", str(bad)],
                         capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2
    assert "bad.yaml" in res.stderr and "duration_s" in res.stderr
    assert "Traceback" not in res.stderr


def test_plot_rerenders_from_results_json(tmp_path: Path) -> None:
    f = write(tmp_path / "ok.yaml")
    rep = tmp_path / "rep"
    assert main(["run", str(f), "--report", str(rep), "--jobs", "1"]) == 0
    out = tmp_path / "again"
    assert main(["plot", str(rep / "results.json"), "--out", str(out)]) == 0
    a = json.loads((rep / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert a["results"] == b["results"] and a["tolerances"] == b["tolerances"]
    assert a["command"] == b["command"]
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == sorted(
        p.name for p in (rep / "plots").glob("*.png"))
    assert (out / "index.html").read_text().count("<img ") == 2
    # in place: re-renders the same folder, keeps results.json untouched
    before = (rep / "results.json").read_bytes()
    (rep / "index.html").unlink()
    assert main(["plot", str(rep / "results.json")]) == 0
    assert (rep / "index.html").is_file() and (rep / "results.json").read_bytes() == before


@pytest.mark.parametrize(("which", "key"), [("scenario", "sensors"), ("supervisor", "channels")])
def test_schema_prints_json_schema(which: str, key: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", which]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert key in schema["properties"]


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(subs.choices, dict)
    names = list(subs.choices)
    assert set(names) >= {"run", "plot", "schema", "sweep", "replay", "track", "audit"}
    for argv in [[n] for n in names] + [["audit", a] for a in ("verify", "replay", "explain")]:
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert len(out.splitlines()) > 5 and "usage: vigil" in out


def test_replay_shows_verdicts_and_exit_code(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ok = write(tmp_path / "ok.yaml")
    assert main(["replay", str(ok)]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and "fault_detected[0]" in out
    bad = write(tmp_path / "bad.yaml", expectations=[{"kind": "state_at", "t": 1.0,
                                                      "state": "MINIMAL_RISK"}])
    assert main(["replay", str(bad), "--seed", "9"]) == 1
    out = capsys.readouterr().out
    assert "FAILURE" in out and "seed 9" in out


def test_collect_scenarios_skips_supervisor_configs(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml")
    (tmp_path / "sup.yaml").write_text(yaml.safe_dump(SCENARIO["supervisor"]))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in collect_scenarios([str(tmp_path)])] == ["s.yaml"]
    # named explicitly, a file is always taken (and then fails to load as a scenario)
    assert len(collect_scenarios([str(tmp_path / "sup.yaml"), str(tmp_path)])) == 2


@pytest.mark.skipif(importlib.util.find_spec("motmetrics") is None,
                    reason="the MOT samples ship with py-motmetrics (vigil[metrics])")
def test_track_sample_prints_mota_idf1(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from perception.mot import read_mot

    out_file = tmp_path / "tracks.txt"
    assert main(["track", "--sample", "TUD-Campus", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("MOTA"))
    fields = line.split()
    mota, idf1 = float(fields[1]), float(fields[3])
    assert 0.3 < mota <= 1.0 and 0.3 < idf1 <= 1.0
    assert "ID switches" in line and "frames/s" in line
    seq = read_mot(out_file)
    assert len(seq) > 100 and len(set(seq.ids.tolist())) >= 5
    # detections given as a file, with that sample's ground truth, give the same scores
    from perception.mot import sample_paths

    gt, det = sample_paths("TUD-Campus")
    assert main(["track", str(det), "--gt", str(gt), "--out", str(tmp_path / "t2.txt")]) == 0
    again = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("MOTA"))
    assert again.split()[:6] == fields[:6]


def test_track_without_ground_truth_prints_no_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    det = tmp_path / "det.txt"
    rows = [f"{f},-1,{100 + 2 * f},{50},{40},{80},0.9,-1,-1,-1" for f in range(1, 21)]
    det.write_text("\n".join(rows) + "\n")
    assert main(["track", str(det), "--out", str(tmp_path / "t.txt")]) == 0
    out = capsys.readouterr().out
    assert "20 frames" in out and "MOTA" not in out
    assert (tmp_path / "t.txt").read_text().count("\n") >= 15


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    f = write(tmp_path / "ok.yaml")
    log = tmp_path / "audit.jsonl"
    assert main(["replay", str(f), "--audit", str(log)]) == 0
    return log


def test_audit_verify_detects_tampering(audit_log: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(audit_log)]) == 0
    assert "intact" in capsys.readouterr().out
    lines = audit_log.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"t":', b'"t": ', 1)
    audit_log.write_bytes(b"\n".join(lines))
    assert main(["audit", "verify", str(audit_log)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "line 5" in out


def test_audit_replay_and_explain(audit_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "replay", str(audit_log)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every decision identical" in out
    assert main(["audit", "explain", str(audit_log), "--at", "3.5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("At t=3.500 s")
    assert main(["audit", "explain", str(audit_log)]) == 2  # --at is required


def test_audit_replay_reports_a_differing_decision(
    audit_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safety.audit import AuditLog, read_events

    events = [e for e in read_events(audit_log) if e["kind"] != "seal"]
    changed = next(e for e in events if e["kind"] == "state_change")
    changed["data"]["to"] = "minimal_risk"  # a forged decision, re-chained so verify passes
    forged = tmp_path / "forged.jsonl"
    with AuditLog(forged) as log:
        for e in events:
            log.append(e["kind"], e["t"], e["data"])
    assert main(["audit", "verify", str(forged)]) == 0
    capsys.readouterr()
    assert main(["audit", "replay", str(forged)]) == 1
    out = capsys.readouterr().out
    assert "decisions differ" in out and "minimal_risk" in out
    assert main(["replay", str(tmp_path / "ok.yaml"), "--audit", str(forged)]) == 2
    assert "already exists" in capsys.readouterr().err
