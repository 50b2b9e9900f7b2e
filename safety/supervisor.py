"""`Supervisor`: the public ``step()`` that wraps perception in the safety layer.

One step: ingest each channel's input (detector run, validation) → per-channel trackers →
cross-check → monitors → latch/clear findings → health state machine → takeover request or
minimal-risk manoeuvre → audit events. ``step()`` never raises and holds no threads: anything
that goes wrong inside it is itself a finding, and an internal error fails safe (MINIMAL_RISK).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numba as nb
import numpy as np

from perception.detections import Detections
from perception.detectors import Detector, safe_detect
from perception.errors import DetectorError, InvalidDetectionsError
from perception.imagestats import ImageStats, image_stats
from perception.kernels import IN2, IN3, compiled
from perception.tracker import Tracker
from perception.tracks import Tracks
from safety.channels import ChannelConfig
from safety.config import ConfigError, ConfigProblem, SupervisorConfig
from safety.context import ChannelInput, ChannelObservation, Monitor, StepContext
from safety.crosscheck import CrossChecker, CrosscheckResult, VouchedObject
from safety.fallback import MrmCommand, plan_mrm
from safety.findings import Finding, Impact
from safety.handoff import TakeoverRequest, TakeoverStage
from safety.monitors import build_monitors
from safety.statemachine import (
    ActiveFault,
    AssessedFault,
    FaultLatch,
    HealthState,
    HealthStateMachine,
    Transition,
    assess,
    healthy_channels,
)

if TYPE_CHECKING:
    from perception.camera import PinholeCamera

__all__ = ["AuditSink", "ChannelInput", "HealthState", "StepOutput", "Supervisor"]

class AuditSink(Protocol):
    """Where decisions go: ``safety.audit.AuditLog`` or anything with the same ``append``."""

    def append(self, kind: str, t: float, data: dict[str, Any]) -> Any: ...


_SELF = "supervisor"  # monitor name on findings the supervisor itself raises


@dataclass
class StepOutput:
    """What one step vouches for: state, objects, faults with evidence, takeover, MRM, timing."""

    t: float
    state: HealthState
    objects: list[VouchedObject]
    faults: list[Finding]  # active (latched) findings
    raised: list[Finding]  # findings new this step
    cleared: list[Finding]  # findings cleared this step (quiet for the clean interval)
    takeover: TakeoverRequest | None
    mrm: MrmCommand | None
    elapsed: float  # wall seconds of the step (excluding audit writes)
    overran: bool  # elapsed beyond the step budget
    channel_health: dict[str, bool]
    transition: Transition | None = None  # the state change this step, with its reason
    locked_out: bool = False
    crosscheck: CrosscheckResult | None = field(default=None, repr=False)

    @property
    def reason(self) -> str | None:
        """Why the state changed this step (None if it did not)."""
        return None if self.transition is None else self.transition.reason


@compiled(nb.boolean(IN2, IN3))
def _all_finite(z, R):  # pragma: no cover - compiled
    """True when every entry of ``z`` and ``R`` is finite: ``np.isfinite(z).all() and
    np.isfinite(R).all()`` in one call (a channel's detections are checked every step)."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            if not np.isfinite(z[i, j]):
                return False
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            for k in range(R.shape[2]):
                if not np.isfinite(R[i, j, k]):
                    return False
    return True


def _finite(z: Any, R: Any) -> bool:
    """:func:`_all_finite`, or numpy's test for arrays the compiled test does not take."""
    try:
        return bool(_all_finite(z, R))
    except TypeError:
        return bool(np.isfinite(z).all() and np.isfinite(R).all())


def _finding(kind: str, impact: Impact, t: float, message: str, *, channel: str | None = None,
             value: float = 0.0, threshold: float = 0.0, monitor: str = _SELF) -> Finding:
    return Finding(kind=kind, monitor=monitor, channel=channel, impact=impact, value=value,
                   threshold=threshold, window=0.0, message=message, t=t)


def _invalid_kind(exc: InvalidDetectionsError) -> str:
    """Short error id for a rejected detection set."""
    r = exc.reason.lower()
    if "nan" in r or "inf" in r:
        return "nan"
    if "shape" in r:
        return "shape"
    if "numeric" in r or "dtype" in r or "string" in r or "not a number" in r:
        return "type"
    return "value"


def _detector_kind(exc: DetectorError) -> str:
    """Crash (the detector raised) or garbage (it returned something invalid)."""
    r = exc.reason.lower()
    if r.startswith(("returned", "produced invalid")) or isinstance(
        exc.__cause__, InvalidDetectionsError
    ):
        return "detector_garbage"
    if r.startswith("frame") or "timestamp" in r:
        return "frame"
    return "detector_crash"


def _image_problem(frame: np.ndarray) -> tuple[str, str] | None:
    """(error_kind, reason) when an array cannot be an image, else None."""
    if frame.size == 0:
        return "empty", f"empty image array of shape {frame.shape}"
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        return "shape", f"array of shape {frame.shape} is not an image (H, W) or (H, W, C)"
    if frame.dtype.kind not in "biuf":
        return "type", f"image dtype {frame.dtype} is not a real number type"
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        return "nan", "image contains NaN or inf"
    return None


class Supervisor:
    """The safety layer around per-channel detectors and trackers; see :meth:`step`."""

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        detectors: Mapping[str, Detector] | None = None,
        cameras: Mapping[str, PinholeCamera] | None = None,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.perf_counter,
        monitors: Sequence[Monitor] | None = None,
    ) -> None:
        self.config = config
        self.channels: dict[str, ChannelConfig] = {c.name: c for c in config.channels}
        self._roles = {n: c.role for n, c in self.channels.items()}
        self._space = {n: "box" if c.tracker.model == "box" else "point"
                       for n, c in self.channels.items()}
        self._max_detections = config.budget.max_detections
        self._budget_step = config.budget.step_s
        self._voting = [n for n, r in self._roles.items() if r != "shadow"]
        self._detectors = dict(detectors or {})
        self._cameras = dict(cameras or {})
        self._owned_audit: Any = None
        if audit is None and config.audit.path is not None:
            from safety.audit import AuditLog

            audit = self._owned_audit = AuditLog(config.audit.path, config.audit.fsync)
        self._audit = audit
        self._clock = clock
        self._trackers = {c.name: self._make_tracker(i, c) for i, c in enumerate(config.channels)}
        self._monitors: list[Monitor] = (
            list(monitors) if monitors is not None
            else list(build_monitors(config.monitors, config.channels))
        )
        self._checker = CrossChecker(config.crosscheck, config.channels)
        self._latch = FaultLatch(config.timings.recover_after_s)
        self._sm = HealthStateMachine(config.timings, config.takeover)
        self._t: float | None = None  # last accepted step time
        self._t0: float | None = None
        self._last_valid: dict[str, float | None] = dict.fromkeys(self.channels)
        self._last_elapsed = 0.0
        self._objects: list[VouchedObject] = []
        self._mrm: MrmCommand | None = None
        self._mrm_reason = ""
        self._stage: TakeoverStage | None = None
        self._events: list[tuple[str, float, dict[str, Any]]] = []
        self._encode: Callable[[ChannelInput], dict[str, Any]] | None = None
        self.audit_errors = 0
        if audit is not None:
            self._emit("config", 0.0, config.model_dump(mode="json"))
            self._flush()

    def _make_tracker(self, i: int, c: ChannelConfig) -> Tracker:
        try:
            return Tracker(**c.tracker.model_dump(), sensor=c.name)
        except (TypeError, ValueError) as exc:
            raise ConfigError("<config>", [ConfigProblem(f"channels.{i}.tracker", str(exc))]) \
                from None

    # ------------------------------------------------------------------ queries
    @property
    def state(self) -> HealthState:
        """The current health state."""
        return self._sm.state

    @property
    def takeover(self) -> TakeoverRequest | None:
        """The pending (or acknowledged) takeover request."""
        return self._sm.takeover

    @property
    def locked_out(self) -> bool:
        """True after repeated takeover requests, until :meth:`reset`."""
        return self._sm.locked_out

    @property
    def active_faults(self) -> list[Finding]:
        """Latest finding of every active (latched) fault."""
        return self._latch.findings()

    @property
    def monitors(self) -> list[Monitor]:
        """The monitors this supervisor runs, in order."""
        return list(self._monitors)

    # ------------------------------------------------------------------ step
    def step(self, t: float, inputs: Mapping[str, Any], *, ego_speed: float | None = None
             ) -> StepOutput:
        """One perception cycle: ``inputs`` maps channel name → image, Detections or None.

        Never raises; bad input of any kind becomes a finding and a defined state.
        """
        start = self._clock()
        unknown: tuple[str, ...] = ()
        try:
            ingested = self.ingest(t, inputs)
            if type(inputs) is dict and inputs.keys() <= self.channels.keys():
                pass  # the common case: no unknown channel
            elif isinstance(inputs, Mapping):
                unknown = tuple(sorted(str(k) for k in inputs if k not in self.channels))
        except Exception:  # pragma: no cover - ingest guards every channel itself
            ingested = {n: ChannelInput(received=True, error_kind="internal",
                                        error="input could not be read") for n in self.channels}
        return self.step_ingested(t, ingested, ego_speed=ego_speed, unknown_channels=unknown,
                                  _started=start)

    def ingest(self, t: float, inputs: Mapping[str, Any]) -> dict[str, ChannelInput]:
        """Turn each configured channel's raw input into a :class:`ChannelInput` (never raises)."""
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            why = f"inputs must map channel names to inputs, got {type(inputs).__name__}"
            return {n: ChannelInput(received=True, error_kind="type", error=why)
                    for n in self.channels}
        out: dict[str, ChannelInput] = {}
        for name, cfg in self.channels.items():
            try:
                value = inputs.get(name)
            except Exception as exc:
                out[name] = ChannelInput(True, error_kind="type", error=f"cannot read input: {exc}")
                continue
            try:
                out[name] = self._ingest_one(name, cfg, value, t)
            except Exception as exc:
                out[name] = ChannelInput(True, error_kind="internal",
                                         error=f"input handling failed: {type(exc).__name__}")
        return out

    def _ingest_one(self, name: str, cfg: ChannelConfig, value: Any, t: float) -> ChannelInput:
        if value is None:
            return ChannelInput(received=False)
        if isinstance(value, Detections):
            return self._accept(name, cfg, value)
        det = self._detectors.get(name)
        if det is None:
            if isinstance(value, Mapping):
                return self._from_mapping(name, cfg, value, t)
            what = (f"a {value.shape} {value.dtype} array" if isinstance(value, np.ndarray)
                    else f"a {type(value).__name__}")
            return ChannelInput(True, error_kind="type",
                                error=f"got {what} but no detector is registered for {name!r}")
        stats: ImageStats | None = None
        if isinstance(value, np.ndarray):
            bad = _image_problem(value)
            if bad is not None:
                return ChannelInput(True, error_kind=bad[0], error=bad[1])
            try:
                stats = image_stats(value)
            except Exception as exc:
                return ChannelInput(True, error_kind="frame", error=f"unreadable image: {exc}")
        try:
            tf = float(t)
        except (TypeError, ValueError):
            tf = math.nan
        start = self._clock()
        try:
            dets = safe_detect(det, value, tf)
        except DetectorError as exc:
            return ChannelInput(True, error_kind=_detector_kind(exc), error=str(exc),
                                image_stats=stats, detector_elapsed=self._clock() - start)
        except Exception as exc:  # safe_detect promises DetectorError only; do not trust it
            return ChannelInput(True, error_kind="detector_crash", error=repr(exc),
                                image_stats=stats, detector_elapsed=self._clock() - start)
        took = self._clock() - start
        if not took <= self.config.budget.detector_s:
            return ChannelInput(
                True, error_kind="detector_overrun", image_stats=stats, detector_elapsed=took,
                error=f"detector took {took * 1e3:.1f} ms, budget "
                      f"{self.config.budget.detector_s * 1e3:.1f} ms; output discarded",
            )
        res = self._accept(name, cfg, dets)
        res.image_stats, res.detector_elapsed = stats, took
        return res

    def _from_mapping(self, name: str, cfg: ChannelConfig, value: Mapping[Any, Any], t: float
                      ) -> ChannelInput:
        fields = {"z", "R", "scores", "labels", "t", "sensor", "space", "range_rate"}
        extra = [str(k) for k in value if k not in fields]
        if extra:
            return ChannelInput(True, error_kind="type",
                                error=f"unknown detection fields {sorted(extra)[:5]}")
        kw: dict[str, Any] = {"t": t, "sensor": name, **{str(k): v for k, v in value.items()}}
        try:
            n = int(np.shape(kw.get("z", ()))[0]) if np.ndim(kw.get("z", ())) else 0
        except (ValueError, TypeError, IndexError):
            n = 0
        kw.setdefault("scores", np.ones(n))
        kw.setdefault("labels", np.zeros(n, np.int64))
        if "z" not in kw or "R" not in kw:
            return ChannelInput(True, error_kind="type",
                                error="detection mapping needs at least 'z' and 'R'")
        try:
            dets = Detections(**kw)
        except InvalidDetectionsError as exc:
            return ChannelInput(True, error_kind=_invalid_kind(exc), error=str(exc))
        except TypeError as exc:
            return ChannelInput(True, error_kind="type", error=f"malformed detections: {exc}")
        return self._accept(name, cfg, dets)

    def _accept(self, name: str, cfg: ChannelConfig, dets: Detections) -> ChannelInput:
        """Validate a Detections for this channel (space, count, finiteness); convert if needed."""
        n = len(dets)
        cap = self._max_detections
        if n > cap:
            return ChannelInput(True, error_kind="count",
                                error=f"{n} detections exceed the limit of {cap} per step")
        if not _finite(dets.z, dets.R):
            return ChannelInput(True, error_kind="nan", error="detections contain NaN or inf")
        want = self._space[name]
        if dets.space == want:  # the common case: nothing to convert
            return ChannelInput(True, detections=dets)
        if cfg.frame == "ground" and dets.space == "box":
            cam = self._cameras.get(name)
            if cam is None:
                return ChannelInput(True, error_kind="space", error=(
                    f"box detections on ground-frame channel {name!r} without a camera to "
                    "project them"))
            try:
                dets = cam.detections_to_ground(dets)
            except Exception as exc:
                return ChannelInput(True, error_kind="camera",
                                    error=f"ground projection failed: {exc}")
        if dets.space != want:
            return ChannelInput(True, error_kind="space", error=(
                f"{dets.space} detections on channel {name!r}, whose tracker expects {want}"))
        return ChannelInput(True, detections=dets)

    def step_ingested(
        self,
        t: float,
        ingested: Mapping[str, ChannelInput],
        *,
        ego_speed: float | None = None,
        elapsed_override: float | None = None,
        unknown_channels: Sequence[str] = (),
        _started: float | None = None,
    ) -> StepOutput:
        """The decision part of :meth:`step` on already-ingested inputs (what replay feeds).

        ``elapsed_override`` replaces the measured wall time, so a replay reproduces decisions
        that depend on it (the deadline monitor sees the previous step's elapsed time).
        """
        start = self._clock() if _started is None else _started
        try:
            out = self._process(t, ingested, ego_speed, unknown_channels)
        except Exception as exc:
            out = self._fail_safe(exc)
        try:
            elapsed = float(elapsed_override) if elapsed_override is not None \
                else self._clock() - start
        except Exception:
            elapsed = math.nan
        out.elapsed = elapsed
        out.overran = not elapsed <= self._budget_step
        self._last_elapsed = elapsed if math.isfinite(elapsed) else self._budget_step * 2
        if self._audit is not None:
            self._record_step(t, ingested, ego_speed, elapsed, unknown_channels)
        else:
            self._events.clear()
        return out

    # ------------------------------------------------------------------ the pipeline
    def _process(self, t: Any, ingested: Mapping[str, ChannelInput], ego_speed: float | None,
                 unknown: Sequence[str]) -> StepOutput:
        try:
            tf = float(t)
        except (TypeError, ValueError, OverflowError):
            tf = math.nan
        if not math.isfinite(tf) or (self._t is not None and tf <= self._t):
            return self._bad_time(t, tf)
        dt = 0.0 if self._t is None else tf - self._t
        self._t = tf
        if self._t0 is None:
            self._t0 = tf
        own: list[Finding] = []
        ego_speed = self._checked_speed(tf, ego_speed, own)
        inputs = self._checked_inputs(ingested)
        # trackers, one per channel (guarded: an exception is a fault of that channel)
        tracks: dict[str, Tracks | None] = {}
        failed: list[str] = []
        for name, tracker in self._trackers.items():
            ci = inputs[name]
            dets = ci.detections if ci.error_kind is None else None
            if dets is not None and ci.received:
                self._last_valid[name] = tf
            try:
                tracks[name] = tracker.step(tf, dets)
            except Exception as exc:
                tracks[name] = None
                failed.append(name)
                tracker.reset()
                own.append(_finding(
                    "internal.tracker_error", Impact.CHANNEL, tf,
                    f"The {name} tracker failed ({type(exc).__name__}) and was restarted.",
                    channel=name))
        # cross-check without channels already known to be faulty
        info = Impact.INFO
        faulty = {f.channel for a in self._latch.active.values()
                  if (f := a.latest).channel is not None and f.impact is not info}
        faulty.update(failed)
        excluded = faulty if not faulty or any(n not in faulty for n in self._voting) else set()
        xc: CrosscheckResult | None
        try:
            xc = self._checker.check(tf, tracks, excluded)
            objects = list(xc.objects)
        except Exception as exc:
            xc = None
            objects = _raw_objects(tracks, self.channels, excluded)
            own.append(_finding(
                "internal.crosscheck_error", Impact.CRITICAL, tf,
                f"Cross-checking the channels failed ({type(exc).__name__}).", value=1.0))
        ctx = StepContext(
            t=tf, dt=dt,
            channels={n: self._observation(n, ci, tracks[n]) for n, ci in inputs.items()},
            crosscheck=xc, last_step_elapsed=self._last_elapsed,
            budget=self._budget_step, extra={"ego_speed": ego_speed},
        )
        found = self._run_monitors(ctx)
        found.extend(own)
        t0 = self._t0
        stale = [
            n for n in self._voting
            if tf - (lv if (lv := self._last_valid[n]) is not None else t0)
            > self.channels[n].timeout_s
        ]
        if stale and len(stale) == len(self._voting):
            found.append(_finding(
                "perception.unavailable", Impact.CRITICAL, tf,
                f"No usable perception: {', '.join(stale)} sent nothing valid within its "
                "timeout.", value=float(len(stale)), threshold=float(len(self._voting))))
        if unknown:
            found.append(_finding(
                "integrity.unknown_channel", Impact.INFO, tf,
                f"Input for unknown channel(s) {', '.join(unknown[:5])} was ignored.",
                value=float(len(unknown))))
        self._objects = objects
        return self._decide(tf, found, objects, ego_speed, xc, stale)

    @staticmethod
    def _checked_speed(tf: float, ego_speed: Any, own: list[Finding]) -> float | None:
        """A finite ego speed, or None with an information finding when it is unusable."""
        if ego_speed is None:
            return None
        try:
            v = math.nan if isinstance(ego_speed, str | bytes) else float(ego_speed)
        except (TypeError, ValueError, OverflowError):
            v = math.nan
        if math.isfinite(v):
            return v
        own.append(_finding(
            "integrity.ego_speed", Impact.INFO, tf,
            f"Ego speed {str(ego_speed)[:20]!r} is not a finite number; stopping distances "
            "cannot be judged (a minimal-risk manoeuvre would use the gentlest stop)."))
        return None

    def _checked_inputs(self, ingested: Mapping[str, ChannelInput]) -> dict[str, ChannelInput]:
        out: dict[str, ChannelInput] = {}
        ok = type(ingested) is dict or isinstance(ingested, Mapping)
        for name in self.channels:
            ci = ingested.get(name) if ok else None
            if ci is None:
                ci = ChannelInput(received=False)
            elif not isinstance(ci, ChannelInput):
                ci = ChannelInput(True, error_kind="type",
                                  error=f"ingested input is a {type(ci).__name__}")
            elif ci.error_kind is None and ci.received and not isinstance(ci.detections,
                                                                           Detections):
                ci = ChannelInput(True, error_kind="type", error="received without detections")
            out[name] = ci
        return out

    def _observation(self, name: str, ci: ChannelInput, tracks: Tracks | None
                     ) -> ChannelObservation:
        dets = ci.detections if ci.error_kind is None else None
        return ChannelObservation(
            name=name, role=self._roles[name], received=ci.received, detections=dets,
            tracks=tracks, input_error=(ci.error or ci.error_kind) if ci.error_kind else None,
            error_kind=ci.error_kind, image_stats=ci.image_stats,
            last_received_t=self._last_valid[name],
            measurement_t=None if dets is None else dets.t,
        )

    def _run_monitors(self, ctx: StepContext) -> list[Finding]:
        found: list[Finding] = []
        for m in self._monitors:
            try:
                res = m.observe(ctx)
                if res and (not isinstance(res, list)
                            or not all(isinstance(f, Finding) for f in res)):
                    raise TypeError(f"returned {type(res).__name__}, expected list[Finding]")
            except Exception as exc:
                name = getattr(getattr(m, "spec", None), "name", type(m).__name__)
                found.append(_finding(
                    "internal.monitor_error", Impact.CRITICAL, ctx.t,
                    f"The {name} monitor failed ({type(exc).__name__}); its watch is lost.",
                    channel=None, monitor=str(name)))
                continue
            if res:
                found.extend(res)
        return found

    def _decide(self, tf: float, found: list[Finding], objects: list[VouchedObject],
                ego_speed: float | None, xc: CrosscheckResult | None,
                stale: Sequence[str] = ()) -> StepOutput:
        upd = self._latch.update(tf, found)
        assessed = assess(self._latch.active.values(), self._roles)
        before = self._sm.state
        tr = self._sm.step(tf, assessed, objects)
        for f in upd.raised:
            self._emit("finding_raised", tf, f.to_dict())
        for a in upd.cleared:
            self._emit("finding_cleared", tf, {
                "kind": a.first.kind, "channel": a.first.channel, "since": a.since,
                "last_seen": a.last_seen, "message": a.latest.message})
        if tr is not None:
            self._emit("state_change", tf, tr.to_dict())
        state = self._sm.state
        takeover = self._track_takeover(tf, before, state)
        mrm = self._command_mrm(tf, state, tr, objects, ego_speed)
        health = healthy_channels(assessed, self.channels)
        for n in stale:
            health[n] = False
        return StepOutput(
            t=tf, state=state, objects=objects, faults=self._latch.findings(),
            raised=upd.raised, cleared=[a.latest for a in upd.cleared], takeover=takeover,
            mrm=mrm, elapsed=0.0, overran=False, channel_health=health, transition=tr,
            locked_out=self._sm.locked_out, crosscheck=xc,
        )

    def _track_takeover(self, tf: float, before: HealthState, state: HealthState
                        ) -> TakeoverRequest | None:
        req = self._sm.takeover
        if state is not HealthState.TAKEOVER_REQUESTED or req is None:
            self._stage = None
            return None
        stage = req.stage(tf)
        if before is not HealthState.TAKEOVER_REQUESTED:
            self._emit("takeover_issued", tf, {**req.to_dict(), "stage": str(stage),
                                               "locked_out": self._sm.locked_out})
        elif stage != self._stage:
            self._emit("takeover_stage", tf, {"stage": str(stage), "remaining": req.remaining(tf),
                                              "deadline": req.deadline})
        self._stage = stage
        return req

    def _command_mrm(self, tf: float, state: HealthState, tr: Transition | None,
                     objects: Sequence[VouchedObject], ego_speed: float | None
                     ) -> MrmCommand | None:
        if state is not HealthState.MINIMAL_RISK:
            self._mrm = None
            return None
        if tr is not None and tr.target is HealthState.MINIMAL_RISK:
            self._mrm_reason = tr.reason
        ground = [o for o in objects if getattr(o, "frame", "ground") == "ground"]
        prev = self._mrm
        cmd = plan_mrm(tf, ground, ego_speed, self.config.fallback, self._mrm_reason,
                       at_least=None if prev is None else prev.tier)
        if prev is None or (cmd.tier, cmd.outcome) != (prev.tier, prev.outcome):
            self._emit("mrm", tf, cmd.to_dict())
        self._mrm = cmd
        return cmd

    # ------------------------------------------------------------------ failure paths
    def _bad_time(self, t: Any, tf: float) -> StepOutput:
        at = self._t if self._t is not None else 0.0
        what = f"{tf}" if not math.isnan(tf) or isinstance(t, float | int) else repr(t)[:40]
        why = ("is not a finite number" if not math.isfinite(tf)
               else f"does not advance past {self._t:g} s")
        f = _finding("integrity.time", Impact.CRITICAL, at,
                     f"Step time {what} {why}; timing guarantees cannot be kept.",
                     value=tf if math.isfinite(tf) else math.nan,
                     threshold=self._t if self._t is not None else math.nan)
        return self._decide(at, [f], self._objects, None, None)

    def _fail_safe(self, exc: Exception) -> StepOutput:
        """Any internal exception: a CRITICAL finding and MINIMAL_RISK, with last objects kept."""
        at = self._t if self._t is not None else 0.0
        f = _finding("internal.error", Impact.CRITICAL, at,
                     f"Internal error in the safety layer ({type(exc).__name__}: "
                     f"{str(exc)[:120]}).")
        try:
            return self._decide(at, [f], self._objects, None, None)
        except Exception:
            if self._sm.state is not HealthState.MANUAL:
                self._sm.state = HealthState.MINIMAL_RISK
            self._latch.active.setdefault(f.key, ActiveFault(f, f, at, at))
            return StepOutput(
                t=at, state=self._sm.state, objects=list(self._objects),
                faults=self._latch.findings(), raised=[f], cleared=[], takeover=None,
                mrm=MrmCommand("emergency", 0.0, f.message, "failed", at)
                if self._sm.state is HealthState.MINIMAL_RISK else None,
                elapsed=0.0, overran=False, channel_health=dict.fromkeys(self.channels, False),
            )

    # ------------------------------------------------------------------ human / operator
    def acknowledge_takeover(self, t: float) -> bool:
        """The human took over: TAKEOVER_REQUESTED → MANUAL. False if nothing was pending."""
        req = self._sm.takeover
        at = self._op_time(t)
        if at is None or req is None:
            return False
        tr = self._sm.acknowledge(at)
        if tr is None:
            return False
        self._emit("takeover_acknowledged", at, {
            "issued_at": req.issued_at, "deadline": req.deadline,
            "response_time": at - req.issued_at})
        self._emit("state_change", at, tr.to_dict())
        self._flush()
        self._stage = None
        return True

    def engage(self, t: float) -> bool:
        """Resume automation from MANUAL when no fault is active and not locked out."""
        at = self._op_time(t)
        assessed = assess(self._latch.active.values(), self._roles)
        tr = None if at is None else self._sm.engage(at, assessed)
        if tr is None or at is None:
            return False
        self._emit("state_change", at, tr.to_dict())
        self._flush()
        return True

    @staticmethod
    def _op_time(t: Any) -> float | None:
        """An operator action's time as a finite float (None if it is not one)."""
        try:
            v = float(t)
        except (TypeError, ValueError, OverflowError):
            return None
        return v if math.isfinite(v) else None

    def engage_refusal(self) -> str | None:
        """Why :meth:`engage` would be refused now (None: it would succeed)."""
        return self._sm.engage_refusal(assess(self._latch.active.values(), self._roles))

    def reset(self, t: float) -> HealthState:
        """Explicit reset: unlatch MINIMAL_RISK and lockout; NOMINAL if no fault, else MANUAL."""
        at = self._op_time(t)
        if at is None:
            at = self._t if self._t is not None else 0.0
        assessed: list[AssessedFault] = assess(self._latch.active.values(), self._roles)
        tr = self._sm.reset(at, assessed)
        self._mrm, self._stage = None, None
        self._emit("reset", at, {"from": str(tr.source), "to": str(tr.target),
                                 "reason": tr.reason})
        if tr.source is not tr.target:
            self._emit("state_change", at, tr.to_dict())
        self._flush()
        return self._sm.state

    def close(self) -> None:
        """Close the audit log this supervisor opened from ``config.audit`` (if it did)."""
        self._flush()
        if self._owned_audit is not None:
            self._owned_audit.close()
            self._owned_audit = None

    # ------------------------------------------------------------------ audit
    def _emit(self, kind: str, t: float, data: dict[str, Any]) -> None:
        if self._audit is not None:
            self._events.append((kind, t, data))

    def _record_step(self, t: Any, ingested: Mapping[str, ChannelInput], ego_speed: float | None,
                     elapsed: float, unknown: Sequence[str]) -> None:
        try:
            if self._encode is None:
                from safety.audit import encode_input

                self._encode = encode_input
            enc = self._encode
            inputs = {}
            if isinstance(ingested, Mapping):
                inputs = {str(n): enc(ci) for n, ci in ingested.items()
                          if isinstance(ci, ChannelInput)}
            try:
                t_in: float | str = float(t)
            except (TypeError, ValueError):
                t_in = repr(t)[:60]
            at = t_in if isinstance(t_in, float) and math.isfinite(t_in) else (self._t or 0.0)
            data = {"t_input": t_in, "inputs": inputs, "elapsed": elapsed,
                    "ego_speed": ego_speed, "unknown_channels": list(unknown)}
            self._events.insert(0, ("step", at, data))
        except Exception:
            self.audit_errors += 1
        self._flush()

    def _flush(self) -> None:
        events, self._events = self._events, []
        if self._audit is None:
            return
        for kind, t, data in events:
            try:
                self._audit.append(kind, t, data)
            except Exception:
                self.audit_errors += 1


def _raw_objects(tracks: Mapping[str, Tracks | None], channels: Mapping[str, ChannelConfig],
                 excluded: set[str]) -> list[VouchedObject]:
    """Fail-safe output when cross-checking failed: every confirmed track, uncorroborated."""
    out: list[VouchedObject] = []
    k = 0
    for name, tr in tracks.items():
        cfg = channels[name]
        if tr is None or cfg.role == "shadow" or name in excluded:
            continue
        keep = np.flatnonzero(tr.confirmed)
        out.extend(
            VouchedObject(object_id=-(k + j + 1), position=tr.position[i].copy(),
                          cov=tr.position_cov[i].copy(), channels=(name,),
                          track_ids={name: int(tr.ids[i])}, corroborated=False,
                          label=int(tr.labels[i]), frame=cfg.frame)
            for j, i in enumerate(keep.tolist())
        )
        k += len(keep)
    return out
