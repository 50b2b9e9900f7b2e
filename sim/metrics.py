"""Metrics every scenario reports, computed from a recorded run (sim.results.TimeSeries).

Definitions (all times are simulated seconds; a step's state lasts until the next step):

- **wrong output** at a step: some ground-truth actor that has been inside the critical zone for
  at least ``entry_grace_s`` (time to confirm a new track) is *missing* from
  the supervisor's output (no output object within the association gate after a one-to-one
  assignment) or is *off* (its assigned object is farther than the position tolerance).
- **silent failure time**: total duration of steps whose output is wrong while the supervisor
  claims NOMINAL. Wrong output in DEGRADED or any later state is not silent: it was announced.
- **detection time** of a fault: onset → the first of (a finding raised at or after onset on the
  fault's channel — any channel for faults without one; an escalation of the health state to
  DEGRADED, TAKEOVER_REQUESTED or MINIMAL_RISK at or after onset). None when neither happens.
- **false alarms**: entries into DEGRADED, TAKEOVER_REQUESTED or MINIMAL_RISK at steps where no
  injected fault is active or ended less than ``alarm_grace_s`` ago; the rate is per hour of that
  fault-free time. ``false_degraded_s`` is the DEGRADED time in fault-free steps.
- **unvouchable instant**: the first step at or after the first fault onset where the output is
  wrong, or where the confirmed tracks of every non-shadow ground-frame channel are wrong (no
  channel could have supplied a correct output had the supervisor not reacted). **Takeover
  lead time** = that instant − the first takeover request at or after the first onset (positive:
  the request came first). None when there was no request, or the output never became
  unvouchable.
- **tracking**: position RMSE of confirmed tracks per channel and of the output ("fused") against
  all present actors, matched one-to-one within the gate; ID switches (an actor's matched id
  changes from its previous matched id); MOTA / IDF1 of the output against critical-zone actors
  (objects inside the zone are the hypotheses), via perception.metrics when available.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import linear_sum_assignment

from perception.kernels import F2, IIN1, IN2, IN3, compiled
from perception.metrics import evaluate_points
from sim.results import (
    STATE_CODE,
    FaultDetection,
    FaultWindow,
    FindingRecord,
    FloatArray,
    IntArray,
    Metrics,
    PointSets,
    StepMetrics,
    TakeoverEvent,
    TimeSeries,
)

BoolArray = NDArray[np.bool_]

NOMINAL = STATE_CODE["NOMINAL"]
DEGRADED = STATE_CODE["DEGRADED"]
TAKEOVER = STATE_CODE["TAKEOVER_REQUESTED"]
MANUAL = STATE_CODE["MANUAL"]
MRM = STATE_CODE["MINIMAL_RISK"]
#: Severity used to tell an escalation from a de-escalation.
_SEVERITY = np.array([0, 1, 2, 1, 3])
_ALARM_STATES = (DEGRADED, TAKEOVER, MRM)
FUSED = "fused"


# --------------------------------------------------------------------------- configuration
class CriticalZone(BaseModel):
    """Region of the ego frame (x forward, y left, metres) where every actor must be output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x: tuple[float, float] = (0.0, 60.0)
    y: tuple[float, float] = (-5.0, 5.0)

    @model_validator(mode="after")
    def _check(self) -> CriticalZone:
        if self.x[1] <= self.x[0] or self.y[1] <= self.y[0]:
            raise ValueError("critical zone bounds must be [low, high] with low < high")
        return self

    def contains(self, pos: FloatArray) -> BoolArray:
        """Mask of (..., 2) positions inside the zone (NaN positions are outside)."""
        x, y = pos[..., 0], pos[..., 1]
        with np.errstate(invalid="ignore"):
            return (x >= self.x[0]) & (x <= self.x[1]) & (y > self.y[0]) & (y < self.y[1])


class ToleranceConfig(BaseModel):
    """How wrong the output may be before it counts as wrong, and where it matters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position_m: float = Field(default=2.0, gt=0, description="position error tolerance (m)")
    gate_m: float | None = Field(
        default=None, gt=0, description="association gate truth↔output (m); default 3 × position_m"
    )
    critical_zone: CriticalZone = CriticalZone()
    entry_grace_s: float = Field(
        default=0.5,
        ge=0,
        description="an actor must be output once it has been in the critical zone this long "
        "(covers track confirmation after it appears, including at the start)",
    )
    alarm_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="alarms this long after a fault ends are still attributed to it",
    )

    @property
    def gate(self) -> float:
        return self.gate_m if self.gate_m is not None else 3.0 * self.position_m

    @model_validator(mode="after")
    def _check(self) -> ToleranceConfig:
        if self.gate_m is not None and self.gate_m < self.position_m:
            raise ValueError("gate_m must be at least position_m")
        return self


# --------------------------------------------------------------------------- matching
@dataclass
class FrameMatches:
    """One-to-one truth ↔ hypothesis assignment per step."""

    row: IntArray  # (T, A) global row index into the PointSets, -1 when unmatched
    dist: FloatArray  # (T, A) distance of the assigned pair, NaN when unmatched

    @property
    def matched(self) -> BoolArray:
        return self.row >= 0


def select_rows(ps: PointSets, mask: BoolArray) -> PointSets:
    """The rows of ``ps`` where ``mask`` holds, with offsets recomputed."""
    steps = ps.step_index()[mask]
    counts = np.bincount(steps, minlength=ps.steps)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return PointSets(offsets, ps.ids[mask], ps.pos[mask], ps.flags[mask])


@compiled(nb.types.Tuple((nb.int64[:, ::1], F2, nb.boolean[::1]))(IN3, IIN1, IN2, nb.float64))
def _nearest_rows(truth, offsets, pos, gate):
    """match_frames' nearest-neighbour pass: per step and actor the first nearest point (numpy's
    argmin of the distances, NaN counted as inf), its global row and distance where within
    ``gate`` (else -1 and NaN), and the steps where two actors claim the same point."""
    T, A = truth.shape[0], truth.shape[1]
    row = np.full((T, A), -1, np.int64)
    dist = np.full((T, A), np.nan)
    conflict = np.zeros(T, np.bool_)
    for i in range(T):
        o0 = offsets[i]
        cnt = offsets[i + 1] - o0
        for a in range(A):
            best = np.inf
            bi = 0
            for k in range(cnt):
                dx = truth[i, a, 0] - pos[o0 + k, 0]
                dy = truth[i, a, 1] - pos[o0 + k, 1]
                d = math.sqrt(dx * dx + dy * dy)
                if math.isnan(d):
                    d = np.inf
                if d < best:
                    best = d
                    bi = k
            if best <= gate:
                for b in range(a):
                    if row[i, b] == o0 + bi:
                        conflict[i] = True
                row[i, a] = o0 + bi
                dist[i, a] = best
    return row, dist, conflict


def match_frames(truth: FloatArray, hyp: PointSets, gate: float) -> FrameMatches:
    """Assign truth (T, A, 2; NaN = absent) to hypothesis points per step, within ``gate``.

    Nearest neighbour for all steps at once (one compiled pass over steps × actors × points);
    steps where two actors claim the same point are re-solved with the Hungarian algorithm.
    """
    T, A = truth.shape[0], truth.shape[1]
    counts = np.diff(hyp.offsets)
    if A == 0 or T == 0 or counts.size == 0 or counts.max(initial=0) == 0:
        return FrameMatches(np.full((T, A), -1, np.int64), np.full((T, A), np.nan))
    row, dist, conflict = _nearest_rows(
        np.ascontiguousarray(truth, dtype=np.float64), hyp.offsets, hyp.pos, float(gate)
    )
    if conflict.any():
        omax = int(counts.max())
        big = gate * (A + omax + 1) * 4.0 + 1.0
        for i in np.flatnonzero(conflict).tolist():
            o0, o1 = int(hyp.offsets[i]), int(hyp.offsets[i + 1])
            padded = np.full((omax, 2), np.nan)
            padded[: o1 - o0] = hyp.pos[o0:o1]
            c = np.sqrt(((truth[i][:, None, :] - padded[None, :, :]) ** 2).sum(-1))  # (A, O)
            c = np.where(np.isnan(c), np.inf, c)
            feasible = c <= gate
            r, k = linear_sum_assignment(np.where(feasible, c, big))
            keep = feasible[r, k]
            row[i] = -1
            dist[i] = np.nan
            row[i, r[keep]] = o0 + k[keep]
            dist[i, r[keep]] = c[r[keep], k[keep]]
    return FrameMatches(row, dist)


def id_switches(ids: IntArray) -> int:
    """Count changes of an actor's matched id from its previous matched id ((T, A), -1 = none)."""
    T, A = ids.shape
    if T == 0 or A == 0:
        return 0
    valid = ids >= 0
    idx = np.where(valid, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # last valid step at or before t
    prev = np.vstack([np.full((1, A), -1), last[:-1]])
    prev_id = np.where(prev >= 0, ids[np.maximum(prev, 0), np.arange(A)[None, :]], -1)
    return int(np.sum(valid & (prev_id >= 0) & (prev_id != ids)))


def _matched_ids(m: FrameMatches, hyp: PointSets) -> IntArray:
    return np.where(m.matched, hyp.ids[np.maximum(m.row, 0)] if hyp.ids.size else -1, -1)


def _rmse(m: FrameMatches) -> float | None:
    d = m.dist[m.matched]
    return float(np.sqrt(np.mean(d**2))) if d.size else None


def mot_scores(
    truth_zone: FloatArray, hyp: PointSets, gate: float
) -> tuple[float | None, float | None, str]:
    """MOTA and IDF1 of ``hyp`` against ``truth_zone`` (T, A, 2), and which code scored them.

    Scored by perception.metrics (the CLEAR-MOT / IDF1 implementation that agrees with
    py-motmetrics), with a Euclidean gate on the ground plane.
    """
    present = ~np.isnan(truth_zone[:, :, 0])
    counts = present.sum(axis=1)
    gt_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    aid = np.broadcast_to(np.arange(truth_zone.shape[1], dtype=np.int64), present.shape)
    sc = evaluate_points(
        aid[present], truth_zone[present], gt_offsets, hyp.ids, hyp.pos,
        hyp.offsets[: truth_zone.shape[0] + 1], gate,
    )
    return _finite(sc.mota), _finite(sc.idf1), "perception.metrics"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------- per-step evaluation
def settled(t: FloatArray, mask: BoolArray, grace: float) -> BoolArray:
    """``mask`` (T, A) restricted to entries that have held continuously for ``grace`` seconds."""
    if grace <= 0 or mask.size == 0:
        return mask
    T = mask.shape[0]
    prev = np.vstack([np.zeros((1, mask.shape[1]), bool), mask[:-1]])
    start = np.where(mask & ~prev, np.arange(T)[:, None], -1)
    since = np.maximum.accumulate(start, axis=0)  # step of the latest entry
    held = t[:, None] - t[np.maximum(since, 0)]
    return mask & (since >= 0) & (held >= grace - 1e-9)


def evaluate_steps(series: TimeSeries, tol: ToleranceConfig) -> StepMetrics:
    """Per-step wrong / silent flags of the output against critical-zone actors."""
    truth = series.truth_pos
    zone = settled(series.t, tol.critical_zone.contains(truth), tol.entry_grace_s)
    tz = np.where(zone[..., None], truth, np.nan)
    m = match_frames(tz, series.objects, tol.gate)
    missing = zone & ~m.matched
    with np.errstate(invalid="ignore"):
        off = m.matched & (m.dist > tol.position_m)
    wrong = missing.any(axis=1) | off.any(axis=1)
    max_error = np.max(np.where(m.matched, m.dist, -np.inf), axis=1, initial=-np.inf)
    max_error = np.where(np.isfinite(max_error), max_error, np.nan)
    chans = [
        c
        for c in series.channels
        if series.track_space.get(c) == "point"
        and c in series.tracks
        and series.channel_roles.get(c) != "shadow"
    ]
    channels_wrong = np.ones(series.steps, bool) if chans else np.zeros(series.steps, bool)
    for c in chans:
        tr = series.tracks[c]
        mc = match_frames(tz, select_rows(tr, tr.flags != 0), tol.gate)
        with np.errstate(invalid="ignore"):
            bad = (zone & ~mc.matched) | (mc.matched & (mc.dist > tol.position_m))
        channels_wrong &= bad.any(axis=1)
    return StepMetrics(
        in_zone=zone.sum(axis=1).astype(np.int32),
        missing=missing.sum(axis=1).astype(np.int32),
        off=off.sum(axis=1).astype(np.int32),
        max_error=max_error,
        wrong=np.asarray(wrong, dtype=bool),
        silent=wrong & (series.state == NOMINAL),
        channels_wrong=channels_wrong,
    )


# --------------------------------------------------------------------------- events
def escalations(state: NDArray[np.int8]) -> BoolArray:
    """Steps where the state escalates into DEGRADED, TAKEOVER_REQUESTED or MINIMAL_RISK."""
    s = state.astype(np.int64)
    prev = np.concatenate([[NOMINAL], s[:-1]]) if s.size else s
    sev = _SEVERITY[s]
    return np.isin(s, _ALARM_STATES) & (s != prev) & (sev > _SEVERITY[prev])


def entries(state: NDArray[np.int8], code: int) -> BoolArray:
    """Steps where the state becomes ``code`` (the first step counts if it starts there)."""
    s = state.astype(np.int64)
    prev = np.concatenate([[-1], s[:-1]]) if s.size else s
    return (s == code) & (prev != code)


def fault_attributable(t: FloatArray, faults: Sequence[FaultWindow], grace: float) -> BoolArray:
    """Steps where some fault is active or ended less than ``grace`` seconds ago."""
    mask = np.zeros(t.shape, bool)
    for f in faults:
        end = math.inf if f.end is None else f.end + grace
        mask |= (t >= f.onset) & (t < end)
    return mask


def detect_fault(
    f: FaultWindow, series: TimeSeries, findings: Sequence[FindingRecord], esc: BoolArray
) -> FaultDetection:
    """First finding on the fault's channel or first escalation at or after its onset."""
    eps = 1e-9
    hit: FindingRecord | None = None
    for r in findings:  # findings are in time order
        if (
            r.event == "raised"
            and r.t >= f.onset - eps
            and (f.channel is None or r.channel == f.channel)
        ):
            hit = r
            break
    idx = np.flatnonzero(esc & (series.t >= f.onset - eps))
    t_state = float(series.t[idx[0]]) if idx.size else math.inf
    t_find = hit.t if hit is not None else math.inf
    if not math.isfinite(min(t_state, t_find)):
        return FaultDetection(f.name, f.kind, f.channel, f.onset, None, None, None)
    if t_find <= t_state and hit is not None:
        return FaultDetection(
            f.name,
            f.kind,
            f.channel,
            f.onset,
            t_find,
            t_find - f.onset,
            "finding",
            hit.kind,
            hit.monitor,
        )
    st = series.state_names()[int(idx[0])]
    return FaultDetection(
        f.name, f.kind, f.channel, f.onset, t_state, t_state - f.onset, "state", state=st
    )


def _first(t: FloatArray, mask: BoolArray) -> float | None:
    idx = np.flatnonzero(mask)
    return float(t[idx[0]]) if idx.size else None


# --------------------------------------------------------------------------- all metrics
def compute_metrics(
    series: TimeSeries,
    faults: Sequence[FaultWindow],
    findings: Sequence[FindingRecord],
    takeover_events: Sequence[TakeoverEvent],
    tol: ToleranceConfig,
) -> Metrics:
    """All metrics of one run (see the module docstring for the definitions)."""
    t = series.t
    dt = series.step_durations()
    state = series.state.astype(np.int64)
    per = evaluate_steps(series, tol)
    esc = escalations(series.state)

    time_in_state = {name: float(dt[state == code].sum()) for name, code in STATE_CODE.items()}
    silent_s = float(dt[per.silent].sum())

    detections = [detect_fault(f, series, findings, esc) for f in faults]

    attributable = fault_attributable(t, faults, tol.alarm_grace_s)
    free = ~attributable
    false_tk = int((entries(series.state, TAKEOVER) & free).sum())
    false_mrm = int((entries(series.state, MRM) & free).sum())
    false_deg = int((entries(series.state, DEGRADED) & free).sum())
    fault_free_s = float(dt[free].sum())
    n_false = false_tk + false_mrm + false_deg
    rate = n_false / (fault_free_s / 3600.0) if fault_free_s > 0 else 0.0

    first_onset = min((f.onset for f in faults), default=None)
    after = t >= (first_onset - 1e-9) if first_onset is not None else np.zeros(t.shape, bool)
    req_t = _first(t, (state == TAKEOVER) & after)
    deadline: float | None = None
    issued = [
        e
        for e in takeover_events
        if e.event == "issued" and first_onset is not None and e.t >= first_onset - 1e-9
    ]
    if issued:
        deadline = issued[0].deadline
        req_t = issued[0].t if req_t is None else min(req_t, issued[0].t)
    unvouch_t = (
        _first(t, (per.wrong | per.channels_wrong) & after) if first_onset is not None else None
    )
    lead = unvouch_t - req_t if (unvouch_t is not None and req_t is not None) else None

    acks = [e.t for e in takeover_events if e.event == "acknowledged"]
    took_t = acks[0] if acks else _first(t, state == MANUAL)
    before: bool | None = None
    if req_t is not None:
        before = took_t is not None and (deadline is None or took_t <= deadline + 1e-9)

    rmse: dict[str, float | None] = {}
    switches: dict[str, int] = {}
    for c in series.channels:
        if series.track_space.get(c) != "point" or c not in series.tracks:
            continue
        tr = series.tracks[c]
        conf = select_rows(tr, tr.flags != 0)
        mc = match_frames(series.truth_pos, conf, tol.gate)
        rmse[c] = _rmse(mc)
        switches[c] = id_switches(_matched_ids(mc, conf))
    mf = match_frames(series.truth_pos, series.objects, tol.gate)
    rmse[FUSED] = _rmse(mf)
    switches[FUSED] = id_switches(_matched_ids(mf, series.objects))

    zone = tol.critical_zone.contains(series.truth_pos)
    tz = np.where(zone[..., None], series.truth_pos, np.nan)
    objs_zone = select_rows(series.objects, tol.critical_zone.contains(series.objects.pos))
    mota, idf1, source = mot_scores(tz, objs_zone, tol.gate)

    return Metrics(
        duration_s=float(dt.sum()),
        steps=series.steps,
        silent_failure_s=silent_s,
        first_silent_t=_first(t, per.silent),
        wrong_output_s=float(dt[per.wrong].sum()),
        time_in_state=time_in_state,
        detections=detections,
        false_alarms=n_false,
        false_alarms_per_hour=rate,
        false_takeovers=false_tk,
        false_mrms=false_mrm,
        false_degraded_entries=false_deg,
        false_degraded_s=float(dt[free & (state == DEGRADED)].sum()),
        fault_free_s=fault_free_s,
        takeover_requested_at=req_t,
        takeover_deadline=deadline,
        unvouchable_at=unvouch_t,
        takeover_lead_s=lead,
        human_took_over=took_t is not None,
        took_over_at=took_t,
        took_over_before_deadline=before,
        mrm_entered_at=_first(t, state == MRM),
        rmse=rmse,
        id_switches=switches,
        mota=mota,
        idf1=idf1,
        mot_source=source,
        per_step=per,
    )
