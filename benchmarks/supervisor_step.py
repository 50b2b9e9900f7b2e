"""Cost of one ``Supervisor.step`` (3 channels × 50 objects, detections in, vouched objects out):
the headline from a plain run (nothing wrapped), then a second, instrumented run split into
trackers / cross-check / monitors / rest (timers around each part add their own cost), with the
safety layer's overhead as a ratio to the trackers' own cost. Also reports the findings raised
on this clean, consistent data (there should be none beyond the chi-square levels' rate), and a
host reference workload timed in the same process (shared hosts drift in speed).
Run: ``python benchmarks/supervisor_step.py [--steps N] [--objects N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an install
sys.path.insert(0, str(Path(__file__).resolve().parent))

from host import describe, reference_ms

from perception.detections import Detections
from perception.tracker import Tracker
from safety.channels import ChannelConfig, FieldOfView, TrackerSettings
from safety.config import SupervisorConfig
from safety.context import Monitor, StepContext
from safety.crosscheck import CrossChecker
from safety.findings import Finding
from safety.monitors import MonitorsConfig, build_monitors
from safety.supervisor import Supervisor

CHANNELS = ("camera", "radar", "lidar")
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}  # cpu: robust on a busy machine
_clock = [time.perf_counter]


def clock() -> float:
    """The selected clock (``--clock``), in seconds."""
    return _clock[0]()

DT = 0.05


def make_world(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Objects on a grid ahead (≥ 5 m apart, x from 12 m, |y| ≤ 15 m), each swaying ≤ 1 m."""
    cols = 5
    k = np.arange(n)
    pos = np.column_stack([12.0 + 5.0 * (k // cols), -12.0 + 6.0 * (k % cols)])
    amp = rng.uniform(0.3, 1.0, (n, 2))
    return pos, amp


def frames(steps: int, n: int, seed: int = 0) -> list[tuple[float, dict[str, Detections]]]:
    rng = np.random.default_rng(seed)
    pos, amp = make_world(n, rng)
    out = []
    for k in range(steps):
        t = k * DT
        p = pos + amp * np.sin(0.2 * t)
        dets = {c: Detections.from_points(p + rng.normal(0, 0.3, p.shape), t=t, sigma=0.3,
                                          scores=np.full(n, 0.9), sensor=c) for c in CHANNELS}
        out.append((t, dets))
    return out


def config() -> SupervisorConfig:
    fov = FieldOfView(azimuth_min_deg=-80, azimuth_max_deg=80, range_max=120.0)
    roles = ("primary", "redundant", "redundant")
    return SupervisorConfig(channels=[
        ChannelConfig(name=c, role=r, fov=fov, expected_rate_hz=1 / DT,  # type: ignore[arg-type]
                      tracker=TrackerSettings(gate_probability=0.99999))
        for c, r in zip(CHANNELS, roles, strict=True)
    ], monitors=MonitorsConfig(step_rate_hz=1 / DT))


def stats(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1e3
    return float(np.median(a)), float(np.percentile(a, 99))


class TimedMonitor:
    """Wraps a monitor to add up the wall time of its ``observe`` calls."""

    def __init__(self, inner: Monitor) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.times: list[float] = []

    def observe(self, ctx: StepContext) -> list[Finding]:
        t0 = clock()
        out = self.inner.observe(ctx)
        self.times.append(clock() - t0)
        return out

    def reset(self) -> None:
        self.inner.reset()


class Timed:
    """Wraps an object so that calls of one method add up their wall time per step."""

    def __init__(self, inner: Any, method: str, sink: list[float]) -> None:
        self._inner, self._sink = inner, sink
        fn = getattr(inner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                sink[-1] += clock() - t0

        setattr(self, method, timed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run_split(
    cfg: SupervisorConfig, data: list[tuple[float, dict[str, Detections]]], warmup: int,
) -> tuple[dict[str, list[float]], Counter[str], Counter[str]]:
    """Per-step wall time of step() and of its trackers, cross-check and monitors (same run)."""
    parts: dict[str, list[float]] = {k: [] for k in ("step", "trackers", "crosscheck", "monitors")}
    monitors = [Timed(m, "observe", parts["monitors"])
                for m in build_monitors(cfg.monitors, cfg.channels)]
    sup = Supervisor(cfg, monitors=monitors)
    sup._trackers = {n: Timed(tr, "step", parts["trackers"])  # type: ignore[misc]
                     for n, tr in sup._trackers.items()}
    sup._checker = Timed(sup._checker, "check", parts["crosscheck"])  # type: ignore[assignment]
    states: Counter[str] = Counter()
    raised: Counter[str] = Counter()
    for k, (t, dets) in enumerate(data):
        for v in parts.values():
            v.append(0.0)
        t0 = clock()
        out = sup.step(t, dets)
        parts["step"][-1] = clock() - t0
        states[str(out.state)] += 1
        raised.update(f"{f.kind}" + (f"[{f.channel}]" if f.channel else "") for f in out.raised)
        if k < warmup:
            for v in parts.values():
                v.pop()
    return parts, states, raised


def run_supervisor(
    cfg: SupervisorConfig, data: list[tuple[float, dict[str, Detections]]], warmup: int,
    monitors: list[TimedMonitor] | None = None,
) -> tuple[list[float], list[int], Counter[str]]:
    """Per-step wall times (after warm-up), objects out, and states seen."""
    sup = Supervisor(cfg, monitors=monitors)
    times: list[float] = []
    n_out: list[int] = []
    states: Counter[str] = Counter()
    for k, (t, dets) in enumerate(data):
        t0 = clock()
        out = sup.step(t, dets)
        dt = clock() - t0
        if k >= warmup:
            times.append(dt)
            n_out.append(len(out.objects))
            states[str(out.state)] += 1
    return times, n_out, states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall (perf_counter) or cpu (this thread's CPU time: not inflated when "
                    "other processes compete for the cores)")
    args = ap.parse_args()
    _clock[0] = CLOCKS[args.clock]
    data = frames(args.warmup + args.steps, args.objects)
    cfg = config()

    ref = reference_ms()
    plain, n_out, _ = run_supervisor(cfg, data, args.warmup)
    parts, states, raised = run_split(cfg, data, args.warmup)
    timed_monitors = [TimedMonitor(m) for m in build_monitors(cfg.monitors, cfg.channels)]
    run_supervisor(cfg, data, args.warmup, timed_monitors)

    trackers = {c.name: Tracker(**c.tracker.model_dump(), sensor=c.name) for c in cfg.channels}
    checker = CrossChecker(cfg.crosscheck, cfg.channels)
    track_cost: list[float] = []
    cross_cost: list[float] = []
    for k, (t, dets) in enumerate(data):
        tracks = {}
        t0 = clock()
        for c, tr in trackers.items():
            tracks[c] = tr.step(t, dets[c])
        t1 = clock()
        checker.check(t, tracks, set())
        t2 = clock()
        if k >= args.warmup:
            track_cost.append(t1 - t0)
            cross_cost.append(t2 - t1)

    step = np.asarray(parts["step"])
    rest = step - sum(np.asarray(parts[k]) for k in ("trackers", "crosscheck", "monitors"))
    med_t = stats(parts["trackers"])[0]
    print(f"Supervisor.step, {len(CHANNELS)} channels × {args.objects} objects, "
          f"{args.steps} steps (after {args.warmup} warm-up); objects out: "
          f"median {statistics.median(n_out):.0f}; states {dict(states)}; {args.clock} clock")
    print(f"findings raised on clean data: {dict(raised) or 'none'}")
    print(describe(min(ref, reference_ms())))
    a, b = stats(plain)
    print(f"{'Supervisor.step (plain run)':34}{a:10.3f}{b:10.3f}   median / p99 ms; target: median "
          f"≤ 1 ms — {'met' if a <= 1.0 else 'NOT met'}")
    print(f"{'instrumented run, split':34}{'median ms':>10}{'p99 ms':>10}{'÷ trackers':>12}")
    for name, xs in (("whole step()", parts["step"]), ("  trackers (3 × Tracker.step)",
                     parts["trackers"]), ("  CrossChecker.check", parts["crosscheck"]),
                     ("  monitors (all)", parts["monitors"]), ("  rest (supervisor glue)",
                     rest.tolist())):
        a, b = stats(xs)
        print(f"{name:34}{a:10.3f}{b:10.3f}{a / med_t:11.2f}×")
    print("standalone (outside the supervisor):")
    for name, xs in (("  3 × Tracker.step", track_cost), ("  CrossChecker.check", cross_cost)):
        a, b = stats(xs)
        print(f"{name:34}{a:10.3f}{b:10.3f}")
    for m in timed_monitors:
        a, b = stats(m.times[args.warmup:])
        print(f"{'  monitor ' + m.spec.name:34}{a:10.3f}{b:10.3f}")
    med_s = float(np.median(step)) * 1e3
    print(f"ratio step / trackers: {med_s / med_t:.2f}×; safety layer alone (step − trackers): "
          f"{med_s - med_t:.3f} ms (instrumented run)")


if __name__ == "__main__":
    main()
