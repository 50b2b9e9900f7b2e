"""Simulation speed: simulated seconds per wall-clock second per core, at measurement level
(sensor models hand detections to the supervisor) and at frame level (rendered images through a
real OpenCV detector). Target: >= 200x real time at measurement level.

    python benchmarks/sim_speed.py                 # scenarios from scenarios/ when present
    python benchmarks/sim_speed.py --jobs 2        # also the process-pool throughput
    python benchmarks/sim_speed.py --profile       # where the time goes (top functions)

Each figure is the best of --repeat single-process runs (one core), after a warm-up run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from host import describe, reference_ms  # noqa: E402

from sim.executors import LocalExecutor  # noqa: E402
from sim.runner import run_scenario  # noqa: E402
from sim.scenario import ScenarioConfig, load_scenario, scenario_from_mapping  # noqa: E402

TARGET = 200.0

_ACTORS = [
    {"id": 1, "kind": "vehicle", "position": [30.0, 0.0],
     "motion": {"pattern": "constant_velocity", "velocity": [10.0, 0.0]}},
    {"id": 2, "kind": "pedestrian", "position": [25.0, 3.0],
     "motion": {"pattern": "constant_velocity", "velocity": [10.0, 0.0]}},
]
_CHANNELS = [{"name": "camera", "kind": "camera", "role": "primary"},
             {"name": "radar", "kind": "radar", "role": "redundant"}]


def inline_measurement() -> ScenarioConfig:
    """Camera + radar at measurement level, a radar dropout half way."""
    return scenario_from_mapping({
        "name": "inline measurement level", "duration_s": 30.0, "seed": 1,
        "world": {"ego": {"speed": 10.0}, "actors": _ACTORS},
        "sensors": [{"kind": "camera", "channel": "camera"},
                    {"kind": "radar", "channel": "radar", "clutter_rate": 0.2}],
        "supervisor": {"channels": _CHANNELS},
        "faults": [{"kind": "dropout", "channel": "radar", "start": {"at": 15.0}}],
    })


def inline_frames() -> ScenarioConfig:
    """A rendered-frame camera (colour-blob detector) + radar."""
    return scenario_from_mapping({
        "name": "inline frame level", "duration_s": 10.0, "seed": 1,
        "world": {"ego": {"speed": 10.0}, "actors": _ACTORS[:1]},
        "sensors": [{"kind": "camera_frames", "channel": "camera"},
                    {"kind": "radar", "channel": "radar", "clutter_rate": 0.2}],
        "supervisor": {"channels": _CHANNELS},
    })


def pick(name: str, fallback: Any) -> tuple[ScenarioConfig, str]:
    path = ROOT / "scenarios" / name
    if path.is_file():
        try:
            return load_scenario(path), str(path.relative_to(ROOT))
        except Exception as exc:  # a library scenario in flux: measure the inline one instead
            print(f"  ({path.name} not loadable: {str(exc).splitlines()[0]}; using inline)")
    cfg = fallback()
    return cfg, f"inline: {cfg.name}"


def measure(cfg: ScenarioConfig, repeat: int) -> tuple[float, float, int]:
    """(best wall seconds, simulated seconds, steps) over ``repeat`` runs after a warm-up."""
    run_scenario(cfg.model_copy(update={"duration_s": min(cfg.duration_s, 2.0)}))
    best = float("inf")
    sim_s, steps = 0.0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = run_scenario(cfg)
        best = min(best, time.perf_counter() - t0)
        sim_s, steps = r.metrics.duration_s, r.metrics.steps
    return best, sim_s, steps


def _run_seed(task: tuple[ScenarioConfig, int]) -> float:
    cfg, seed = task
    return run_scenario(cfg, seed=seed).metrics.duration_s


def pool(cfg: ScenarioConfig, jobs: int, runs: int) -> tuple[float, float]:
    """(aggregate simulated s per wall s, per core) running ``runs`` seeds on ``jobs`` workers."""
    with LocalExecutor(jobs) as ex:
        ex.warm_up()
        t0 = time.perf_counter()
        sim = sum(ex.map(_run_seed, [(cfg, s) for s in range(runs)]))
        wall = time.perf_counter() - t0
    return sim / wall, sim / wall / jobs


def profile(cfg: ScenarioConfig, top: int = 18) -> str:
    prof = cProfile.Profile()
    prof.enable()
    run_scenario(cfg)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=0, help="also measure a pool of N workers")
    ap.add_argument("--profile", action="store_true", help="print the top functions")
    a = ap.parse_args()

    ref = reference_ms()
    rows = []
    for level, name, fallback in (
        ("measurement", "radar_dropout_camera_covers.yaml", inline_measurement),
        ("frame", "blur_defocus_frame_camera.yaml", inline_frames),
    ):
        cfg, label = pick(name, fallback)
        wall, sim_s, steps = measure(cfg, a.repeat)
        rows.append((level, label, cfg, sim_s, steps, wall))
    print(f"\n{'level':<12}{'scenario':<48}{'sim s':>7}{'steps':>7}{'wall s':>8}"
          f"{'ms/step':>9}{'x real time/core':>18}")
    for level, label, _cfg, sim_s, steps, wall in rows:
        print(f"{level:<12}{label:<48}{sim_s:>7.1f}{steps:>7d}{wall:>8.2f}"
              f"{1000 * wall / max(steps, 1):>9.2f}{sim_s / wall:>18.1f}")
    print(describe(min(ref, reference_ms())))
    meas = rows[0]
    speed = meas[3] / meas[5]
    verdict = "meets" if speed >= TARGET else "misses"
    print(f"measurement level: {speed:.1f}x real time per core — {verdict} the "
          f"{TARGET:.0f}x target")
    if a.jobs > 1:
        for level, label, cfg, *_ in rows:
            agg, per_core = pool(cfg, a.jobs, 2 * a.jobs)
            print(f"pool of {a.jobs} ({level}, {label}): {agg:.1f}x real time aggregate, "
                  f"{per_core:.1f}x per core")
    if a.profile:
        for level, _label, cfg, *_ in rows:
            print(f"\n--- profile, {level} level ---")
            print(profile(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
