"""Result types of a scenario run: time series, events, metrics, criteria verdicts.

Everything here is a plain dataclass of numbers, strings and numpy arrays, and round-trips
through strict JSON (`ScenarioResult.to_json` / `ScenarioResult.from_json`) to the bit: reports,
sweeps and replays consume these types without re-running anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Health states in code order; ``TimeSeries.state`` stores indices into this tuple.
STATE_NAMES: tuple[str, ...] = (
    "NOMINAL",
    "DEGRADED",
    "TAKEOVER_REQUESTED",
    "MANUAL",
    "MINIMAL_RISK",
)
STATE_CODE: dict[str, int] = {name: i for i, name in enumerate(STATE_NAMES)}


def state_code(state: object) -> int:
    """Code of a health state given as a ``HealthState`` member, its name or its value."""
    name = getattr(state, "name", None)
    key = str(name if isinstance(name, str) else state).upper()
    return STATE_CODE[key]


class Verdict(StrEnum):
    """A criterion's outcome, as in CARLA ScenarioRunner: ACCEPTABLE passes with a remark."""

    SUCCESS = "SUCCESS"
    ACCEPTABLE = "ACCEPTABLE"
    FAILURE = "FAILURE"


# --------------------------------------------------------------------------- series
@dataclass(eq=False)
class PointSets:
    """A variable number of 2-D points per step, stored flat (CSR): rows of step i are
    ``offsets[i]:offsets[i+1]``. Used for output objects and per-channel tracks."""

    offsets: IntArray  # (T+1,)
    ids: IntArray  # (K,)
    pos: FloatArray  # (K, 2)
    flags: IntArray  # (K,) meaning depends on the owner (see TimeSeries)

    @classmethod
    def empty(cls, steps: int) -> PointSets:
        """No points at any of ``steps`` steps."""
        return cls(
            np.zeros(steps + 1, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 2)),
            np.zeros(0, np.int64),
        )

    @property
    def steps(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def at(self, i: int) -> slice:
        """Row slice of step ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def step_index(self) -> IntArray:
        """(K,) step index of every row."""
        return np.repeat(np.arange(self.steps, dtype=np.int64), np.diff(self.offsets))


@dataclass(eq=False)
class TimeSeries:
    """Everything recorded per step, as compact arrays (T steps, A actors, C channels).

    ``truth_pos`` is in the ego frame (x forward, y left, metres), NaN where an actor does not
    exist. ``objects.flags`` packs bit 0 = corroborated and bits 1.. = contributing channel
    ``channels[j]`` at bit ``j + 1``. ``tracks[c].flags`` is 1 for confirmed tracks.
    """

    t: FloatArray  # (T,)
    state: NDArray[np.int8]  # (T,) index into STATE_NAMES
    takeover_stage: NDArray[np.int8]  # (T,) index into stage_names, -1 when no request is open
    stage_names: list[str]
    ego_speed: FloatArray  # (T,)
    active_faults: NDArray[np.int32]  # (T,) number of active findings the supervisor reports
    overran: BoolArray  # (T,)
    actor_ids: list[str]  # (A,)
    truth_pos: FloatArray  # (T, A, 2)
    channels: list[str]  # (C,) supervisor channel names, in config order
    objects: PointSets  # the supervisor's output
    tracks: dict[str, PointSets] = field(default_factory=dict)  # per channel (point space only)
    track_space: dict[str, str] = field(default_factory=dict)  # channel → "point" | "box"
    channel_roles: dict[str, str] = field(
        default_factory=dict
    )  # channel → primary/redundant/shadow

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])

    def state_names(self) -> list[str]:
        """States as names, one per step."""
        return [STATE_NAMES[int(c)] for c in self.state]

    def state_at(self, t: float) -> str | None:
        """State in force at time ``t`` (the last step at or before ``t``); None before the run."""
        i = int(np.searchsorted(self.t, t + 1e-9, side="right")) - 1
        return None if i < 0 else STATE_NAMES[int(self.state[i])]

    def step_durations(self) -> FloatArray:
        """How long each step's state lasts: the gap to the next step (the last one repeats it)."""
        if self.steps == 0:
            return np.zeros(0)
        if self.steps == 1:
            return np.ones(1)
        d = np.diff(self.t)
        return np.append(d, d[-1])


# --------------------------------------------------------------------------- events
@dataclass
class FaultWindow:
    """One injected fault: what, on which channel, and when active (``end`` None: to the end)."""

    index: int
    name: str
    kind: str
    channel: str | None
    onset: float
    end: float | None

    def active(self, t: FloatArray) -> BoolArray:
        """Mask of times inside the window."""
        end = math.inf if self.end is None else self.end
        return (t >= self.onset) & (t < end)


@dataclass
class FindingRecord:
    """A finding raised or cleared by the supervisor at ``t``."""

    t: float
    event: str  # "raised" | "cleared"
    kind: str
    monitor: str
    channel: str | None
    impact: str
    value: float
    threshold: float
    message: str


@dataclass
class TakeoverEvent:
    """A takeover or fallback event: issued, stage change, acknowledged, mrm."""

    t: float
    event: str  # "issued" | "stage" | "acknowledged" | "mrm"
    stage: str | None = None
    deadline: float | None = None
    reason: str = ""
    detail: str = ""  # MRM tier / outcome, affected objects, ...


# --------------------------------------------------------------------------- metrics
@dataclass
class FaultDetection:
    """Detection of an injected fault: onset → first finding on its channel or first escalation."""

    fault: str
    kind: str
    channel: str | None
    onset: float
    detected_at: float | None
    delay_s: float | None
    by: str | None  # "finding" | "state"
    finding_kind: str | None = None
    monitor: str | None = None
    state: str | None = None  # state entered, when detected by a state change


@dataclass(eq=False)
class StepMetrics:
    """Per-step evaluation of the output against the truth (critical-zone actors only)."""

    in_zone: NDArray[np.int32]  # (T,) actors in the critical zone
    missing: NDArray[np.int32]  # (T,) of those, absent from the output
    off: NDArray[np.int32]  # (T,) of those, matched but beyond the position tolerance
    max_error: FloatArray  # (T,) largest matched position error, NaN when nothing matched
    wrong: BoolArray  # (T,) missing > 0 or off > 0
    silent: BoolArray  # (T,) wrong while NOMINAL
    channels_wrong: BoolArray  # (T,) every ground channel's confirmed tracks are wrong too


@dataclass
class Metrics:
    """What every scenario reports (see sim.metrics for exact definitions)."""

    duration_s: float
    steps: int
    silent_failure_s: float
    first_silent_t: float | None
    wrong_output_s: float
    time_in_state: dict[str, float]
    detections: list[FaultDetection]
    false_alarms: int
    false_alarms_per_hour: float
    false_takeovers: int
    false_mrms: int
    false_degraded_entries: int
    false_degraded_s: float
    fault_free_s: float
    takeover_requested_at: float | None
    takeover_deadline: float | None
    unvouchable_at: float | None
    takeover_lead_s: float | None
    human_took_over: bool
    took_over_at: float | None
    took_over_before_deadline: bool | None
    mrm_entered_at: float | None
    rmse: dict[str, float | None]
    id_switches: dict[str, int]
    mota: float | None
    idf1: float | None
    mot_source: str
    per_step: StepMetrics


# --------------------------------------------------------------------------- criteria + result
@dataclass
class CriterionResult:
    """One expectation's verdict: name, expected, actual, units, optional flag."""

    name: str
    kind: str
    expected: str
    actual: str
    units: str
    optional: bool
    verdict: Verdict
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict == Verdict.FAILURE


@dataclass
class ScenarioResult:
    """Everything one run produced; ``passed`` is False when any non-optional criterion failed."""

    name: str
    description: str
    seed: int
    passed: bool
    criteria: list[CriterionResult]
    metrics: Metrics
    series: TimeSeries
    fault_windows: list[FaultWindow]
    findings: list[FindingRecord]
    takeover_events: list[TakeoverEvent]
    replay_command: str
    wall_time_s: float
    source: str | None = None  # scenario file, when loaded from one
    params: dict[str, Any] = field(default_factory=dict)  # sweep parameters of this variant
    error: str | None = None  # set when the run itself failed (config or crash)
    #: rendered frames per channel when the run recorded them (kept in memory, never serialised)
    frames: dict[str, list[Any]] = field(default_factory=dict, metadata={"json": False}, repr=False)

    @property
    def failures(self) -> list[CriterionResult]:
        """Non-optional criteria that failed."""
        return [c for c in self.criteria if c.failed and not c.optional]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (strict JSON: non-finite floats encoded as strings)."""
        return typing.cast(dict[str, Any], _encode(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScenarioResult:
        return _decode(cls, d)

    def to_json(self, indent: int | None = None) -> str:
        """Strict JSON text; ``from_json(to_json())`` restores every array bit for bit."""
        return json.dumps(self.to_dict(), allow_nan=False, indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScenarioResult:
        return cls.from_dict(json.loads(text))


def passed_from(criteria: list[CriterionResult]) -> bool:
    """A run passes when no non-optional criterion is a FAILURE."""
    return not any(c.failed and not c.optional for c in criteria)


# --------------------------------------------------------------------------- codec
T = TypeVar("T")
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _enc_float(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _dec_float(x: Any) -> float:
    return _NONFINITE[x] if isinstance(x, str) else float(x)


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        flat = obj.reshape(-1)
        if obj.dtype.kind == "f":
            data: list[Any] = [_enc_float(v) for v in flat.tolist()]
        else:
            data = flat.tolist()
        return {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": data}
    if isinstance(obj, StrEnum):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _encode(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)
        }
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_encode(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float | np.floating):
        return _enc_float(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _decode(tp: Any, v: Any) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            return _decode(a, v)
    if tp is Any:
        return v
    if tp is np.ndarray or origin is np.ndarray:
        dtype = np.dtype(v["dtype"])
        data = v["data"]
        if dtype.kind == "f":
            data = [_dec_float(x) for x in data]
        return np.asarray(data, dtype=dtype).reshape(v["shape"])
    if origin is list:
        (a,) = get_args(tp)
        return [_decode(a, x) for x in v]
    if origin is tuple:
        return tuple(v)
    if origin is dict:
        _, a = get_args(tp)
        return {k: _decode(a, x) for k, x in v.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: _decode(hints[f.name], v[f.name]) for f in dataclasses.fields(tp) if f.name in v
        }
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return tp(v)
    if tp is float:
        return _dec_float(v)
    if tp is int:
        return int(v)
    if tp is bool:
        return bool(v)
    if tp is str:
        return str(v)
    return v


# --------------------------------------------------------------------------- recording
_I64 = np.dtype(np.int64)
_F64 = np.dtype(np.float64)
_NO_IDS: IntArray = np.zeros(0, np.int64)
_NO_POS: FloatArray = np.zeros((0, 2))
_NO_IDS.setflags(write=False)
_NO_POS.setflags(write=False)
_BOOL = np.dtype(np.bool_)


def _in_shape(ids: Any, pos: Any, flags: Any, flag_dtype: np.dtype[Any]) -> bool:
    """One step's rows already as stored: int64 ids (n,), float64 positions (n, 2) and flags (n,)
    of ``flag_dtype``, all plain ndarrays (then no conversion is needed)."""
    return (
        type(ids) is np.ndarray
        and type(pos) is np.ndarray
        and type(flags) is np.ndarray
        and ids.dtype == _I64
        and pos.dtype == _F64
        and flags.dtype == flag_dtype
        and ids.ndim == 1
        and pos.shape == (ids.shape[0], 2)
        and flags.shape == ids.shape
    )

class _PointSetBuilder:
    """Accumulates per-step point rows, then packs them into a `PointSets`.

    Rows come as arrays per step (:meth:`add`, :meth:`add_mask`) or as Python tuples
    (:meth:`add_rows`), which are kept as they are and converted in one go when the next array
    step arrives or at :meth:`build` (the same rows, the same values, in the same order).
    """

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.ids: list[IntArray] = []
        self.pos: list[FloatArray] = []
        self.flags: list[Any] = []  # int64 arrays, or bool masks (flag 1 where True)
        self._rows: list[tuple[int, Any, int]] = []  # add_rows rows not yet packed

    def add_rows(self, rows: list[tuple[int, Any, int]]) -> None:
        """A step's rows as (id, position, flags) tuples, the position a float pair or a (2,)
        array; packed later, all at once."""
        self.counts.append(len(rows))
        if rows:
            self._rows.extend(rows)

    def _flush_rows(self) -> None:
        rows = self._rows
        if not rows:
            return
        n = len(rows)
        ids, pos, flags = zip(*rows, strict=True)
        self.ids.append(np.array(ids, dtype=np.int64))
        self.pos.append(np.array(pos, dtype=np.float64).reshape(n, 2))
        self.flags.append(np.array(flags, dtype=np.int64))
        self._rows = []

    def add_mask(self, ids: IntArray, pos: FloatArray, mask: BoolArray) -> None:
        """A step's rows with flags 1 where ``mask`` holds, else 0 (kept as given; read-only
        int64 ids, (n, 2) float64 positions and a bool mask are expected, else :meth:`add`)."""
        if not _in_shape(ids, pos, mask, _BOOL):
            self.add(ids, pos, mask)
            return
        if self._rows:
            self._flush_rows()
        self.counts.append(ids.shape[0])
        self.ids.append(ids)
        self.pos.append(pos)
        self.flags.append(mask)

    def add(self, ids: Any, pos: Any, flags: Any) -> None:
        if self._rows:
            self._flush_rows()
        if _in_shape(ids, pos, flags, _I64):  # the recorder's own case: stored as given
            self.counts.append(ids.shape[0])
            self.ids.append(ids)
            self.pos.append(pos)
            self.flags.append(flags.copy())
            return
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.counts.append(int(i.size))
        self.ids.append(i)
        self.pos.append(np.asarray(pos, dtype=np.float64).reshape(i.size, 2))
        self.flags.append(np.broadcast_to(np.asarray(flags, dtype=np.int64), i.shape).copy())

    def add_empty(self) -> None:
        """A step with no rows."""
        self.counts.append(0)

    def build(self) -> PointSets:
        self._flush_rows()
        offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).astype(np.int64)
        if not self.counts:
            return PointSets.empty(0)
        if not self.ids:  # steps, but no rows at all
            return PointSets(offsets, _NO_IDS.copy(), _NO_POS.copy(), _NO_IDS.copy())
        flags = np.concatenate(self.flags)
        if flags.dtype != _I64:  # bool masks only (mixed with int64 flags it is int64 already)
            flags = flags.astype(np.int64)
        return PointSets(
            offsets, np.concatenate(self.ids), np.concatenate(self.pos), flags
        )


class SeriesBuilder:
    """Records a run step by step (the runner's recorder; also handy to hand-make series)."""

    def __init__(
        self,
        actor_ids: list[str],
        channels: list[str],
        *,
        roles: dict[str, str] | None = None,
        spaces: dict[str, str] | None = None,
    ) -> None:
        self.actor_ids = list(actor_ids)
        self.channels = list(channels)
        self.roles = dict(roles or {})
        self.spaces = {c: "point" for c in channels} | dict(spaces or {})
        self.stage_names: list[str] = []
        self._t: list[float] = []
        self._state: list[int] = []
        self._stage: list[int] = []
        self._speed: list[float] = []
        self._active: list[int] = []
        self._overran: list[bool] = []
        self._truth: list[FloatArray] = []
        self._objects = _PointSetBuilder()
        self._tracks = {c: _PointSetBuilder() for c in channels}
        self._state_codes: dict[Any, int] = {}

    def stage_code(self, stage: object) -> int:
        """Code of a takeover stage name (-1 for None), growing the vocabulary as needed."""
        if stage is None:
            return -1
        name = str(getattr(stage, "value", stage))
        if name not in self.stage_names:
            self.stage_names.append(name)
        return self.stage_names.index(name)

    def add_step(
        self,
        t: float,
        state: object,
        truth_pos: Any,
        objects: tuple[Any, Any, Any] = ((), np.zeros((0, 2)), ()),
        *,
        stage: object = None,
        ego_speed: float = 0.0,
        active_faults: int = 0,
        overran: bool = False,
        tracks: dict[str, tuple[Any, Any, Any]] | None = None,
    ) -> None:
        """Append one step. ``objects`` / ``tracks[c]`` are (ids, positions (n, 2), flags)."""
        self._add_scalars(t, state, stage, ego_speed, active_faults, overran)
        self._truth.append(np.asarray(truth_pos, dtype=np.float64).reshape(len(self.actor_ids), 2))
        self._objects.add(*objects)
        tracks = tracks or {}
        for c, b in self._tracks.items():
            if c in tracks:
                b.add(*tracks[c])
            else:
                b.add_empty()

    def _add_scalars(self, t: float, state: object, stage: object, ego_speed: float,
                     active_faults: int, overran: bool) -> None:
        """The step's time, state and stage codes, speed, fault count and overrun flag."""
        self._t.append(float(t))
        try:
            code = self._state_codes[state]
        except (KeyError, TypeError):
            code = state_code(state)
            try:
                self._state_codes[state] = code
            except TypeError:  # an unhashable state
                pass
        self._state.append(code)
        self._stage.append(-1 if stage is None else self.stage_code(stage))
        self._speed.append(float(ego_speed))
        self._active.append(int(active_faults))
        self._overran.append(bool(overran))

    def add_run_step(
        self,
        t: float,
        state: object,
        truth_pos: FloatArray,
        rows: list[tuple[int, Any, int]],
        stage: object,
        ego_speed: float,
        active_faults: int,
        overran: bool,
        tracks: dict[str, tuple[IntArray, FloatArray, BoolArray]],
    ) -> None:
        """:meth:`add_step` for the runner, storing the same series with less work per step:
        ``truth_pos`` a (A, 2) float64 array it no longer changes, output objects as
        (id, position (2,), flags) tuples, and ``tracks[c]`` as (ids, positions, confirmed mask)."""
        if not (
            type(truth_pos) is np.ndarray
            and truth_pos.dtype == _F64
            and truth_pos.shape == (len(self.actor_ids), 2)
        ):
            truth_pos = np.asarray(truth_pos, dtype=np.float64).reshape(len(self.actor_ids), 2)
        self._add_scalars(t, state, stage, ego_speed, active_faults, overran)
        self._truth.append(truth_pos)
        self._objects.add_rows(rows)
        for c, b in self._tracks.items():
            tr = tracks.get(c)
            if tr is None:
                b.add_empty()
            else:
                b.add_mask(*tr)

    def build(self) -> TimeSeries:
        """The recorded `TimeSeries`."""
        n_a = len(self.actor_ids)
        truth = np.stack(self._truth) if self._truth else np.zeros((0, n_a, 2))
        return TimeSeries(
            t=np.asarray(self._t, dtype=np.float64),
            state=np.asarray(self._state, dtype=np.int8),
            takeover_stage=np.asarray(self._stage, dtype=np.int8),
            stage_names=list(self.stage_names),
            ego_speed=np.asarray(self._speed, dtype=np.float64),
            active_faults=np.asarray(self._active, dtype=np.int32),
            overran=np.asarray(self._overran, dtype=bool),
            actor_ids=list(self.actor_ids),
            truth_pos=truth,
            channels=list(self.channels),
            objects=self._objects.build(),
            tracks={c: b.build() for c, b in self._tracks.items()},
            track_space=dict(self.spaces),
            channel_roles=dict(self.roles),
        )
