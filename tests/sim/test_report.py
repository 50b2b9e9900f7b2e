"""Report: files written and well-formed, JUnit escaping and one testcase per criterion, JSON
round trip, summary formatting."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from scenario_fixtures import RADAR_DROPOUT

from sim.report import (
    RunRecord,
    junit_tree,
    read_results,
    render_markdown,
    summary_rows,
    write_junit,
    write_report,
    write_results_json,
    xml_safe,
)
from sim.results import ScenarioResult, Verdict
from sim.runner import run_scenario
from sim.scenario import scenario_from_mapping

NASTY = "<&\"'> \x00\x07\x1b ]]> é"

BASE: dict[str, Any] = {
    **RADAR_DROPOUT,
    "expectations": [
        *RADAR_DROPOUT["expectations"],
        {"kind": "state_never", "state": ["TAKEOVER_REQUESTED", "MINIMAL_RISK"]},
    ],
}


def _cfg(**changes: Any) -> Any:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return scenario_from_mapping(data)


@pytest.fixture(scope="module")
def records() -> list[RunRecord]:
    ok_cfg = _cfg()
    bad_cfg = _cfg(
        name=f"nasty {NASTY}",
        expectations=[*BASE["expectations"], {"kind": "fault_detected", "fault": 0,
                                               "within_s": 0.01, "name": f"too fast {NASTY}"}],
    )
    ok = run_scenario(ok_cfg)
    bad = run_scenario(bad_cfg)
    bad.criteria[-1].message = f"detail {NASTY}"
    crashed = RunRecord("crashed", "x.yaml", 5, None, None, f"RuntimeError: boom {NASTY}",
                        "vigil run x.yaml --seed 5")
    return [RunRecord.of(ok, ok_cfg.tolerance), RunRecord.of(bad, bad_cfg.tolerance), crashed]


def test_report_folder_is_complete_and_self_contained(records: list[RunRecord],
                                                      tmp_path: Path) -> None:
    files = write_report(records, tmp_path / "rep", command="vigil run x")
    rep = tmp_path / "rep"
    for p in (files.html, files.markdown, files.json, files.junit):
        assert p.is_file() and p.stat().st_size > 0 and p.parent == rep
    assert len(files.plots) == 4  # timeline + ground for the two runs that finished
    for p in files.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = files.html.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 4
    for s in srcs:  # relative links that resolve inside the folder
        assert not s.startswith("/") and "://" not in s
        assert (rep / s).is_file()
    md = files.markdown.read_text()
    links = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", md)  # alt text may escape ]
    assert sorted(links) == sorted(srcs)
    # the nasty name is escaped in HTML, never raw markup
    assert "<&\"'>" not in html and "&lt;&amp;&quot;&#x27;&gt;" in html
    for col in ("silent failure", "detection time", "false alarms", "takeover lead", "wall time"):
        assert f"<th>{col}</th>" in html
    assert "Failed expectations" in html and "too fast" in html
    assert "RuntimeError: boom" in html  # the crashed run is shown, not dropped


def test_junit_has_one_testcase_per_criterion_and_escapes_everything(
    records: list[RunRecord], tmp_path: Path
) -> None:
    path = write_junit(records, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()  # well-formed despite control characters in the input
    suites = root.findall("testsuite")
    assert suites[0].get("name") == "radar dropout"
    ok, bad, crashed = records
    assert ok.result is not None and bad.result is not None
    for suite, rec in zip(suites, records, strict=True):
        cases = suite.findall("testcase")
        n_crit = len(rec.result.criteria) if rec.result else 1
        assert len(cases) == n_crit and suite.get("tests") == str(n_crit)
        props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
        assert props["seed"] == str(rec.seed)
        assert props["replay"] == rec.replay_command
    assert root.get("failures") == "1" and root.get("errors") == "1"
    bad_suite = suites[1]
    assert bad_suite.get("name") == xml_safe(f"nasty {NASTY}")
    assert "\\x07" in (bad_suite.get("name") or "") and "<&\"'>" in (bad_suite.get("name") or "")
    [failure] = bad_suite.findall("testcase/failure")
    crit = bad.result.criteria[-1]
    assert crit.verdict == Verdict.FAILURE
    text = failure.text or ""
    assert f"expected: {crit.expected}" in text and f"actual: {crit.actual}" in text
    assert f"detail: detail {xml_safe(NASTY)}" in text
    assert "detail: detail <&\"'> \\x00\\x07\\x1b ]]> é" in text
    assert crit.expected in (failure.get("message") or "")
    assert crashed.result is None
    assert suites[2].find("testcase/error") is not None
    assert "\x00" not in path.read_text(encoding="utf-8")


def test_junit_marks_optional_failures_without_failing(records: list[RunRecord]) -> None:
    rec = copy.deepcopy(records[1])
    assert rec.result is not None
    for c in rec.result.criteria:
        if c.failed:
            c.optional = True
    rec.result.passed = True
    root = junit_tree([rec]).getroot()
    assert root is not None
    assert root.findall(".//failure") == []
    outs = [e.text or "" for e in root.iter("system-out")]
    assert any("optional criterion failed" in t for t in outs)


def test_results_json_round_trips(records: list[RunRecord], tmp_path: Path) -> None:
    p = write_results_json(records, tmp_path / "results.json", command="vigil run a b")
    doc = json.loads(p.read_text())  # strict JSON
    assert doc["summary"]["scenarios"] == 3 and doc["summary"]["failed"] == 1
    assert doc["summary"]["errors"] == 1 and doc["summary"]["ok"] is False
    back, command = read_results(p)
    assert command == "vigil run a b"
    assert [r.name for r in back] == [r.name for r in records]
    for a, b in zip(records[:2], back[:2], strict=True):
        assert a.result is not None and b.result is not None
        assert b.result.to_json() == a.result.to_json()
        assert b.tolerance == a.tolerance
    assert back[2].result is None and "boom" in (back[2].error or "")
    single = tmp_path / "one.json"
    assert records[0].result is not None
    single.write_text(records[0].result.to_json())
    [one], _ = read_results(single)
    assert one.result is not None and one.result.name == "radar dropout"


def test_read_results_rejects_other_json_in_one_line(tmp_path: Path) -> None:
    from sim.report import ReportInputError

    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(ReportInputError, match=r"x\.json"):
        read_results(p)
    p.write_text("not json")
    with pytest.raises(ReportInputError, match="not JSON"):
        read_results(p)


def test_summary_rows_format_the_metrics(records: list[RunRecord]) -> None:
    ok, bad, crashed = summary_rows(records)
    r = records[0].result
    assert isinstance(r, ScenarioResult)
    assert ok.verdict == "PASS" and bad.verdict == "FAIL" and crashed.verdict == "ERROR"
    assert ok.silent_failure == f"{r.metrics.silent_failure_s:.2f} s"
    delay = r.metrics.detections[0].delay_s
    assert delay is not None and ok.detection == f"{delay:.2f} s"
    assert ok.takeover_lead == "—" and ok.false_alarms == str(r.metrics.false_alarms)
    assert "too fast" in bad.remark and crashed.remark.startswith("RuntimeError")


def test_markdown_escapes_table_cells(records: list[RunRecord]) -> None:
    rec = copy.deepcopy(records[0])
    assert rec.result is not None
    rec.result.criteria[0].message = "a | b\nc"
    md = render_markdown([rec], [{}])
    row = next(line for line in md.splitlines() if line.startswith("| max_silent"))
    assert "a \\| b c" in row and row.count(" | ") == 5


def test_xml_safe_keeps_text_and_escapes_forbidden_characters() -> None:
    assert xml_safe("plain <&>") == "plain <&>"
    assert xml_safe("a\x00b\x1fc\td\ne") == "a\\x00b\\x1fc\td\ne"
    el = ET.Element("x", {"v": xml_safe(NASTY)})
    el.text = xml_safe(NASTY)
    back = ET.fromstring(ET.tostring(el))
    assert back.text == back.get("v") == xml_safe(NASTY)


def test_rewriting_a_folder_removes_stale_plots_only(records: list[RunRecord],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "rep"
    write_report(records, out)
    mine = out / "plots" / "keep-me.png"
    mine.write_bytes(b"x")
    files = write_report(records[1:2], out)  # one scenario now: numbering changes
    names = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert names == sorted([p.name for p in files.plots] + ["keep-me.png"])


def test_units_only_follow_numbers() -> None:
    from sim.report import with_units

    assert with_units("0.4", "s") == "0.4 s"
    assert with_units("reached at 4", "s") == "reached at 4 s"
    assert with_units("none", "s") == "none"
    assert with_units("7", "") == "7"
