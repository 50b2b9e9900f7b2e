"""Cost of one ``Supervisor.step`` (3 channels × 50 objects, detections in, vouched objects out)
next to the trackers' own cost (3 ``Tracker.step`` calls on the same detections), so the safety
layer's overhead shows as a ratio. Run: ``python benchmarks/supervisor_step.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import numpy as np

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
        t0 = time.perf_counter()
        out = self.inner.observe(ctx)
        self.times.append(time.perf_counter() - t0)
        return out

    def reset(self) -> None:
        self.inner.reset()


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
        t0 = time.perf_counter()
        out = sup.step(t, dets)
        dt = time.perf_counter() - t0
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
    args = ap.parse_args()
    data = frames(args.warmup + args.steps, args.objects)
    cfg = config()

    timed_monitors = [TimedMonitor(m) for m in build_monitors(cfg.monitors, cfg.channels)]
    full, n_out, states = run_supervisor(cfg, data, args.warmup, timed_monitors)
    bare, _, _ = run_supervisor(cfg, data, args.warmup, [])

    trackers = {c.name: Tracker(**c.tracker.model_dump(), sensor=c.name) for c in cfg.channels}
    checker = CrossChecker(cfg.crosscheck, cfg.channels)
    track_cost: list[float] = []
    cross_cost: list[float] = []
    for k, (t, dets) in enumerate(data):
        tracks = {}
        t0 = time.perf_counter()
        for c, tr in trackers.items():
            tracks[c] = tr.step(t, dets[c])
        t1 = time.perf_counter()
        checker.check(t, tracks, set())
        t2 = time.perf_counter()
        if k >= args.warmup:
            track_cost.append(t1 - t0)
            cross_cost.append(t2 - t1)

    med_s, p99_s = stats(full)
    med_b, p99_b = stats(bare)
    med_t, p99_t = stats(track_cost)
    med_c, p99_c = stats(cross_cost)
    print(f"Supervisor.step, {len(CHANNELS)} channels × {args.objects} objects, "
          f"{args.steps} steps (after {args.warmup} warm-up); objects out: "
          f"median {statistics.median(n_out):.0f}; states {dict(states)}")
    print(f"{'':34}{'median ms':>10}{'p99 ms':>10}")
    print(f"{'whole step()':34}{med_s:10.3f}{p99_s:10.3f}")
    print(f"{'3 × Tracker.step':34}{med_t:10.3f}{p99_t:10.3f}")
    print(f"{'CrossChecker.check':34}{med_c:10.3f}{p99_c:10.3f}")
    for m in timed_monitors:
        a, b = stats(m.times[args.warmup:])
        print(f"{'  monitor ' + m.spec.name:34}{a:10.3f}{b:10.3f}")
    print(f"{'step() without monitors':34}{med_b:10.3f}{p99_b:10.3f}")
    print(f"{'supervisor glue (bare − trk − xc)':34}{med_b - med_t - med_c:10.3f}")
    print(f"ratio step / trackers: {med_s / med_t:.2f}×   (target: step median ≤ 1 ms)")


if __name__ == "__main__":
    main()
