"""Randomized scenario sweeps: run many seeded variants, report rates with confidence bounds,
and save every failing variant as a replayable scenario file.

A variant is fully determined by (scenario, seed) through `sim.scenario.sample_variant`, so a
failing variant's file runs to the same result with ``vigil replay <file>``, and so does
``vigil replay <scenario> --seed N``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from scipy.stats import beta, norm

from sim.executors import Executor
from sim.report import slug
from sim.runner import run_scenario
from sim.scenario import ScenarioConfig, sample_variant

__all__ = [
    "Rate",
    "SweepReport",
    "VariantOutcome",
    "VariantTask",
    "clopper_pearson_interval",
    "interval",
    "render_sweep_markdown",
    "run_sweep",
    "run_variant",
    "save_failure",
    "sweep_rates",
    "sweep_seeds",
    "variant_yaml",
    "wilson_interval",
    "write_sweep",
]

IntervalKind = Literal["wilson", "exact"]


# --------------------------------------------------------------------------- intervals
def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (good coverage at small n and
    near 0 or 1, unlike the normal approximation). (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return (lo, hi)


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval: never under-covers; conservative. (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    a = 1.0 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return (lo, hi)


def interval(
    k: int, n: int, kind: IntervalKind = "wilson", confidence: float = 0.95
) -> tuple[float, float]:
    """The chosen 95 % (by default) interval for k successes in n trials."""
    if kind == "exact":
        return clopper_pearson_interval(k, n, confidence)
    return wilson_interval(k, n, confidence)


@dataclass
class Rate:
    """A proportion with its confidence bounds: ``k`` of ``n`` units (variants or faults)."""

    name: str
    k: int
    n: int
    low: float
    high: float
    unit: str = "variants"
    description: str = ""

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan


# --------------------------------------------------------------------------- one variant
@dataclass(frozen=True)
class VariantTask:
    """What a worker needs to run one variant (picklable: the config travels, not a path)."""

    cfg: ScenarioConfig
    seed: int


@dataclass
class VariantOutcome:
    """The small summary a worker sends back for one variant (not the full time series)."""

    seed: int
    passed: bool
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)  # name, expected, actual, ...
    silent_failure_s: float = 0.0
    faults: int = 0
    faults_detected: int = 0
    detection_delays: list[float] = field(default_factory=list)
    false_alarms: int = 0
    takeover_requested: bool = False
    took_over_before_deadline: bool | None = None
    mrm: bool = False
    takeover_lead_s: float | None = None
    simulated_s: float = 0.0
    wall_time_s: float = 0.0


def run_variant(task: VariantTask) -> VariantOutcome:
    """Run one sweep variant and summarise it; a crash is an outcome, never an exception."""
    t0 = time.perf_counter()
    try:
        r = run_scenario(task.cfg, seed=task.seed, variant=True)
    except Exception as exc:  # the sweep goes on; the crash is reported and saved
        return VariantOutcome(
            seed=task.seed, passed=False, error=f"{type(exc).__name__}: {exc}",
            wall_time_s=time.perf_counter() - t0,
        )
    m = r.metrics
    delays = [d.delay_s for d in m.detections if d.delay_s is not None]
    return VariantOutcome(
        seed=task.seed,
        passed=r.passed,
        params=dict(r.params),
        failures=[
            {"name": c.name, "kind": c.kind, "expected": c.expected, "actual": c.actual,
             "units": c.units, "message": c.message}
            for c in r.failures
        ],
        silent_failure_s=m.silent_failure_s,
        faults=len(m.detections),
        faults_detected=len(delays),
        detection_delays=[float(d) for d in delays],
        false_alarms=m.false_alarms,
        takeover_requested=m.takeover_requested_at is not None,
        took_over_before_deadline=m.took_over_before_deadline,
        mrm=m.mrm_entered_at is not None,
        takeover_lead_s=m.takeover_lead_s,
        simulated_s=m.duration_s,
        wall_time_s=r.wall_time_s,
    )


# --------------------------------------------------------------------------- rates
def sweep_rates(outcomes: Sequence[VariantOutcome], kind: IntervalKind = "wilson") -> list[Rate]:
    """Failure, crash, silent-failure, missed-detection, false-alarm, takeover, late-takeover
    and MRM rates, each with its confidence interval."""
    n = len(outcomes)

    def rate(name: str, k: int, m: int, unit: str, desc: str) -> Rate:
        lo, hi = interval(k, m, kind)
        return Rate(name, k, m, lo, hi, unit, desc)

    faults = sum(o.faults for o in outcomes)
    missed = sum(o.faults - o.faults_detected for o in outcomes)
    requested = [o for o in outcomes if o.takeover_requested]
    late = sum(o.took_over_before_deadline is False for o in requested)
    return [
        rate("failure", sum(not o.passed for o in outcomes), n, "variants",
             "a non-optional expectation failed, or the run crashed"),
        rate("crash", sum(o.error is not None for o in outcomes), n, "variants",
             "the run itself raised"),
        rate("silent failure", sum(o.silent_failure_s > 0 for o in outcomes), n, "variants",
             "wrong output while NOMINAL for any time"),
        rate("missed detection", missed, faults, "faults",
             "an injected fault never raised a finding or an escalation"),
        rate("false alarm", sum(o.false_alarms > 0 for o in outcomes), n, "variants",
             "at least one escalation with no fault to blame"),
        rate("takeover requested", len(requested), n, "variants", "a takeover was requested"),
        rate("no takeover by deadline", late, len(requested), "requests",
             "the human did not take over before the deadline"),
        rate("minimal-risk manoeuvre", sum(o.mrm for o in outcomes), n, "variants",
             "the MRM was entered"),
    ]


def _quantiles(xs: Sequence[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "p95": None, "max": None}
    s = sorted(xs)

    def q(p: float) -> float:
        i = min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))
        return float(s[i])

    return {"median": q(0.5), "p95": q(0.95), "max": float(s[-1])}


# --------------------------------------------------------------------------- failures
def variant_yaml(cfg: ScenarioConfig, seed: int) -> tuple[str, dict[str, Any]]:
    """The concrete variant for ``seed`` as scenario YAML (parameters applied, supervisor
    inline, no sweep section) and the drawn parameters."""
    variant, params = sample_variant(cfg, seed)
    data = variant.model_dump(mode="json", exclude_unset=True, by_alias=True)
    data["supervisor"] = variant.supervisor.model_dump(mode="json")
    data["seed"] = int(seed)
    data.pop("sweep", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True), params


def save_failure(
    cfg: ScenarioConfig, outcome: VariantOutcome, out_dir: str | Path, *, source: str | None
) -> Path:
    """Write a failing variant as a scenario file that ``vigil replay`` runs as is."""
    text, params = variant_yaml(cfg, outcome.seed)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{slug(cfg.name)}-seed{outcome.seed}.yaml"
    why = (
        [f"crashed: {outcome.error}"]
        if outcome.error
        else [f"{f['name']}: expected {f['expected']}, actual {f['actual']} {f['units']}".rstrip()
              for f in outcome.failures]
    )
    head = [
        f"# Failing sweep variant of {source or cfg.name}, seed {outcome.seed}",
        *[f"# failed: {line}" for line in why],
        *[f"# parameter {k} = {v!r}" for k, v in params.items()],
        f"# replay: vigil replay {path}",
        f"#     or: vigil replay {source or '<scenario>'} --seed {outcome.seed}",
    ]
    head = [" ".join(h.splitlines()) for h in head]
    path.write_text("\n".join(head) + "\n" + text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    """Everything a sweep produced: outcomes per variant, rates, failure files, timing."""

    scenario: str
    source: str | None
    seeds: list[int]
    outcomes: list[VariantOutcome]
    rates: list[Rate]
    interval: str
    engine: str
    jobs: int
    wall_s: float
    failure_files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[VariantOutcome]:
        return [o for o in self.outcomes if not o.passed]

    def detection_delay(self) -> dict[str, float | None]:
        """Median, 95th percentile and maximum detection delay over all detected faults."""
        return _quantiles([d for o in self.outcomes for d in o.detection_delays])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for r, rd in zip(self.rates, d["rates"], strict=True):
            rd["rate"] = None if math.isnan(r.rate) else r.rate
        d["detection_delay_s"] = self.detection_delay()
        d["failed_seeds"] = [o.seed for o in self.failed]
        return d


def sweep_seeds(cfg: ScenarioConfig, variants: int, start: int | None = None) -> list[int]:
    """``variants`` seeds from ``start`` (default: the first seed of the scenario's sweep range,
    else the scenario's own seed)."""
    if start is None:
        start = cfg.sweep.seeds[0] if cfg.sweep is not None else cfg.seed
    return list(range(int(start), int(start) + int(variants)))


def run_sweep(
    cfg: ScenarioConfig,
    seeds: Sequence[int],
    executor: Executor,
    *,
    source: str | None = None,
    out_dir: str | Path | None = None,
    kind: IntervalKind = "wilson",
    on_done: Callable[[VariantOutcome], None] | None = None,
) -> SweepReport:
    """Run every variant on ``executor``; failing ones are saved to ``out_dir/failures``."""
    t0 = time.perf_counter()
    tasks = [VariantTask(cfg, int(s)) for s in seeds]
    outcomes: list[VariantOutcome | None] = [None] * len(tasks)
    for i, out in executor.imap(run_variant, tasks):
        outcomes[i] = out
        if on_done is not None:
            on_done(out)
    done = [o for o in outcomes if o is not None]
    report = SweepReport(
        scenario=cfg.name, source=source, seeds=[int(s) for s in seeds], outcomes=done,
        rates=sweep_rates(done, kind), interval=kind, engine=executor.name, jobs=executor.jobs,
        wall_s=time.perf_counter() - t0,
    )
    if out_dir is not None:
        fdir = Path(out_dir) / "failures"
        report.failure_files = [
            str(save_failure(cfg, o, fdir, source=source)) for o in report.failed
        ]
    return report


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.1f} %"


def render_sweep_markdown(rep: SweepReport) -> str:
    """The sweep's rates, delays and failing variants as Markdown."""
    name = "Wilson" if rep.interval == "wilson" else "Clopper-Pearson"
    lines = [
        f"# Sweep of {rep.scenario}", "",
        f"{len(rep.outcomes)} variants (seeds {rep.seeds[0]}…{rep.seeds[-1]}) on the "
        f"{rep.engine} engine with {rep.jobs} workers in {rep.wall_s:.1f} s. "
        f"Intervals: {name} 95 %.", "",
        "| rate | count | estimate | 95 % interval | what |", "|---|---|---|---|---|",
    ] if rep.seeds else [f"# Sweep of {rep.scenario}", "", "No variants.", ""]
    for r in rep.rates:
        lines.append(f"| {r.name} | {r.k} / {r.n} {r.unit} | {_pct(r.rate)} | "
                     f"[{_pct(r.low)}, {_pct(r.high)}] | {r.description} |")
    d = rep.detection_delay()
    if d["max"] is not None:
        lines += ["", f"Detection delay: median {d['median']:.2f} s, p95 {d['p95']:.2f} s, "
                      f"max {d['max']:.2f} s."]
    if rep.failed:
        lines += ["", "## Failing variants", "", "| seed | failed | file |", "|---|---|---|"]
        files = dict(zip([o.seed for o in rep.failed], rep.failure_files, strict=False))
        for o in rep.failed:
            what = o.error or "; ".join(
                f"{f['name']} (expected {f['expected']}, actual {f['actual']})"
                for f in o.failures)
            lines.append(f"| {o.seed} | {what.replace('|', '/')} | `{files.get(o.seed, '')}` |")
    return "\n".join(lines) + "\n"


def write_sweep(rep: SweepReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``sweep.json`` (every outcome, the rates) and ``sweep.md`` into ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    jp, mp = d / "sweep.json", d / "sweep.md"
    jp.write_text(json.dumps(_finite(rep.to_dict()), indent=1, allow_nan=False), encoding="utf-8")
    mp.write_text(render_sweep_markdown(rep), encoding="utf-8")
    return jp, mp


def _finite(obj: Any) -> Any:
    """Non-finite floats → None, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
