"""The scenario report: HTML and Markdown with plots, JUnit XML and JSON, from run results.

A report is a folder you can open or zip: ``index.html``, ``report.md``, ``results.json``,
``junit.xml`` and ``plots/*.png`` referenced by relative path. ``results.json`` holds every
`ScenarioResult` in full, so ``vigil plot`` re-renders the report without re-running anything.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.metrics import ToleranceConfig
from sim.plots import STATE_COLOURS, PlotSettings, save_plots
from sim.results import CriterionResult, ScenarioResult, Verdict

__all__ = [
    "FORMAT",
    "ReportFiles",
    "ReportInputError",
    "RunRecord",
    "SummaryRow",
    "junit_tree",
    "read_results",
    "render_html",
    "render_markdown",
    "summarize",
    "summary_rows",
    "with_units",
    "write_junit",
    "write_report",
    "write_results_json",
    "xml_safe",
]

FORMAT = "vigil-report/1"
_DASH = "—"


class ReportInputError(ValueError):
    """A results file cannot be read as Vigil results (one line saying which file and why)."""


@dataclass
class RunRecord:
    """One scenario's outcome for the report: its result, or the error that stopped the run."""

    name: str
    source: str | None
    seed: int
    result: ScenarioResult | None = None
    tolerance: ToleranceConfig | None = None
    error: str | None = None
    replay_command: str = ""

    @classmethod
    def of(cls, result: ScenarioResult, tolerance: ToleranceConfig | None = None) -> RunRecord:
        """A record of a finished run."""
        return cls(result.name, result.source, result.seed, result, tolerance, result.error,
                   result.replay_command)

    @property
    def passed(self) -> bool:
        return self.error is None and self.result is not None and self.result.passed

    @property
    def verdict(self) -> str:
        """PASS, FAIL or ERROR."""
        if self.error is not None or self.result is None:
            return "ERROR"
        return "PASS" if self.result.passed else "FAIL"

    @property
    def failures(self) -> list[CriterionResult]:
        return [] if self.result is None else self.result.failures


@dataclass
class SummaryRow:
    """One line of the summary table (already formatted for display)."""

    name: str
    verdict: str
    silent_failure: str
    detection: str
    false_alarms: str
    takeover_lead: str
    wall_time: str
    anchor: str
    remark: str = ""


@dataclass
class ReportFiles:
    """Paths of the files a report wrote."""

    html: Path
    markdown: Path
    json: Path
    junit: Path
    plots: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- formatting
def _s(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return _DASH
    return f"{x:.{digits}f} s"


def with_units(value: str, units: str) -> str:
    """``"0.4 s"`` for a number, but ``"none"`` or ``"reached at none"`` stay without units."""
    value = str(value)
    return f"{value} {units}" if units and value[-1:].isdigit() else value


def slug(text: str) -> str:
    """A file- and anchor-safe name: lowercase ASCII letters, digits and dashes."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:60] or "scenario"


def _stems(records: Sequence[RunRecord]) -> list[str]:
    return [f"{i + 1:02d}-{slug(r.name)}" for i, r in enumerate(records)]


def _detection_cell(r: ScenarioResult) -> str:
    dets = r.metrics.detections
    if not dets:
        return _DASH
    delays = [d.delay_s for d in dets if d.delay_s is not None]
    missed = len(dets) - len(delays)
    parts: list[str] = []
    if delays:
        worst = max(delays)
        parts.append(f"{worst:.2f} s" if len(dets) == 1 else f"max {worst:.2f} s of {len(dets)}")
    if missed:
        parts.append(f"{missed} missed")
    return ", ".join(parts)


def summary_rows(records: Sequence[RunRecord]) -> list[SummaryRow]:
    """The summary table: scenario, verdict, silent-failure time, detection time, false
    alarms, takeover lead, wall time."""
    rows: list[SummaryRow] = []
    for rec, stem in zip(records, _stems(records), strict=True):
        r = rec.result
        if r is None:
            rows.append(SummaryRow(rec.name, "ERROR", _DASH, _DASH, _DASH, _DASH, _DASH, stem,
                                   remark=(rec.error or "").splitlines()[0] if rec.error else ""))
            continue
        m = r.metrics
        acceptable = sum(c.verdict == Verdict.ACCEPTABLE for c in r.criteria)
        remark = f"{acceptable} acceptable" if acceptable else ""
        if r.failures:
            remark = ", ".join(c.name for c in r.failures)
        rows.append(
            SummaryRow(
                name=r.name,
                verdict=rec.verdict,
                silent_failure=f"{m.silent_failure_s:.2f} s",
                detection=_detection_cell(r),
                false_alarms=str(m.false_alarms),
                takeover_lead=_s(m.takeover_lead_s),
                wall_time=f"{r.wall_time_s:.2f} s",
                anchor=stem,
                remark=remark,
            )
        )
    return rows


def summarize(records: Sequence[RunRecord]) -> dict[str, Any]:
    """Counts for the report header and ``results.json``."""
    crit = [c for r in records if r.result is not None for c in r.result.criteria]
    return {
        "scenarios": len(records),
        "passed": sum(r.verdict == "PASS" for r in records),
        "failed": sum(r.verdict == "FAIL" for r in records),
        "errors": sum(r.verdict == "ERROR" for r in records),
        "criteria": len(crit),
        "criteria_failed": sum(c.failed and not c.optional for c in crit),
        "criteria_acceptable": sum(c.verdict == Verdict.ACCEPTABLE for c in crit),
        "silent_failure_s": sum(
            r.result.metrics.silent_failure_s for r in records if r.result is not None
        ),
        "wall_time_s": sum(r.result.wall_time_s for r in records if r.result is not None),
        "ok": all(r.passed for r in records),
    }


# --------------------------------------------------------------------------- JSON
def write_results_json(
    records: Sequence[RunRecord], path: str | Path, *, command: str = ""
) -> Path:
    """All results in full plus the summary, as strict JSON (``vigil plot`` reads it back)."""
    ok = [r for r in records if r.result is not None]
    doc = {
        "format": FORMAT,
        "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "summary": summarize(records),
        "results": [r.result.to_dict() for r in ok if r.result is not None],
        "tolerances": [
            None if r.tolerance is None else r.tolerance.model_dump(mode="json") for r in ok
        ],
        "errors": [
            {"name": r.name, "source": r.source, "seed": r.seed, "error": r.error,
             "replay_command": r.replay_command}
            for r in records if r.result is None
        ],
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    return p


def read_results(path: str | Path) -> tuple[list[RunRecord], str]:
    """Records (and the original command) from ``results.json``, a single ScenarioResult JSON
    or a JSON list of them; raises :class:`ReportInputError` with the file and the reason."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ReportInputError(f"{p}: not JSON: {exc}") from None
    command = ""
    tolerances: list[Any] = []
    errors: list[Any] = []
    if isinstance(doc, dict) and "results" in doc:
        items, command = doc["results"], str(doc.get("command", ""))
        tolerances, errors = list(doc.get("tolerances") or []), list(doc.get("errors") or [])
    elif isinstance(doc, dict) and "series" in doc:
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        raise ReportInputError(f"{p}: not Vigil results (expected a 'results' list)")
    records: list[RunRecord] = []
    for i, item in enumerate(items):
        try:
            res = ScenarioResult.from_dict(item)
            tol = (
                ToleranceConfig.model_validate(tolerances[i])
                if i < len(tolerances) and tolerances[i] is not None
                else None
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportInputError(f"{p}: result {i} is malformed: {exc!r}") from None
        records.append(RunRecord.of(res, tol))
    for e in errors:
        records.append(RunRecord(str(e.get("name", "?")), e.get("source"), int(e.get("seed", 0)),
                                 None, None, str(e.get("error", "")),
                                 str(e.get("replay_command", ""))))
    return records, command


# --------------------------------------------------------------------------- JUnit
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: object) -> str:
    """Text that XML 1.0 can hold: characters it forbids (control characters, lone
    surrogates) become visible ``\\xNN`` escapes; ElementTree escapes ``<&"'>`` itself."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: xml_safe(v) for k, v in attrs.items()})
    if text is not None:
        el.text = xml_safe(text)
    return el


def _criterion_text(rec: RunRecord, c: CriterionResult) -> str:
    lines = [
        f"scenario: {rec.name}",
        f"criterion: {c.name} ({c.kind})",
        f"expected: {with_units(c.expected, c.units)}",
        f"actual: {with_units(c.actual, c.units)}",
        f"verdict: {c.verdict}" + (" (optional)" if c.optional else ""),
    ]
    if c.message:
        lines.append(f"detail: {c.message}")
    lines += [f"seed: {rec.seed}", f"replay: {rec.replay_command}"]
    return "\n".join(lines)


def junit_tree(records: Sequence[RunRecord]) -> ET.ElementTree:
    """JUnit XML: one testsuite per scenario (seed and replay command as properties), one
    testcase per criterion, expected and actual in the failure text."""
    total = sum(max(1, len(r.result.criteria)) if r.result else 1 for r in records)
    failures = sum(len(r.failures) for r in records)
    errors = sum(r.result is None for r in records)
    wall = sum(r.result.wall_time_s for r in records if r.result is not None)
    root = ET.Element("testsuites", {
        "name": "vigil", "tests": str(total), "failures": str(failures),
        "errors": str(errors), "time": f"{wall:.3f}",
    })
    for rec, stem in zip(records, _stems(records), strict=True):
        r = rec.result
        crits = r.criteria if r is not None else []
        suite = _sub(root, "testsuite", name=rec.name,
                     tests=str(max(1, len(crits))),
                     failures=str(len(rec.failures)),
                     errors=str(int(r is None)), skipped="0",
                     time=f"{r.wall_time_s:.3f}" if r is not None else "0",
                     file=rec.source or "")
        props = _sub(suite, "properties")
        _sub(props, "property", name="seed", value=str(rec.seed))
        _sub(props, "property", name="replay", value=rec.replay_command)
        _sub(props, "property", name="source", value=rec.source or "")
        _sub(props, "property", name="verdict", value=rec.verdict)
        classname = f"vigil.{stem}"
        if r is None:
            case = _sub(suite, "testcase", classname=classname, name="run", time="0")
            _sub(case, "error", rec.error or "", message=(rec.error or "error").splitlines()[0],
                 type="RunError")
            continue
        if not crits:
            _sub(suite, "testcase", classname=classname, name="run (no expectations)",
                 time=f"{r.wall_time_s:.3f}")
        for c in crits:
            case = _sub(suite, "testcase", classname=classname, name=c.name, time="0")
            text = _criterion_text(rec, c)
            if c.failed and not c.optional:
                _sub(case, "failure", text,
                     message=f"{c.name}: expected {c.expected}, actual "
                     f"{with_units(c.actual, c.units)}",
                     type=str(c.verdict))
            elif c.failed or c.verdict == Verdict.ACCEPTABLE:
                note = ("optional criterion failed (does not fail the run)" if c.failed
                        else "ACCEPTABLE: passes with a remark")
                _sub(case, "system-out", f"{note}\n{text}")
    return ET.ElementTree(root)


def write_junit(records: Sequence[RunRecord], path: str | Path) -> Path:
    """Write the JUnit XML file (UTF-8, with declaration)."""
    tree = junit_tree(records)
    ET.indent(tree)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tree.write(p, encoding="utf-8", xml_declaration=True)
    return p


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#1d1d1f}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}th{background:#f4f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1em .55em;border-radius:.6em;color:#fff;font-weight:600;
font-size:.85em}.PASS,.SUCCESS{background:#2e9d4f}.FAIL,.FAILURE{background:#d62828}
.ERROR{background:#6c1f9e}.ACCEPTABLE{background:#c58b00}
code{background:#f4f4f6;padding:.1em .3em;border-radius:3px}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.meta{color:#555}.legend span{display:inline-block;margin-right:1em}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-right:.3em}
pre{background:#f8f8f8;padding:.6em;overflow-x:auto}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _badge(v: str) -> str:
    return f'<span class="badge {_e(v)}">{_e(v)}</span>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], num: set[int] | None = None) -> str:
    """An HTML table; cells are already-escaped HTML."""
    num = num or set()
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
            for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _metrics_items(r: ScenarioResult) -> list[tuple[str, str]]:
    m = r.metrics
    states = ", ".join(f"{k} {v:.1f} s" for k, v in m.time_in_state.items() if v > 0)
    rmse = ", ".join(f"{k} {v:.2f} m" for k, v in m.rmse.items() if v is not None) or _DASH
    return [
        ("duration", f"{m.duration_s:.1f} s simulated, {m.steps} steps"),
        ("silent failure", f"{m.silent_failure_s:.2f} s"
         + (f" (first at t={m.first_silent_t:.2f} s)" if m.first_silent_t is not None else "")),
        ("wrong output (announced or not)", f"{m.wrong_output_s:.2f} s"),
        ("time in state", states or _DASH),
        ("false alarms", f"{m.false_alarms} ({m.false_alarms_per_hour:.1f} per hour of "
         f"{m.fault_free_s:.1f} s fault-free)"),
        ("takeover requested at", _s(m.takeover_requested_at)),
        ("takeover deadline", _s(m.takeover_deadline)),
        ("could no longer vouch at", _s(m.unvouchable_at)),
        ("takeover lead", _s(m.takeover_lead_s)),
        ("human took over", _s(m.took_over_at) if m.human_took_over else "no"),
        ("minimal-risk manoeuvre at", _s(m.mrm_entered_at)),
        ("position RMSE", rmse),
        ("ID switches", ", ".join(f"{k} {v}" for k, v in m.id_switches.items()) or _DASH),
        ("MOTA / IDF1", f"{_f(m.mota)} / {_f(m.idf1)} ({m.mot_source})"),
    ]


def _f(x: float | None) -> str:
    return _DASH if x is None or math.isnan(x) else f"{x:.3f}"


def _criteria_rows(r: ScenarioResult) -> list[list[str]]:
    return [
        [_e(c.name) + (" <em>(optional)</em>" if c.optional else ""), _e(c.expected),
         _e(c.actual), _e(c.units), _badge(str(c.verdict)), _e(c.message)]
        for c in r.criteria
    ]


def _detection_rows(r: ScenarioResult) -> list[list[str]]:
    return [
        [_e(d.fault), _e(d.channel or _DASH), f"{d.onset:.2f} s",
         _e(_s(d.delay_s)) if d.delay_s is not None else "<strong>missed</strong>",
         _e(d.finding_kind or d.state or _DASH)]
        for d in r.metrics.detections
    ]


def _takeover_rows(r: ScenarioResult) -> list[list[str]]:
    return [
        [f"{e.t:.2f} s", _e(e.event), _e(e.stage or _DASH),
         _e(_s(e.deadline)), _e(e.reason), _e(e.detail)]
        for e in r.takeover_events
    ]


def render_html(
    records: Sequence[RunRecord],
    plots: Sequence[dict[str, str]],
    *,
    command: str = "",
    plot_dir: str = "plots",
) -> str:
    """The HTML report (self-contained apart from the PNGs under ``plot_dir``)."""
    summ = summarize(records)
    rows = summary_rows(records)
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Vigil scenario report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>Vigil scenario report</h1>",
        f'<p class="meta">{summ["passed"]} passed, {summ["failed"]} failed, '
        f'{summ["errors"]} errors of {summ["scenarios"]} scenarios; '
        f'{summ["criteria_failed"]} of {summ["criteria"]} criteria failed. Generated {stamp}.'
        + (f"<br>Command: <code>{_e(command)}</code>" if command else "") + "</p>",
        "<h2>Summary</h2>",
        _table(
            ["scenario", "verdict", "silent failure", "detection time", "false alarms",
             "takeover lead", "wall time", "remark"],
            [[f'<a href="#{_e(x.anchor)}">{_e(x.name)}</a>', _badge(x.verdict),
              _e(x.silent_failure), _e(x.detection), _e(x.false_alarms), _e(x.takeover_lead),
              _e(x.wall_time), _e(x.remark)] for x in rows],
            num={2, 4, 5, 6},
        ),
    ]
    failing = [(rec, c) for rec in records for c in rec.failures]
    if failing:
        out.append("<h2>Failed expectations</h2>")
        out.append(_table(
            ["scenario", "criterion", "expected", "actual", "detail", "replay"],
            [[_e(rec.name), _e(c.name), _e(c.expected), _e(with_units(c.actual, c.units)),
              _e(c.message), f"<code>{_e(rec.replay_command)}</code>"] for rec, c in failing],
        ))
    legend = "".join(
        f'<span><i class="swatch" style="background:{col}"></i>{_e(n)}</span>'
        for n, col in STATE_COLOURS.items()
    )
    out.append(f'<p class="legend">Health states: {legend}</p>')
    for rec, x, pl in zip(records, rows, plots, strict=True):
        out.append(f'<section id="{_e(x.anchor)}"><h2>{_e(rec.name)} {_badge(rec.verdict)}</h2>')
        r = rec.result
        src = f"<code>{_e(rec.source)}</code>" if rec.source else "inline"
        out.append(f'<p class="meta">source {src}, seed {rec.seed}; replay: '
                   f"<code>{_e(rec.replay_command)}</code></p>")
        if r is None:
            out.append(f"<pre>{_e(rec.error or '')}</pre></section>")
            continue
        if r.description:
            out.append(f"<p>{_e(r.description)}</p>")
        if r.params:
            out.append("<p>Variant parameters: " + ", ".join(
                f"<code>{_e(k)} = {_e(v)}</code>" for k, v in r.params.items()) + "</p>")
        out.append("<h3>Criteria</h3>")
        out.append(_table(["criterion", "expected", "actual", "units", "verdict", "detail"],
                          _criteria_rows(r)) if r.criteria else "<p>No expectations.</p>")
        for key, alt in (("timeline", "timeline"), ("ground", "tracks against truth")):
            if key in pl:
                out.append(f'<img src="{_e(plot_dir)}/{_e(pl[key])}" '
                           f'alt="{_e(rec.name)}: {alt}" loading="eager">')
        if r.metrics.detections:
            out.append("<h3>Fault detection</h3>")
            out.append(_table(["fault", "channel", "onset", "detected after", "by"],
                              _detection_rows(r)))
        if r.takeover_events:
            out.append("<h3>Takeover and fallback</h3>")
            out.append(_table(["t", "event", "stage", "deadline", "reason", "detail"],
                              _takeover_rows(r)))
        out.append("<h3>Metrics</h3>")
        out.append(_table(["metric", "value"], [[_e(k), _e(v)] for k, v in _metrics_items(r)]))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


# --------------------------------------------------------------------------- Markdown
def _md(x: object) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    records: Sequence[RunRecord],
    plots: Sequence[dict[str, str]],
    *,
    command: str = "",
    plot_dir: str = "plots",
) -> str:
    """The same report as Markdown (same PNG plots, relative links)."""
    summ = summarize(records)
    rows = summary_rows(records)
    out = [
        "# Vigil scenario report", "",
        f"{summ['passed']} passed, {summ['failed']} failed, {summ['errors']} errors of "
        f"{summ['scenarios']} scenarios; {summ['criteria_failed']} of {summ['criteria']} "
        "criteria failed.", "",
    ]
    if command:
        out += [f"Command: `{command}`", ""]
    out += ["## Summary", "", _md_table(
        ["scenario", "verdict", "silent failure", "detection time", "false alarms",
         "takeover lead", "wall time", "remark"],
        [[x.name, x.verdict, x.silent_failure, x.detection, x.false_alarms, x.takeover_lead,
          x.wall_time, x.remark] for x in rows]), ""]
    failing = [(rec, c) for rec in records for c in rec.failures]
    if failing:
        out += ["## Failed expectations", "", _md_table(
            ["scenario", "criterion", "expected", "actual", "detail", "replay"],
            [[rec.name, c.name, c.expected, with_units(c.actual, c.units), c.message,
              f"`{rec.replay_command}`"] for rec, c in failing]), ""]
    for rec, pl in zip(records, plots, strict=True):
        out += [f"## {_md(rec.name)} — {rec.verdict}", "",
                f"Source `{rec.source or 'inline'}`, seed {rec.seed}; replay: "
                f"`{rec.replay_command}`", ""]
        r = rec.result
        if r is None:
            out += ["```", rec.error or "", "```", ""]
            continue
        if r.description:
            out += [r.description, ""]
        if r.params:
            out += ["Variant parameters: " + ", ".join(f"`{k} = {v}`" for k, v in r.params.items()),
                    ""]
        out += ["### Criteria", ""]
        out += [_md_table(["criterion", "expected", "actual", "units", "verdict", "detail"],
                          [[c.name + (" (optional)" if c.optional else ""), c.expected, c.actual,
                            c.units, str(c.verdict), c.message] for c in r.criteria])
                if r.criteria else "No expectations.", ""]
        for key, alt in (("timeline", "timeline"), ("ground", "tracks against truth")):
            if key in pl:
                label = re.sub(r"([\[\]\\])", r"\\\1", f"{rec.name}: {alt}")
                out += [f"![{' '.join(label.split())}]({plot_dir}/{pl[key]})", ""]
        if r.metrics.detections:
            out += ["### Fault detection", "", _md_table(
                ["fault", "channel", "onset", "detected after", "by"],
                [[d.fault, d.channel or _DASH, f"{d.onset:.2f} s",
                  _s(d.delay_s) if d.delay_s is not None else "**missed**",
                  d.finding_kind or d.state or _DASH] for d in r.metrics.detections]), ""]
        if r.takeover_events:
            out += ["### Takeover and fallback", "", _md_table(
                ["t", "event", "stage", "deadline", "reason", "detail"],
                [[f"{e.t:.2f} s", e.event, e.stage or _DASH, _s(e.deadline), e.reason, e.detail]
                 for e in r.takeover_events]), ""]
        out += ["### Metrics", "", _md_table(["metric", "value"], _metrics_items(r)), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- the folder
def _settings(rec: RunRecord) -> PlotSettings:
    tol = rec.tolerance
    if tol is None:
        return PlotSettings()
    z = tol.critical_zone
    return PlotSettings(position_m=tol.position_m, zone_x=(z.x[0], z.x[1]), zone_y=(z.y[0], z.y[1]))


_PLOT_NAME = re.compile(r"^\d{2,}-[a-z0-9-]+-(timeline|ground)\.png$")


def _remove_stale_plots(plot_dir: Path, keep: Sequence[Path]) -> None:
    """Delete plots an earlier report left in ``plot_dir`` (only files named like ours)."""
    if not plot_dir.is_dir():
        return
    kept = {p.name for p in keep}
    for p in plot_dir.glob("*.png"):
        if p.name not in kept and _PLOT_NAME.match(p.name):
            p.unlink()


def write_report(
    records: Sequence[RunRecord],
    out_dir: str | Path,
    *,
    junit_path: str | Path | None = None,
    command: str = "",
    write_json: bool = True,
) -> ReportFiles:
    """Write the whole report folder: plots, index.html, report.md, results.json, junit.xml."""
    out = Path(out_dir)
    plot_dir = out / "plots"
    out.mkdir(parents=True, exist_ok=True)
    plots: list[dict[str, str]] = []
    written: list[Path] = []
    for rec, stem in zip(records, _stems(records), strict=True):
        if rec.result is None:
            plots.append({})
            continue
        files = save_plots(rec.result, plot_dir, stem, _settings(rec))
        plots.append(files)
        written += [plot_dir / f for f in files.values()]
    _remove_stale_plots(plot_dir, keep=written)
    html_path = out / "index.html"
    html_path.write_text(render_html(records, plots, command=command), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(render_markdown(records, plots, command=command), encoding="utf-8")
    json_path = out / "results.json"
    if write_json:
        write_results_json(records, json_path, command=command)
    junit = write_junit(records, junit_path if junit_path is not None else out / "junit.xml")
    return ReportFiles(html_path, md_path, json_path, junit, written)
