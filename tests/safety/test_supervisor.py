"""Supervisor: the step pipeline, fail-safe paths, takeover/MRM flow, audit events, and a stateful
property test of the whole supervisor driven by a scripted monitor."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from perception.camera import PinholeCamera
from perception.detections import Detections
from perception.detectors import CallableDetector
from safety.audit import read_events, replay, verify
from safety.channels import ChannelConfig, TrackerSettings
from safety.config import AuditSettings, BudgetConfig, SupervisorConfig
from safety.context import ChannelInput, MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.handoff import TakeoverStage
from safety.supervisor import HealthState, StepOutput, Supervisor

DT = 0.1
BOX = TrackerSettings(model="box", gating="iou")
TRUTH = np.array([[10.0, -2.0], [20.0, 1.0], [30.0, 0.5], [40.0, -3.0], [15.0, 4.0]])


class Recorder:
    """An audit sink that keeps events in memory."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def append(self, kind: str, t: float, data: dict[str, Any]) -> dict[str, Any]:
        rec = {"kind": kind, "t": t, "data": data}
        self.events.append(rec)
        return rec

    def close(self) -> None:
        pass

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


class Scripted:
    """A monitor that reports whatever the test queues for the next step."""

    spec = MonitorSpec("scripted", "the test script", "none", Impact.CHANNEL, ("script.fault",))

    def __init__(self) -> None:
        self.next: list[tuple[str, str | None, Impact]] = []
        self.boom = False

    def observe(self, ctx: StepContext) -> list[Finding]:
        if self.boom:
            raise ZeroDivisionError("monitor bug")
        out = [Finding(k, "scripted", c, i, 1.0, 0.0, 0.0, f"{k} on {c or 'system'}", ctx.t)
               for k, c, i in self.next]
        self.next = []
        return out

    def reset(self) -> None:
        self.next = []


def points(t: float, rng: np.random.Generator, sensor: str, sigma: float = 0.2) -> Detections:
    p = TRUTH + rng.normal(0.0, sigma, TRUTH.shape)
    return Detections.from_points(p, t=t, sigma=sigma, scores=np.full(len(p), 0.9), sensor=sensor)


def run(sup: Supervisor, t0: float, n: int, rng: np.random.Generator,
        drop: frozenset[str] = frozenset(), **extra: Any) -> list[StepOutput]:
    outs = []
    for k in range(n):
        t = t0 + k * DT
        inputs: dict[str, Any] = {c: (None if c in drop else points(t, rng, c))
                                  for c in sup.channels}
        inputs.update(extra)
        outs.append(sup.step(t, inputs))
    return outs


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# --------------------------------------------------------------------------- nominal path
def test_nominal_two_channels_vouches_objects(rng: np.random.Generator) -> None:
    rec = Recorder()
    sup = Supervisor(SupervisorConfig.default(), audit=rec)
    outs = run(sup, 0.0, 40, rng)
    last = outs[-1]
    assert all(o.state is HealthState.NOMINAL for o in outs), [o.faults for o in outs if o.faults]
    assert len(last.objects) == len(TRUTH)
    assert all(o.corroborated for o in last.objects)
    assert last.channel_health == {"camera": True, "radar": True}
    assert last.takeover is None and last.mrm is None and last.elapsed > 0
    assert rec.kinds()[0] == "config"
    assert rec.events[0]["data"] == SupervisorConfig.default().model_dump(mode="json")
    steps = rec.of("step")
    assert len(steps) == 40 and set(steps[0]["data"]["inputs"]) == {"camera", "radar"}
    assert {"elapsed", "ego_speed", "inputs"} <= set(steps[0]["data"])


def test_covered_dropout_degrades_then_recovers(rng: np.random.Generator) -> None:
    rec = Recorder()
    sup = Supervisor(SupervisorConfig.default(), audit=rec)
    run(sup, 0.0, 20, rng)
    outs = run(sup, 2.0, 30, rng, drop=frozenset({"radar"}))
    states = [o.state for o in outs]
    assert HealthState.DEGRADED in states and HealthState.TAKEOVER_REQUESTED not in states
    first = next(o for o in outs if o.state is HealthState.DEGRADED)
    assert first.transition is not None and "camera" in first.transition.reason
    assert any(f.channel == "radar" for f in first.transition.findings)
    assert outs[-1].objects, "the healthy camera keeps the obstacles in the output"
    assert outs[-1].channel_health["radar"] is False
    back = run(sup, 5.0, 60, rng)
    t_nom = next(o.t for o in back if o.state is HealthState.NOMINAL)
    last_radar_finding = max(e["t"] for e in rec.of("finding_raised")
                             if e["data"]["channel"] == "radar")
    assert t_nom - last_radar_finding >= sup.config.timings.recover_after_s
    changes = rec.of("state_change")
    assert [(e["data"]["from"], e["data"]["to"]) for e in changes] == [
        ("nominal", "degraded"), ("degraded", "nominal")]
    assert all(e["data"]["reason"] for e in changes)


def test_all_channels_silent_goes_minimal_risk(rng: np.random.Generator) -> None:
    sup = Supervisor(SupervisorConfig.default())
    run(sup, 0.0, 10, rng)
    outs = run(sup, 1.0, 20, rng, drop=frozenset({"camera", "radar"}))
    assert outs[-1].state is HealthState.MINIMAL_RISK
    hit = next(o for o in outs if any(f.kind == "perception.unavailable" for f in o.raised))
    assert hit.state is HealthState.MINIMAL_RISK  # the same step
    assert outs[-1].mrm is not None and outs[-1].mrm.tier == "comfortable_stop"
    later = run(sup, 3.0, 20, rng)  # channels return: still latched
    assert all(o.state is HealthState.MINIMAL_RISK for o in later)
    assert sup.reset(5.0) in (HealthState.NOMINAL, HealthState.MANUAL)


# --------------------------------------------------------------------------- takeover flow
def scripted_sup(rec: Recorder | None = None, **cfg: Any) -> tuple[Supervisor, Scripted]:
    mon = Scripted()
    config = SupervisorConfig.default()
    if cfg:
        config = config.model_copy(update=cfg)
    return Supervisor(config, monitors=[mon], audit=rec), mon


def test_takeover_stages_acknowledge_and_engage(rng: np.random.Generator) -> None:
    rec = Recorder()
    sup, mon = scripted_sup(rec)
    run(sup, 0.0, 5, rng)
    mon.next = [("script.fault", "camera", Impact.CHANNEL), ("script.fault", "radar",
                                                             Impact.CHANNEL)]
    out = sup.step(0.5, {"camera": points(0.5, rng, "camera"), "radar": points(0.5, rng, "radar")})
    assert out.state is HealthState.TAKEOVER_REQUESTED and out.takeover is not None
    assert out.takeover.deadline == pytest.approx(10.5)
    assert out.takeover.reason.endswith("please take over.")
    assert set(out.takeover.affected_objects) == {o.object_id for o in out.objects}
    stages = []
    for k in range(1, 80):
        o = sup.step(0.5 + k * DT, {c: points(0.5 + k * DT, rng, c) for c in sup.channels})
        stages.append(o.takeover.stage(o.t) if o.takeover else None)
    assert [s for s in dict.fromkeys(stages)] == [
        TakeoverStage.INFORMATION, TakeoverStage.WARNING, TakeoverStage.CRITICAL]
    assert [e["data"]["stage"] for e in rec.of("takeover_stage")] == ["warning", "critical"]
    assert len(rec.of("takeover_issued")) == 1
    assert sup.acknowledge_takeover(8.5)
    assert sup.state is HealthState.MANUAL
    ack = rec.of("takeover_acknowledged")
    assert ack and ack[0]["data"]["response_time"] == pytest.approx(8.0)
    assert rec.of("state_change")[-1]["data"]["to"] == "manual"
    # faults are quiet since 0.5 s → long cleared, so automation may engage
    assert sup.engage_refusal() is None and sup.engage(8.6)
    assert sup.state is HealthState.NOMINAL


def test_takeover_deadline_starts_mrm_with_tier(rng: np.random.Generator) -> None:
    rec = Recorder()
    sup, mon = scripted_sup(rec)
    mon.next = [("script.sys", None, Impact.SYSTEM)]
    sup.step(0.0, {c: points(0.0, rng, c) for c in sup.channels}, ego_speed=10.0)
    outs = [sup.step(k * DT, {c: points(k * DT, rng, c) for c in sup.channels}, ego_speed=10.0)
            for k in range(1, 105)]
    t_mrm = next(o.t for o in outs if o.state is HealthState.MINIMAL_RISK)
    assert t_mrm == pytest.approx(10.0)
    last = outs[-1]
    assert last.mrm is not None and last.mrm.outcome == "commanded"
    # nearest in-path object (|y| ≤ 1.5 m) is at x = 20 m: at 10 m/s with 0.2 s delay and 2 m
    # margin, stopping needs 100 / (2 · 16) ≈ 3.1 m/s²: more than comfortable (2), so emergency
    assert last.mrm.tier == "emergency_stop"
    assert last.mrm.obstacle_distance == pytest.approx(20.0, abs=1.0)
    assert rec.of("mrm") and rec.of("mrm")[0]["data"]["tier"] == last.mrm.tier
    assert not sup.acknowledge_takeover(10.5)


def test_repeated_takeovers_lock_out(rng: np.random.Generator) -> None:
    sup, mon = scripted_sup()
    t = 0.0
    for _ in range(3):
        mon.next = [("script.sys", None, Impact.SYSTEM)]
        sup.step(t, {c: points(t, rng, c) for c in sup.channels})
        assert sup.state is HealthState.TAKEOVER_REQUESTED
        assert sup.acknowledge_takeover(t + 1.0)
        t += 4.0
        sup.step(t, {c: points(t, rng, c) for c in sup.channels})
        sup.engage(t)
        t += 0.1
    assert sup.locked_out and sup.state is HealthState.MANUAL
    assert "locked out" in (sup.engage_refusal() or "")
    assert sup.reset(t) is HealthState.NOMINAL and not sup.locked_out
    assert not sup.acknowledge_takeover(math.nan) and not sup.engage("soon")


# --------------------------------------------------------------------------- fail-safe paths
def test_monitor_exception_is_critical_and_names_monitor(rng: np.random.Generator) -> None:
    sup, mon = scripted_sup()
    run(sup, 0.0, 3, rng)
    mon.boom = True
    out = sup.step(0.3, {c: points(0.3, rng, c) for c in sup.channels})
    assert out.state is HealthState.MINIMAL_RISK
    (f,) = [f for f in out.raised if f.kind == "internal.monitor_error"]
    assert f.monitor == "scripted" and f.impact is Impact.CRITICAL and "scripted" in f.message
    assert out.objects, "objects stay in the output during the MRM"


def test_internal_error_anywhere_fails_safe(rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _ = scripted_sup()
    run(sup, 0.0, 3, rng)

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(sup, "_observation", broken)
    out = sup.step(0.3, {c: points(0.3, rng, c) for c in sup.channels})
    assert out.state is HealthState.MINIMAL_RISK
    assert any(f.kind == "internal.error" for f in out.raised)


def test_tracker_exception_is_channel_fault(rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _ = scripted_sup()
    run(sup, 0.0, 3, rng)

    def broken(t: float, d: Any) -> None:
        raise FloatingPointError("singular")

    monkeypatch.setattr(sup._trackers["radar"], "step", broken)
    out = sup.step(0.3, {c: points(0.3, rng, c) for c in sup.channels})
    (f,) = [f for f in out.raised if f.kind == "internal.tracker_error"]
    assert f.channel == "radar" and out.state is HealthState.DEGRADED
    assert out.objects and all(o.channels == ("camera",) for o in out.objects)


@pytest.mark.parametrize("bad_t", [math.nan, math.inf, "soon", 0.1])
def test_bad_step_time_is_a_finding(rng: np.random.Generator, bad_t: Any) -> None:
    sup, _ = scripted_sup()
    run(sup, 0.0, 5, rng)
    out = sup.step(bad_t, {c: points(0.5, rng, c) for c in sup.channels})
    assert any(f.kind == "integrity.time" for f in out.raised)
    assert out.state is HealthState.MINIMAL_RISK and out.t == pytest.approx(0.4)


def test_detector_crash_garbage_and_overrun() -> None:
    clock = {"now": 0.0}

    def tick() -> float:
        return clock["now"]

    def slow(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clock["now"] += 0.5
        return np.array([[10.0, 10.0, 20.0, 30.0]]), np.array([0.9])

    def crash(frame: np.ndarray) -> Any:
        raise MemoryError("oom")

    cfg = SupervisorConfig(channels=[
        ChannelConfig(name="cam", frame="image", tracker=BOX),
        ChannelConfig(name="cam2", frame="image", role="redundant",
                      tracker=BOX),
        ChannelConfig(name="cam3", frame="image", role="redundant",
                      tracker=BOX),
    ])
    dets = {
        "cam": CallableDetector(slow, name="slow"),
        "cam2": CallableDetector(crash, name="crash"),
        "cam3": CallableDetector(lambda f: "boxes", name="garbage"),
    }
    sup = Supervisor(cfg, detectors=dets, clock=tick)
    img = np.full((48, 64, 3), 100, np.uint8)
    ing = sup.ingest(0.0, {"cam": img, "cam2": img, "cam3": img})
    assert ing["cam"].error_kind == "detector_overrun" and ing["cam"].detections is None
    assert ing["cam"].detector_elapsed == pytest.approx(0.5)
    assert ing["cam"].image_stats is not None and ing["cam"].image_stats.brightness == 100
    assert ing["cam2"].error_kind == "detector_crash"
    assert ing["cam3"].error_kind == "detector_garbage"
    out = sup.step_ingested(0.0, ing)
    kinds = {(f.kind, f.channel) for f in out.raised}
    assert {("integrity.detector_overrun", "cam"), ("integrity.detector_crash", "cam2"),
            ("integrity.detector_garbage", "cam3")} <= kinds
    assert out.state is HealthState.TAKEOVER_REQUESTED


def test_fast_detector_feeds_tracker_and_image_checks() -> None:
    def det(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[10.0, 10.0, 20.0, 30.0]]), np.array([0.9])

    cfg = SupervisorConfig(channels=[
        ChannelConfig(name="cam", frame="image", tracker=BOX)])
    sup = Supervisor(cfg, detectors={"cam": CallableDetector(det, name="d")})
    img = np.zeros((48, 64), np.uint8)
    assert sup.ingest(0.0, {"cam": img})["cam"].detections is not None
    bad = {"cam": np.full((48, 64), np.nan)}
    assert sup.ingest(0.0, bad)["cam"].error_kind == "nan"
    assert sup.ingest(0.0, {"cam": np.zeros((4, 4, 7))})["cam"].error_kind == "shape"
    assert sup.ingest(0.0, {"cam": np.zeros((0, 5))})["cam"].error_kind == "empty"


def test_inputs_without_detector_or_malformed() -> None:
    sup = Supervisor(SupervisorConfig.default())
    ing = sup.ingest(0.0, {"camera": np.zeros((48, 64), np.uint8), "radar": {"z": [[1.0, np.nan]],
                                                                            "R": [np.eye(2)]}})
    assert ing["camera"].error_kind == "type" and "no detector" in (ing["camera"].error or "")
    assert ing["radar"].error_kind == "nan"
    ing = sup.ingest(0.0, {"radar": {"z": np.zeros((2, 3)), "R": np.zeros((2, 3, 3))}})
    assert ing["radar"].error_kind == "shape" and ing["camera"].received is False
    ing = sup.ingest(0.0, {"radar": {"zz": 1}})
    assert ing["radar"].error_kind == "type"
    box = Detections.from_boxes([[10, 10, 20, 30]], t=0.0)
    assert sup.ingest(0.0, {"radar": box})["radar"].error_kind == "space"
    many = Detections.from_points(np.ones((2000, 2)), t=0.0)
    assert sup.ingest(0.0, {"radar": many})["radar"].error_kind == "count"
    ok = sup.ingest(0.0, {"radar": {"z": [[5.0, 1.0]], "R": [np.eye(2)], "scores": [0.5],
                                    "labels": [1]}})["radar"]
    assert ok.error_kind is None and ok.detections is not None and ok.detections.t == 0.0


def test_ground_channel_converts_boxes_through_camera(rng: np.random.Generator) -> None:
    cam = PinholeCamera(fx=500, fy=500, cx=320, cy=240, width=640, height=480, mount_height=1.5)
    truth = np.array([[12.0, 1.0], [25.0, -2.0]])
    boxes = cam.ground_to_box(truth, 1.8, 1.5)
    sup = Supervisor(SupervisorConfig.default(), cameras={"camera": cam})
    ci = sup.ingest(0.0, {"camera": Detections.from_boxes(boxes, t=0.0, sensor="camera")})["camera"]
    assert ci.error_kind is None and ci.detections is not None and ci.detections.space == "point"
    np.testing.assert_allclose(np.sort(ci.detections.z, axis=0), np.sort(truth, axis=0), atol=0.2)


def test_shadow_channel_findings_are_information_only(rng: np.random.Generator) -> None:
    cfg = SupervisorConfig(channels=[
        ChannelConfig(name="camera"), ChannelConfig(name="radar", role="redundant"),
        ChannelConfig(name="candidate", role="shadow")])
    sup = Supervisor(cfg)
    outs = run(sup, 0.0, 30, rng, drop=frozenset({"candidate"}))
    outs += run(sup, 3.0, 5, rng, drop=frozenset({"candidate"}), candidate="garbage")
    assert any(f.channel == "candidate" for o in outs for f in o.raised)
    assert all(o.state is HealthState.NOMINAL for o in outs)
    assert all("candidate" not in obj.channels for obj in outs[-1].objects)


def test_unknown_channel_is_reported(rng: np.random.Generator) -> None:
    sup = Supervisor(SupervisorConfig.default())
    out = run(sup, 0.0, 1, rng, lidar=np.zeros(3))[0]
    assert any(f.kind == "integrity.unknown_channel" for f in out.raised)


def test_elapsed_override_and_overrun() -> None:
    sup = Supervisor(SupervisorConfig.default().model_copy(
        update={"budget": BudgetConfig(step_s=0.01)}))
    ing = {"camera": ChannelInput(False), "radar": ChannelInput(False)}
    out = sup.step_ingested(0.0, ing, elapsed_override=0.5)
    assert out.elapsed == 0.5 and out.overran
    out = sup.step_ingested(0.1, ing, elapsed_override=0.001)
    assert not out.overran


def test_audit_log_verifies_and_replays_decisions(rng: np.random.Generator,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    cfg = SupervisorConfig.default().model_copy(
        update={"audit": AuditSettings(path=str(path), fsync="close")})
    sup = Supervisor(cfg)  # opens the log named in the configuration
    run(sup, 0.0, 10, rng)
    run(sup, 1.0, 25, rng, drop=frozenset({"radar"}))
    run(sup, 3.5, 10, rng, radar=np.zeros(3), lidar=1)
    sup.step(4.5, {"camera": None, "radar": None}, ego_speed=3.0)
    sup.step(math.nan, {"camera": None, "radar": None})
    sup.reset(6.0)
    sup.close()
    events = read_events(path)
    assert events[0]["kind"] == "config"
    kinds = {e["kind"] for e in events}
    assert {"step", "finding_raised", "finding_cleared", "state_change", "reset"} <= kinds
    assert verify(path).ok
    report = replay(path)
    assert report.ok, report.mismatches[:2]
    assert report.n_steps == 47


# --------------------------------------------------------------------------- stateful property
class SupervisorMachine(RuleBasedStateMachine):
    """Random inputs, scripted findings, acknowledgements, engages and resets."""

    def __init__(self) -> None:
        super().__init__()
        self.rec = Recorder()
        self.mon = Scripted()
        self.sup = Supervisor(SupervisorConfig.default(), monitors=[self.mon], audit=self.rec)
        self.rng = np.random.default_rng(0)
        self.t = 0.0
        self.n_changes = 0
        self.last_serious = -math.inf
        self.state = self.sup.state

    def _check_audit(self) -> None:
        changes = self.rec.of("state_change")
        assert len(changes) == self.n_changes
        for e in changes:
            assert e["data"]["reason"].strip() and e["data"]["from"] != e["data"]["to"]

    @rule(dt=st.sampled_from([0.05, 0.1, 0.5, 1.5, 2.5, 11.0]),
          present=st.sets(st.sampled_from(["camera", "radar"])),
          script=st.lists(st.tuples(st.sampled_from(["script.a", "script.b"]),
                                    st.sampled_from([None, "camera", "radar"]),
                                    st.sampled_from(list(Impact))), max_size=2))
    def step(self, dt: float, present: set[str], script: list[Any]) -> None:
        self.t += dt
        before = self.sup.state
        self.mon.next = list(script)
        out = self.sup.step(self.t, {c: points(self.t, self.rng, c) if c in present else None
                                     for c in ("camera", "radar")})
        assert isinstance(out.state, HealthState)
        if any(i is not Impact.INFO for _, _, i in script):
            self.last_serious = self.t
        if out.state is not before:
            self.n_changes += 1
            assert out.transition is not None and out.transition.reason
        if before is HealthState.MINIMAL_RISK:
            assert out.state is HealthState.MINIMAL_RISK
        if before in (HealthState.NOMINAL, HealthState.DEGRADED, HealthState.TAKEOVER_REQUESTED):
            if any(i is Impact.CRITICAL for _, _, i in script):
                assert out.state is HealthState.MINIMAL_RISK
        if before in (HealthState.NOMINAL, HealthState.DEGRADED):
            if any(i is Impact.SYSTEM for _, _, i in script):
                assert out.state in (HealthState.TAKEOVER_REQUESTED, HealthState.MINIMAL_RISK)
        if before is HealthState.DEGRADED and out.state is HealthState.NOMINAL:
            assert self.t - self.last_serious >= self.sup.config.timings.recover_after_s - 1e-9
        if out.state is HealthState.NOMINAL:
            assert all(f.impact is Impact.INFO for f in out.faults)
        if out.state is HealthState.TAKEOVER_REQUESTED:
            assert out.takeover is not None and self.t < out.takeover.deadline
        if out.state is HealthState.MINIMAL_RISK:
            assert out.mrm is not None
        self._check_audit()

    @precondition(lambda self: self.sup.state is HealthState.TAKEOVER_REQUESTED)
    @rule()
    def acknowledge(self) -> None:
        assert self.sup.acknowledge_takeover(self.t)
        self.n_changes += 1
        assert self.sup.state is HealthState.MANUAL
        self._check_audit()

    @rule()
    def engage(self) -> None:
        before = self.sup.state
        if self.sup.engage(self.t):
            self.n_changes += 1
            assert before is HealthState.MANUAL and self.sup.state is HealthState.NOMINAL
        self._check_audit()

    @rule()
    def reset(self) -> None:
        before = self.sup.state
        after = self.sup.reset(self.t)
        if after is not before:
            self.n_changes += 1
        assert self.rec.of("reset")[-1]["data"]["reason"]
        self._check_audit()


TestSupervisorMachine = SupervisorMachine.TestCase
