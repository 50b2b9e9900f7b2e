"""Run one scenario: world → sensors → faults → Supervisor → human → metrics → criteria.

Every random stream is a child of the run's seed by a stable key (``world``, ``sensor/<channel>``,
``fault/<key>``, ``human``), and the supervisor's clock is the simulation clock, so the same file
and seed give the same result to the bit (wall time aside).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safety.config import SupervisorConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors import build_monitors
from safety.supervisor import StepOutput, Supervisor
from sim.criteria import Evaluation, evaluate_criteria
from sim.faults import FaultChain, SimClock, build_fault_chains, fault_key
from sim.human import Human
from sim.metrics import compute_metrics
from sim.results import (
    FaultWindow,
    FindingRecord,
    ScenarioResult,
    SeriesBuilder,
    TakeoverEvent,
    passed_from,
)
from sim.rng import child, generator, root
from sim.scenario import ScenarioConfig, load_scenario, sample_variant
from sim.sensors import (
    CameraConfig,
    FrameCameraConfig,
    RadarConfig,
    build_detector,
    make_sensor,
)
from sim.triggers import TriggerContext
from sim.world import World, WorldConfig

__all__ = ["replay_command", "run_scenario"]


def replay_command(source: str | None, seed: int, *, variant: bool = False) -> str:
    """The command that reproduces a run (``vigil run <file> --seed N``; sweep variants replay)."""
    where = shlex.quote(str(source)) if source else "<scenario>"
    verb = "replay" if variant else "run"
    return f"vigil {verb} {where} --seed {int(seed)}"


class TrackRecorder:
    """A monitor that raises nothing and keeps each channel's tracks of the latest step.

    It is how the runner sees per-channel tracks through the public monitor interface; it adds
    no finding, so decisions (and audit replays without it) are unchanged.
    """

    spec = MonitorSpec(
        name="sim.track_recorder",
        watches="per-channel tracks, for simulation metrics only",
        threshold="none",
        impact=Impact.INFO,
        kinds=(),
    )

    def __init__(self) -> None:
        self.tracks: dict[str, Any] = {}

    def observe(self, ctx: StepContext) -> list[Finding]:
        self.tracks = {n: o.tracks for n, o in ctx.channels.items()}
        return []

    def reset(self) -> None:
        self.tracks = {}


@dataclass
class _EgoBrake:
    """Applies the MRM deceleration to the world's ego (rewrites its speed profile from now)."""

    world: World
    delay: float
    decel: float = 0.0
    events: list[tuple[float, float]] = field(default_factory=list)

    def command(self, t: float, decel: float) -> None:
        if decel <= self.decel + 1e-12:
            return
        self.decel = decel
        self.events.append((t, decel))
        hook = getattr(self.world, "command_deceleration", None)
        if callable(hook):
            hook(t, decel)
            return
        v = float(self.world.ego_speed)
        t0 = t + self.delay
        prof = (
            [(t, v), (t0 + 1e-6, v), (t0 + max(v, 0.0) / decel + 2e-6, 0.0)]
            if v > 0
            else [(t, 0.0)]
        )
        ego = self.world.cfg.ego.model_copy(update={"speed_profile": prof})
        self.world.cfg = self.world.cfg.model_copy(update={"ego": ego})


def _resolve(cfg_or_path: ScenarioConfig | str | Path) -> tuple[ScenarioConfig, str | None]:
    if isinstance(cfg_or_path, ScenarioConfig):
        return cfg_or_path, None
    return load_scenario(cfg_or_path), str(cfg_or_path)


def _finding_record(f: Finding, event: str, t: float) -> FindingRecord:
    return FindingRecord(
        t=float(t),
        event=event,
        kind=f.kind,
        monitor=f.monitor,
        channel=f.channel,
        impact=str(f.impact),
        value=float(f.value),
        threshold=float(f.threshold),
        message=f.message,
    )


def _fault_windows(cfg: ScenarioConfig, chains: Mapping[str, FaultChain]) -> list[FaultWindow]:
    """One window per active interval of every fault, in config order."""
    used: dict[str, int] = {}
    out: list[FaultWindow] = []
    for i, fc in enumerate(cfg.faults):
        k = used.get(fc.channel, 0)
        used[fc.channel] = k + 1
        rt = chains[fc.channel].faults[k]
        name = fc.name or fault_key(fc, i)
        for start, end in rt.intervals:
            out.append(FaultWindow(i, name, fc.kind, fc.channel, float(start), end))
    return out


def run_scenario(
    cfg_or_path: ScenarioConfig | str | Path,
    *,
    seed: int | None = None,
    record_frames: bool = False,
    audit_path: str | Path | None = None,
    variant: bool = False,
) -> ScenarioResult:
    """Run a scenario and judge it; ``variant`` draws the sweep parameters for ``seed`` first.

    ``record_frames`` keeps the rendered frames of frame-level cameras in ``result.frames``
    (not serialised); ``audit_path`` writes the supervisor's hash-chained audit log there.
    """
    wall0 = time.perf_counter()
    cfg, source = _resolve(cfg_or_path)
    run_seed = int(cfg.seed if seed is None else seed)
    params: dict[str, Any] = {}
    if variant:
        cfg, params = sample_variant(cfg, run_seed)
    ss = root(run_seed)
    dt = 1.0 / cfg.rate_hz

    world_cfg: WorldConfig = cfg.effective_world
    world = World(world_cfg, child(ss, "world"))
    sup_cfg: SupervisorConfig = cfg.supervisor
    chan_cfg = {c.name: c for c in sup_cfg.channels}
    clock = SimClock(0.0)
    chains = build_fault_chains(cfg.faults, ss, channels=list(chan_cfg))

    sensors = {s.channel: make_sensor(s) for s in cfg.sensors}
    rngs = {s.channel: generator(ss, "sensor", s.channel) for s in cfg.sensors}
    # frame cameras that reuse another camera's frame go after their source
    order = sorted(cfg.sensors, key=lambda s: getattr(s, "source", None) is not None)
    detectors: dict[str, Any] = {}
    cameras: dict[str, Any] = {}
    for s in cfg.sensors:
        chain = chains[s.channel]
        inner = build_detector(s) if isinstance(s, FrameCameraConfig) else None
        if inner is not None or chain.needs_detector:
            detectors[s.channel] = chain.make_detector(inner, clock)
        boxes = isinstance(s, FrameCameraConfig) or (
            isinstance(s, CameraConfig) and s.output == "box"
        )
        if boxes and chan_cfg[s.channel].frame == "ground" and not isinstance(s, RadarConfig):
            cameras[s.channel] = s.intrinsics.build()

    recorder = TrackRecorder()
    monitors = [*build_monitors(sup_cfg.monitors, sup_cfg.channels), recorder]
    audit = None
    if audit_path is not None:
        from safety.audit import AuditLog

        audit = AuditLog(audit_path)
    sup = Supervisor(
        sup_cfg, detectors=detectors, cameras=cameras, audit=audit, clock=clock, monitors=monitors
    )
    human = Human(cfg.human, child(ss, "human"))
    brake = _EgoBrake(world, sup_cfg.fallback.actuation_delay_s)

    actor_ids = [str(a.id) for a in world_cfg.actors]
    channels = list(chan_cfg)
    rec = SeriesBuilder(
        actor_ids,
        channels,
        roles={n: c.role for n, c in chan_cfg.items()},
        spaces={n: ("point" if c.frame == "ground" else "box") for n, c in chan_cfg.items()},
    )
    bit = {n: 1 << (j + 1) for j, n in enumerate(channels)}
    chan_bits: dict[tuple[str, ...], int] = {}  # contributing channels → their flag bits
    n_actors = len(actor_ids)
    no_actors = np.zeros((0, 2))
    findings: list[FindingRecord] = []
    events: list[TakeoverEvent] = []
    frames: dict[str, list[Any]] = {}
    pending_ack: float | None = None
    seen_request: float | None = None
    last_stage: str | None = None
    last_mrm: tuple[str, str] | None = None

    # per sensor, in order: channel, source channel, its due() and measure(), its stream, and its
    # fault chain (None when the chain hands outputs through unchanged: no fault, no detector)
    feeds = [
        (s.channel, getattr(s, "source", None), sensors[s.channel].due,
         sensors[s.channel].measure, rngs[s.channel],
         chains[s.channel] if chains[s.channel].faults or chains[s.channel].detector else None)
        for s in order
    ]
    # only chains with faults have triggers to evaluate (update() of an empty chain is a no-op)
    updating = [chain for chain in chains.values() if chain.faults]

    def state_name() -> Any:
        return sup.state.name

    truth = world.truth()
    for i in range(cfg.steps):
        t = i * dt
        if i > 0:
            truth = world.step(t - world.t)
        clock.set(t)
        # the human's reaction lands between steps: acknowledge before this step
        if pending_ack is not None and pending_ack <= t + 1e-9:
            if sup.acknowledge_takeover(pending_ack):
                events.append(TakeoverEvent(pending_ack, "acknowledged"))
            pending_ack = None
        if updating:
            ctx = TriggerContext(
                float(truth.t), float(truth.speed), truth.ids, truth.positions, state_name
            )
            for chain in updating:
                chain.update(ctx)
        inputs: dict[str, Any] = {}
        raw: dict[str, Any] = {}
        for name, src, due, measure, rng, fchain in feeds:
            if not due(t):
                x = None
            elif src is not None:
                x = raw.get(src)
            else:
                x = measure(t, truth, rng)
            raw[name] = x
            if record_frames and isinstance(x, np.ndarray):
                frames.setdefault(name, []).append(x)
            inputs[name] = x if fchain is None else fchain.apply(t, x)
        speed = float(truth.speed)
        out: StepOutput = sup.step(t, inputs, ego_speed=speed)

        # events
        if out.raised:
            findings.extend(_finding_record(f, "raised", t) for f in out.raised)
        if out.cleared:
            findings.extend(_finding_record(f, "cleared", t) for f in out.cleared)
        stage: str | None = None
        if out.takeover is not None:
            req = out.takeover
            stage = str(req.stage(t))
            if seen_request is None or req.issued_at != seen_request:
                seen_request = req.issued_at
                events.append(
                    TakeoverEvent(
                        float(req.issued_at),
                        "issued",
                        stage,
                        float(req.deadline),
                        req.reason,
                        detail=f"affected objects {list(req.affected_objects)}",
                    )
                )
                reaction = human.respond(float(req.issued_at))
                pending_ack = reaction
            elif stage != last_stage:
                events.append(TakeoverEvent(t, "stage", stage, float(req.deadline)))
        last_stage = stage
        if out.mrm is not None:
            key = (out.mrm.tier, out.mrm.outcome)
            if key != last_mrm:
                events.append(
                    TakeoverEvent(
                        t,
                        "mrm",
                        None,
                        None,
                        out.mrm.reason,
                        detail=f"tier {out.mrm.tier}, {out.mrm.deceleration:g} m/s², "
                        f"{out.mrm.outcome}",
                    )
                )
                last_mrm = key
            brake.command(t, float(out.mrm.deceleration))

        # record (the builder packs the rows into arrays once, at the end)
        rows: list[tuple[int, Any, int]] = []
        for o in out.objects:
            if getattr(o, "frame", "ground") == "ground":
                chs = o.channels
                cb = chan_bits.get(chs) if type(chs) is tuple else None
                if cb is None:
                    cb = sum(bit.get(c, 0) for c in chs)
                    if type(chs) is tuple:
                        chan_bits[chs] = cb
                pos = o.position
                rows.append((o.object_id, pos.tolist() if type(pos) is np.ndarray else pos,
                             int(o.corroborated) | cb))
        tracks: dict[str, tuple[Any, Any, Any]] = {}
        for name, tr in recorder.tracks.items():
            if tr is not None and getattr(tr, "space", "point") == "point":
                tracks[name] = (tr.ids, tr.position, tr.confirmed)
        rec.add_run_step(
            t,
            out.state,
            truth.positions if n_actors else no_actors,
            rows,
            stage,
            speed,
            len(out.faults),
            out.overran,
            tracks,
        )
    if audit is not None:
        audit.close()

    series = rec.build()
    windows = _fault_windows(cfg, chains)
    metrics = compute_metrics(series, windows, findings, events, cfg.tolerance)
    criteria = evaluate_criteria(
        cfg.expectations, Evaluation(series, metrics, windows, findings, events, cfg.tolerance)
    )
    result = ScenarioResult(
        name=cfg.name,
        description=cfg.description,
        seed=run_seed,
        passed=passed_from(criteria),
        criteria=criteria,
        metrics=metrics,
        series=series,
        fault_windows=windows,
        findings=findings,
        takeover_events=events,
        replay_command=replay_command(source, run_seed, variant=variant),
        wall_time_s=0.0,
        source=source,
        params=params,
    )
    result.frames = frames
    result.wall_time_s = time.perf_counter() - wall0
    return result
