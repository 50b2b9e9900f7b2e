"""The ``vigil`` command line: run scenario suites, sweep and replay variants, re-plot reports,
track MOT detections, check audit logs, print JSON schemas.

Exit codes: 0 success; 1 a failed expectation (or a tampered log, a differing replay); 2
unusable input (a bad scenario file, a missing path, a bad option), always as one clear message
naming the file, key and reason, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["UsageError", "build_parser", "collect_scenarios", "main", "run_file"]

PROG = "vigil"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Unusable input from the user: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- consoles
def _out() -> Console:
    """Console on stdout (created per call so redirection and test capture work)."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120,
                   highlight=False, soft_wrap=True)


def _err() -> Console:
    """Console on stderr; errors are never wrapped, so a message stays one greppable line."""
    return Console(file=sys.stderr, width=None if sys.stderr.isatty() else 120,
                   highlight=False, soft_wrap=True)


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr; yields ``advance()``."""
    prog = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=_err(),
        transient=False,
    )
    with prog:
        task = prog.add_task(what, total=total)
        yield lambda: prog.advance(task)


def _verdict_style(v: str) -> str:
    return {"PASS": "bold green", "SUCCESS": "green", "ACCEPTABLE": "yellow", "FAIL": "bold red",
            "FAILURE": "bold red", "ERROR": "bold magenta"}.get(v, "")


# --------------------------------------------------------------------------- run
def collect_scenarios(paths: Sequence[str]) -> list[Path]:
    """Scenario files from files and directories (``*.yaml``/``*.yml`` directly inside a
    directory; a file there that is a supervisor configuration, not a scenario, is skipped)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            found = [f for f in found if not _is_supervisor_file(f)]
            if not found:
                raise UsageError(f"{p}: directory has no *.yaml scenario files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _is_supervisor_file(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # let the scenario loader report it
    return isinstance(data, dict) and "channels" in data and "sensors" not in data


def run_file(task: tuple[str, int | None]) -> Any:
    """Run one scenario file (a process-pool task): a RunRecord with the result, or with the
    error that stopped the run (a crash is reported, never raised)."""
    from sim.report import RunRecord
    from sim.runner import replay_command, run_scenario
    from sim.scenario import load_scenario

    path, seed = task
    cfg = load_scenario(path)
    use_seed = cfg.seed if seed is None else int(seed)
    try:
        r = run_scenario(cfg, seed=use_seed)
    except Exception as exc:
        tb = traceback.format_exc(limit=-6)
        return RunRecord(cfg.name, path, use_seed, None, cfg.tolerance,
                         f"{type(exc).__name__}: {exc}\n{tb}", replay_command(path, use_seed))
    r.source = path
    r.replay_command = replay_command(path, r.seed)
    return RunRecord.of(r, cfg.tolerance)


def _load_all(files: Sequence[Path]) -> list[Any]:
    """Load every scenario up front; all bad files are reported together (exit 2)."""
    from safety.config import ConfigError
    from sim.scenario import load_scenario

    cfgs, bad = [], []
    for f in files:
        try:
            cfgs.append(load_scenario(f))
        except ConfigError as exc:
            bad.append(str(exc))
    if bad:
        raise UsageError("\n".join(bad))
    return cfgs


def _summary_table(records: Sequence[Any]) -> Table:
    from sim.report import summary_rows

    tab = Table(title="Scenario results", title_justify="left")
    for col, just in (("scenario", "left"), ("verdict", "left"), ("silent failure", "right"),
                      ("detection", "right"), ("false alarms", "right"),
                      ("takeover lead", "right"), ("wall", "right")):
        tab.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for row in summary_rows(records):
        tab.add_row(escape(row.name), f"[{_verdict_style(row.verdict)}]{row.verdict}[/]",
                    row.silent_failure, row.detection, row.false_alarms, row.takeover_lead,
                    row.wall_time)
    return tab


def _failure_table(records: Sequence[Any]) -> Table | None:
    from sim.report import with_units

    rows = [(rec, c) for rec in records for c in rec.failures]
    errs = [rec for rec in records if rec.result is None]
    if not rows and not errs:
        return None
    tab = Table(title="Failed expectations", title_justify="left", title_style="bold red")
    for col in ("scenario", "criterion", "expected", "actual", "detail"):
        tab.add_column(col, overflow="fold")
    for rec, c in rows:
        tab.add_row(escape(rec.name), escape(c.name), escape(c.expected),
                    escape(with_units(c.actual, c.units)), escape(c.message))
    for rec in errs:
        first = (rec.error or "error").splitlines()[0]
        tab.add_row(escape(rec.name), "[magenta]run crashed[/]", "", "", escape(first))
    return tab


def _replay_lines(records: Sequence[Any]) -> list[str]:
    """How to reproduce each failing scenario."""
    return [f"replay {escape(rec.name)}: {escape(rec.replay_command)}"
            for rec in records if not rec.passed]


def cmd_run(a: argparse.Namespace) -> int:
    from sim.executors import LocalExecutor
    from sim.report import write_report

    files = collect_scenarios(a.paths)
    cfgs = _load_all(files)
    if a.jobs is not None and a.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    tasks = [(str(f), a.seed) for f in files]
    records: list[Any] = [None] * len(tasks)
    with LocalExecutor(a.jobs) as ex:
        ex.jobs = min(ex.jobs, len(tasks))
        ex.warm_up()
        with _progress(len(tasks), "scenarios") as advance:
            for i, rec in ex.imap(run_file, tasks):
                records[i] = rec
                advance()
    del cfgs
    out = Path(a.report)
    files_written = write_report(records, out, junit_path=a.junit, command=a.command_line)
    con = _out()
    con.print(_summary_table(records))
    ft = _failure_table(records)
    if ft is not None:
        con.print(ft)
        for line in _replay_lines(records):
            con.print(line)
    n_fail = sum(not r.passed for r in records)
    con.print(f"report: {escape(str(files_written.html))}  junit: "
              f"{escape(str(files_written.junit))}  json: {escape(str(files_written.json))}")
    if n_fail:
        con.print(f"[bold red]{n_fail} of {len(records)} scenarios failed[/]")
        return EXIT_FAILED
    con.print(f"[bold green]all {len(records)} scenarios passed[/]")
    return EXIT_OK


# --------------------------------------------------------------------------- plot
def cmd_plot(a: argparse.Namespace) -> int:
    from sim.report import read_results, write_report

    src = Path(a.results)
    records, command = read_results(src)
    if not records:
        raise UsageError(f"{src}: contains no results")
    out = Path(a.out) if a.out else src.parent
    same = out.resolve() == src.parent.resolve() and src.name == "results.json"
    files = write_report(records, out, command=command, write_json=not same)
    _out().print(f"re-rendered {len(records)} scenarios into {escape(str(out))} "
                 f"({escape(str(files.html))})")
    return EXIT_OK


# --------------------------------------------------------------------------- schema
def cmd_schema(a: argparse.Namespace) -> int:
    if a.which == "supervisor":
        from safety.config import SupervisorConfig

        schema = SupervisorConfig.json_schema()
    else:
        from sim.scenario import scenario_json_schema

        schema = scenario_json_schema()
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- sweep
def cmd_sweep(a: argparse.Namespace) -> int:
    from sim.executors import LocalExecutor, make_executor
    from sim.scenario import load_scenario, sample_variant
    from sim.sweep import run_sweep, sweep_seeds, write_sweep

    if a.variants < 1:
        raise UsageError("--variants must be at least 1")
    if a.jobs is not None and a.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if a.max_failure_rate is not None and not 0.0 <= a.max_failure_rate <= 1.0:
        raise UsageError("--max-failure-rate must be in [0, 1]")
    path = Path(a.scenario)
    if not path.is_file():
        raise UsageError(f"{path}: no such scenario file")
    cfg = load_scenario(path)
    seeds = sweep_seeds(cfg, a.variants, a.seed_start)
    sample_variant(cfg, seeds[0])  # a bad sweep section fails here, before any work
    out = Path(a.out)
    ex = make_executor(a.engine, jobs=a.jobs, address=a.address)
    try:
        if isinstance(ex, LocalExecutor):
            ex.jobs = min(ex.jobs, len(seeds))
            ex.warm_up()
        with _progress(len(seeds), f"variants of {cfg.name}") as advance:
            rep = run_sweep(cfg, seeds, ex, source=str(path), out_dir=out, kind=a.interval,
                            on_done=lambda _o: advance())
    finally:
        ex.close()
    jp, mp = write_sweep(rep, out)
    con = _out()
    name = "Wilson" if a.interval == "wilson" else "Clopper-Pearson"
    tab = Table(title=f"Sweep of {escape(cfg.name)}: {len(rep.outcomes)} variants, "
                      f"{rep.engine} engine, {rep.jobs} workers, {rep.wall_s:.1f} s "
                      f"({name} 95 % intervals)", title_justify="left")
    for col, just in (("rate", "left"), ("count", "right"), ("estimate", "right"),
                      ("95 % interval", "right"), ("what", "left")):
        tab.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rep.rates:
        est = "—" if math.isnan(r.rate) else f"{100 * r.rate:.1f} %"
        tab.add_row(r.name, f"{r.k} / {r.n} {r.unit}", est,
                    f"[{100 * r.low:.1f} %, {100 * r.high:.1f} %]", r.description)
    con.print(tab)
    d = rep.detection_delay()
    if d["max"] is not None:
        con.print(f"detection delay: median {d['median']:.2f} s, p95 {d['p95']:.2f} s, "
                  f"max {d['max']:.2f} s")
    if rep.failed:
        ft = Table(title=f"{len(rep.failed)} failing variants (saved as replayable files)",
                   title_justify="left", title_style="bold red")
        for col in ("seed", "failed", "replay"):
            ft.add_column(col)
        for o, f in zip(rep.failed, rep.failure_files, strict=True):
            what = o.error or "; ".join(
                f"{x['name']}: expected {x['expected']}, actual {x['actual']}" for x in o.failures)
            ft.add_row(str(o.seed), escape(what), escape(f"vigil replay {f}"))
        con.print(ft)
    con.print(f"summary: {escape(str(mp))}  data: {escape(str(jp))}")
    failure = rep.rates[0]
    if a.max_failure_rate is not None:
        if failure.high > a.max_failure_rate:
            con.print(f"[bold red]failure rate upper bound {100 * failure.high:.1f} % exceeds "
                      f"{100 * a.max_failure_rate:.1f} %[/]")
            return EXIT_FAILED
        return EXIT_OK
    return EXIT_FAILED if rep.failed else EXIT_OK


# --------------------------------------------------------------------------- replay
def cmd_replay(a: argparse.Namespace) -> int:
    from sim.report import RunRecord, with_units, write_report
    from sim.runner import replay_command, run_scenario
    from sim.scenario import load_scenario

    path = Path(a.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such scenario file")
    cfg = load_scenario(path)
    variant = a.seed is not None
    r = run_scenario(cfg, seed=a.seed, variant=variant, audit_path=a.audit)
    r.source = str(path)
    r.replay_command = replay_command(str(path), r.seed, variant=variant)
    con = _out()
    verdict = "PASS" if r.passed else "FAIL"
    con.print(f"[bold]{escape(r.name)}[/] seed {r.seed}: [{_verdict_style(verdict)}]{verdict}[/]"
              f"  ({r.metrics.duration_s:.1f} s simulated in {r.wall_time_s:.2f} s)")
    if r.params:
        con.print("variant parameters: " + ", ".join(
            f"{escape(k)} = {escape(repr(v))}" for k, v in r.params.items()))
    tab = Table(title="Criteria", title_justify="left")
    for col in ("criterion", "expected", "actual", "verdict", "detail"):
        tab.add_column(col)
    for c in r.criteria:
        v = str(c.verdict)
        tab.add_row(escape(c.name) + (" (optional)" if c.optional else ""), escape(c.expected),
                    escape(with_units(c.actual, c.units)), f"[{_verdict_style(v)}]{v}[/]",
                    escape(c.message))
    con.print(tab)
    m = r.metrics
    lead = "—" if m.takeover_lead_s is None else f"{m.takeover_lead_s:.2f} s"
    con.print(f"silent failure {m.silent_failure_s:.2f} s, false alarms {m.false_alarms}, "
              f"takeover lead {lead}, final state {r.series.state_names()[-1]}")
    if a.audit:
        con.print(f"audit log: {escape(str(a.audit))} (vigil audit explain {escape(a.audit)} "
                  "--at T)")
    if a.report:
        files = write_report([RunRecord.of(r, cfg.tolerance)], Path(a.report),
                             command=a.command_line)
        con.print(f"report: {escape(str(files.html))}")
    return EXIT_OK if r.passed else EXIT_FAILED


# --------------------------------------------------------------------------- track
def cmd_track(a: argparse.Namespace) -> int:
    import numpy as np

    from perception.metrics import evaluate
    from perception.mot import (
        MotSequence,
        detections_by_frame,
        read_mot,
        sample_paths,
        track_detections,
        write_mot,
    )
    from perception.tracker import Tracker

    gt_path: Path | None = Path(a.gt) if a.gt else None
    if a.sample:
        if a.detections:
            raise UsageError("give either DETECTIONS or --sample, not both")
        sample_gt, det_path = sample_paths(a.sample)
        gt_path = gt_path or sample_gt
    elif a.detections:
        det_path = Path(a.detections)
    else:
        raise UsageError("give a MOT detections file, or --sample TUD-Campus|TUD-Stadtmitte")
    dets = detections_by_frame(read_mot(det_path, min_confidence=a.min_confidence),
                               sensor="camera")
    if not dets:
        raise UsageError(f"{det_path}: no detections (after --min-confidence)")
    try:
        tracker = Tracker(model="box", gating="iou", iou_threshold=a.iou_threshold,
                          n_init=a.n_init, init_window=max(a.n_init, a.init_window),
                          max_coast=a.max_coast, max_cov_trace=1e12, sensor="camera")
    except ValueError as exc:
        raise UsageError(f"tracker settings: {exc}") from None
    t0 = time.perf_counter()
    seq = track_detections(dets, tracker)
    secs = time.perf_counter() - t0
    n_frames = max(dets) - min(dets) + 1
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mot(out, seq)
    con = _out()
    fps = n_frames / secs if secs > 0 else math.inf
    con.print(f"{escape(str(det_path))}: {n_frames} frames, "
              f"{sum(len(d) for d in dets.values())} detections → {len(np.unique(seq.ids))} "
              f"tracks, {len(seq)} boxes written to {escape(str(out))}")
    con.print(f"frames per second: {fps:.0f}")
    if gt_path is not None:
        g = read_mot(gt_path)
        keep = g.conf != 0  # MOT ground truth: 0 marks boxes to ignore
        g = MotSequence(g.frame[keep], g.ids[keep], g.xywh[keep], g.conf[keep])
        s = evaluate(g.by_frame(), seq.by_frame())
        tab = Table(title=f"Against ground truth {escape(str(gt_path))}", title_justify="left")
        for col in ("MOTA", "IDF1", "ID switches", "MOTP (1-IoU)", "false positives", "misses",
                    "frames/s"):
            tab.add_column(col, justify="right")
        tab.add_row(f"{s.mota:.3f}", f"{s.idf1:.3f}", str(s.num_switches), f"{s.motp:.3f}",
                    str(s.num_false_positives), str(s.num_misses), f"{fps:.0f}")
        con.print(tab)
        con.print(f"MOTA {s.mota:.3f}  IDF1 {s.idf1:.3f}  ID switches {s.num_switches}  "
                  f"frames/s {fps:.0f}")
    return EXIT_OK


# --------------------------------------------------------------------------- audit
def _log_path(raw: str) -> Path:
    p = Path(raw)
    if not p.is_file():
        raise UsageError(f"{p}: no such audit log")
    return p


def cmd_audit_verify(a: argparse.Namespace) -> int:
    from safety.audit import verify

    p = _log_path(a.log)
    res = verify(p, allow_unsealed=a.allow_unsealed)
    con = _out()
    if res.ok:
        con.print(f"{escape(str(p))}: [bold green]intact[/] — {escape(res.reason)}")
        return EXIT_OK
    con.print(f"{escape(str(p))}: [bold red]TAMPERED or truncated[/] — first bad line "
              f"{res.first_bad_line}: {escape(res.reason)} ({res.n_events} intact events "
              "before it)")
    return EXIT_FAILED


def _brief(decisions: Any) -> str:
    if not isinstance(decisions, list):
        return str(decisions)
    parts = []
    for d in decisions:
        if isinstance(d, dict):
            data = d.get("data") or {}
            extra = f" {data.get('from')}→{data.get('to')}" if d.get("kind") == "state_change" \
                else (f" {data.get('kind', '')}" if isinstance(data, dict) else "")
            parts.append(f"{d.get('kind')}{extra}")
        else:
            parts.append(str(d))
    return ", ".join(parts) or "nothing"


def cmd_audit_replay(a: argparse.Namespace) -> int:
    from safety.audit import replay

    p = _log_path(a.log)
    try:
        rep = replay(p)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"{p}: cannot replay: {exc}") from None
    con = _out()
    if rep.integrity is not None and not rep.integrity.ok:
        con.print(f"[yellow]warning: the log is not intact: {escape(rep.integrity.reason)}[/]")
    if rep.ok:
        con.print(f"{escape(str(p))}: replayed {rep.n_steps} steps — [bold green]every decision "
                  "identical[/]")
        return EXIT_OK
    tab = Table(title=f"{len(rep.mismatches)} decisions differ", title_justify="left",
                title_style="bold red")
    for col in ("event seq", "recorded", "replayed"):
        tab.add_column(col)
    for seq, exp, act in rep.mismatches:
        tab.add_row(str(seq), escape(_brief(exp)), escape(_brief(act)))
    con.print(tab)
    con.print(f"{escape(str(p))}: replayed {rep.n_steps} steps — [bold red]decisions differ[/]")
    return EXIT_FAILED


def cmd_audit_explain(a: argparse.Namespace) -> int:
    from safety.audit import explain

    p = _log_path(a.log)
    try:
        text = explain(p, a.at)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"{p}: cannot explain: {exc}") from None
    sys.stdout.write(text + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and help that keeps the layout of descriptions."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _cmd(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (its --help texts are the user documentation)."""
    ap = _Parser(
        prog=PROG,
        description="Vigil: perception may be wrong, but never silently.\n"
        "Run scenario suites, sweep randomized variants, replay failures, re-plot reports, "
        "track MOT detections, check audit logs.",
        epilog="Exit codes: 0 ok, 1 a failed expectation / tampered log / differing replay, "
        "2 unusable input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _cmd(sub, "run", "run scenario files and write the report",
             "Run every scenario (files, or directories of *.yaml) in a process pool, check its\n"
             "expectations, and write a report folder: index.html and report.md with plots,\n"
             "results.json (re-plot with `vigil plot`) and JUnit XML. Exits 1 when any\n"
             "expectation fails (the terminal names the scenario and criterion), 2 when a\n"
             "scenario file is unusable (file, key and reason are printed).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or directory")
    p.add_argument("--report", default="vigil-report", metavar="DIR",
                   help="report folder (default: vigil-report/)")
    p.add_argument("--junit", default=None, metavar="FILE",
                   help="JUnit XML file (default: DIR/junit.xml)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: CPU cores)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="override every scenario's seed")
    p.set_defaults(func=cmd_run)

    p = _cmd(sub, "plot", "re-render a report from saved results",
             "Re-render the plots, HTML, Markdown and JUnit report from a results.json written\n"
             "by `vigil run` (or one ScenarioResult JSON), without re-running anything.")
    p.add_argument("results", metavar="RESULT.json", help="results.json of a report")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: the folder of RESULT.json)")
    p.set_defaults(func=cmd_plot)

    p = _cmd(sub, "schema", "print a JSON Schema (for editors)",
             "Print the JSON Schema of scenario files or of the supervisor configuration, e.g.\n"
             "for YAML language servers:  vigil schema scenario > scenario.schema.json")
    p.add_argument("which", nargs="?", choices=("scenario", "supervisor"), default="scenario",
                   help="which schema (default: scenario)")
    p.set_defaults(func=cmd_schema)

    p = _cmd(sub, "sweep", "run randomized variants and report rates with confidence bounds",
             "Run N randomized variants of a scenario (its `sweep:` section draws the parameters;\n"
             "a variant is determined by its seed), report failure, silent-failure, missed-\n"
             "detection, false-alarm, takeover and MRM rates with 95 % confidence intervals, and\n"
             "save every failing variant as a replayable scenario file in DIR/failures/.\n"
             "Exits 1 when any variant fails (or, with --max-failure-rate, when the failure\n"
             "rate's upper confidence bound exceeds it).")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file")
    p.add_argument("--variants", type=int, required=True, metavar="N", help="number of variants")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="workers (default: CPU cores; with --address: the cluster's)")
    p.add_argument("--engine", choices=("local", "dask", "ray"), default="local",
                   help="where to run: local process pool (default), a Dask or a Ray cluster")
    p.add_argument("--address", default=None,
                   help="cluster address for dask/ray (default: start one locally)")
    p.add_argument("--out", default="vigil-sweep", metavar="DIR",
                   help="output folder (default: vigil-sweep/)")
    p.add_argument("--seed-start", type=int, default=None, metavar="N",
                   help="first seed (default: the scenario's sweep range start)")
    p.add_argument("--interval", choices=("wilson", "exact"), default="wilson",
                   help="confidence interval: Wilson score (default) or exact Clopper-Pearson")
    p.add_argument("--max-failure-rate", type=float, default=None, metavar="R",
                   help="pass while the failure rate's upper 95 %% bound is at most R")
    p.set_defaults(func=cmd_sweep)

    p = _cmd(sub, "replay", "re-run a saved failing variant and show its verdicts",
             "Re-run a failing variant saved by `vigil sweep` (DIR/failures/*.yaml), or a\n"
             "scenario's sweep variant with --seed N, and show each criterion's verdict.\n"
             "Exits 1 when an expectation fails.")
    p.add_argument("file", metavar="FILE", help="saved variant or scenario file")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="run the scenario's sweep variant for this seed")
    p.add_argument("--audit", default=None, metavar="LOG",
                   help="also write the supervisor's audit log (for `vigil audit explain`)")
    p.add_argument("--report", default=None, metavar="DIR", help="also write a report folder")
    p.set_defaults(func=cmd_replay)

    p = _cmd(sub, "track", "track MOT-format detections (optionally score against ground truth)",
             "Run Vigil's box tracker (SORT-like: Kalman box model, IoU gating, Hungarian) over\n"
             "MOT-format detections and write MOT-format tracks. With ground truth (--gt, or the\n"
             "shipped samples) print MOTA, IDF1, ID switches and frames per second. The samples\n"
             "TUD-Campus and TUD-Stadtmitte ship with py-motmetrics\n"
             "(pip install 'vigil[metrics]').")
    p.add_argument("detections", nargs="?", metavar="DETECTIONS", help="MOT detections file")
    p.add_argument("--sample", choices=("TUD-Campus", "TUD-Stadtmitte"), default=None,
                   help="use a shipped sample sequence (detections and ground truth)")
    p.add_argument("--gt", default=None, metavar="GT", help="MOT ground-truth file")
    p.add_argument("--out", default="tracks.txt", metavar="FILE",
                   help="MOT tracks output (default: tracks.txt)")
    p.add_argument("--iou-threshold", type=float, default=0.3, help="IoU gate (default 0.3)")
    p.add_argument("--n-init", type=int, default=3, help="hits to confirm a track (default 3)")
    p.add_argument("--init-window", type=int, default=3,
                   help="frames in which the n-init hits must fall (default 3)")
    p.add_argument("--max-coast", type=float, default=1.0,
                   help="frames a track survives without a detection (default 1)")
    p.add_argument("--min-confidence", type=float, default=-math.inf,
                   help="drop detections below this confidence")
    p.set_defaults(func=cmd_track)

    p = _cmd(sub, "audit", "verify, replay or explain a supervisor audit log",
             "Work with the hash-chained audit log the supervisor writes.")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser)
    q = _cmd(asub, "verify", "check the hash chain and seal",
             "Check every line's hash, sequence number and chain link, and the final seal.\n"
             "Exits 1 on any edit, deletion, reordering or truncation, naming the first bad line.")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--allow-unsealed", action="store_true",
                   help="accept a log that is still being written (no seal yet)")
    q.set_defaults(func=cmd_audit_verify)
    q = _cmd(asub, "replay", "re-run the logged inputs and compare decisions",
             "Rebuild the supervisor from the logged configuration, feed it every logged input\n"
             "and operator action, and report each decision that differs. Exits 1 if any does.")
    q.add_argument("log", metavar="LOG")
    q.set_defaults(func=cmd_audit_replay)
    q = _cmd(asub, "explain", "why was the system in its state at time T",
             "Explain, in plain words, the state at time T: the last state change, its reason,\n"
             "and the root-cause finding with what it escalated.")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--at", type=float, required=True, metavar="T", help="time in seconds")
    q.set_defaults(func=cmd_audit_explain)
    p.set_defaults(func=lambda _a: _missing(p))
    return ap


def _missing(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return EXIT_USAGE


def _announce_first_compile() -> None:
    """Say so when the compiled kernels have no on-disk cache yet (the first run after an
    install compiles them all, about a minute; later runs load them in a second or two)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("perception")
    if spec is None or spec.origin is None or os.environ.get("NUMBA_CACHE_DIR"):
        return
    cache = Path(spec.origin).parent / "__pycache__"
    if not any(cache.glob("kernels.*.nbi")):
        _err().print(f"{PROG}: compiling the kernels once (first run after install, about a "
                     "minute; cached for later runs)…")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vigil`` console script; returns the exit code."""
    _announce_first_compile()
    from perception.errors import PerceptionError
    from safety.config import ConfigError
    from sim.executors import ExecutorUnavailable
    from sim.report import ReportInputError

    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        a = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(a, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    a.command_line = shlex.join([PROG, *args_list])
    try:
        return int(a.func(a))
    except (UsageError, ConfigError, ReportInputError, PerceptionError,
            ExecutorUnavailable) as exc:
        _err().print(f"[bold red]{PROG}: error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _err().print(f"[bold red]{PROG}: error:[/] {escape(where + (exc.strerror or str(exc)))}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err().print(f"{PROG}: interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
