"""Audit log: append-only JSON lines, one event per decision, hash-chained and sealed.

Each line is the canonical JSON (sorted keys, no spaces, ASCII, NaN/inf as strings) of
``{"seq", "kind", "t", "data", "prev", "hash"}`` where ``hash`` is the SHA-256 of the record
without ``hash`` and ``prev`` the previous record's hash (64 zeros for the first). ``close()``
appends a ``seal`` event so a log cut short at the end is detected too. :func:`verify` names the
first bad line; :func:`replay` re-runs the recorded inputs through a fresh Supervisor and compares
its decisions with the recorded ones; :func:`explain` says, in words, why the system was in its
state at a given time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from perception.detections import Detections
from perception.imagestats import ImageStats
from safety.context import ChannelInput

__all__ = [
    "DECISION_KINDS",
    "GENESIS",
    "AuditLog",
    "ReplayReport",
    "VerifyResult",
    "canonical_json",
    "decode_input",
    "encode_input",
    "explain",
    "read_events",
    "replay",
    "to_jsonable",
    "verify",
]

GENESIS = "0" * 64
FIELDS = ("data", "hash", "kind", "prev", "seq", "t")
FsyncPolicy = Literal["event", "close", "never"]

#: Event kinds that record a decision (what replay compares).
DECISION_KINDS = frozenset({
    "finding_raised", "finding_cleared", "state_change", "takeover_issued", "takeover_stage",
    "takeover_acknowledged", "mrm", "reset",
})

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ----------------------------------------------------------------------------- canonical JSON
def _float(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy → Python, tuples → lists, NaN/±inf → "NaN"/"Infinity"/…."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int) and not isinstance(obj, Enum):
        return int(obj)
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return _float(float(obj))
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def canonical_json(obj: Any) -> str:
    """The one serialisation the hash is computed over (and each line is written in)."""
    try:  # fast path: already plain JSON with finite floats and string keys
        if type(obj) is dict:
            return _dumps(obj)
    except (TypeError, ValueError):
        pass
    return _dumps(to_jsonable(obj))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# ----------------------------------------------------------------------------- the log
class AuditLog:
    """Append-only, hash-chained JSON-lines event log; ``path=None`` keeps records in memory.

    Every event is flushed at once; ``fsync`` says when it is forced to disk: after every event
    (``"event"``), on :meth:`close` only (``"close"``) or never (``"never"``). Refuses to write
    over an existing non-empty file unless ``overwrite=True`` (an audit log is append-only).
    """

    def __init__(
        self, path: str | Path | None, fsync: FsyncPolicy = "event", *, overwrite: bool = False
    ) -> None:
        if fsync not in ("event", "close", "never"):
            raise ValueError(f"fsync must be 'event', 'close' or 'never', got {fsync!r}")
        self.path = None if path is None else Path(path)
        self.fsync: FsyncPolicy = fsync
        self.records: list[dict[str, Any]] | None = [] if self.path is None else None
        self.count = 0
        self.last_hash = GENESIS
        self.closed = False
        self._last_t: float | str = 0.0
        self._fh = None
        if self.path is not None:
            if self.path.exists() and self.path.stat().st_size > 0 and not overwrite:
                raise FileExistsError(
                    f"audit log {self.path} already exists and is not empty; an audit log is "
                    "append-only (pass overwrite=True to start a new one)"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb")  # held open for the log's lifetime

    def append(self, kind: str, t: float, data: Mapping[str, Any]) -> dict[str, Any]:
        """Write one event and return the record as written (plain JSON types, with its hash)."""
        if self.closed:
            raise ValueError("audit log is sealed; no events can follow the seal")
        if kind == "seal":
            raise ValueError("'seal' is written by close() only")
        return self._write(str(kind), t, data)

    def _write(self, kind: str, t: float | str, data: Mapping[str, Any]) -> dict[str, Any]:
        rec = {"data": data, "kind": kind, "prev": self.last_hash, "seq": self.count, "t": t}
        record = json.loads(canonical_json(rec))
        h = _sha(_dumps(record))  # over the parsed form: exactly what verify() recomputes
        record["hash"] = h
        line = _dumps(record) + "\n"
        if self._fh is not None:
            self._fh.write(line.encode("ascii"))
            self._fh.flush()
            if self.fsync == "event":
                os.fsync(self._fh.fileno())
        if self.records is not None:
            self.records.append(record)
        self.count += 1
        self.last_hash = h
        self._last_t = record["t"]
        return record

    def close(self) -> None:
        """Append the seal (event count and last hash), force it to disk and close the file."""
        if self.closed:
            return
        self._write("seal", self._last_t, {"count": self.count, "last_hash": self.last_hash})
        self.closed = True
        if self._fh is not None:
            if self.fsync in ("event", "close"):
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ----------------------------------------------------------------------------- verification
@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``first_bad_line`` is 1-based (None when the log is intact)."""

    ok: bool
    n_events: int  # intact events before the first problem (the seal not counted)
    first_bad_line: int | None
    reason: str


def verify(path: str | Path, allow_unsealed: bool = False) -> VerifyResult:
    """Check every line's form, hash, sequence number and chain link, and the final seal.

    Detects any edited byte, deleted, inserted or reordered line, and truncation (a partial last
    line, or a missing seal unless ``allow_unsealed``: a log still being written, or one whose
    writer crashed, has no seal yet).
    """
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    partial = lines[-1] != b""
    if not partial:
        lines.pop()
    prev = GENESIS
    n = 0
    sealed = False

    def bad(i: int, why: str) -> VerifyResult:
        return VerifyResult(False, n, i, f"line {i}: {why}")

    for i, line in enumerate(lines, start=1):
        if sealed:
            return bad(i, "event after the seal (appended after close, or lines reordered)")
        if partial and i == len(lines):
            return bad(i, "last line is incomplete (log truncated mid-record)")
        try:
            text = line.decode("ascii")
            rec = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            return bad(i, "not a JSON record (edited or corrupted)")
        if not isinstance(rec, dict) or tuple(sorted(rec)) != FIELDS:
            return bad(i, f"record must have exactly the fields {', '.join(FIELDS)}")
        try:
            canonical = _dumps(rec) == text
        except (TypeError, ValueError):  # e.g. a number edited out of float range
            canonical = False
        if not canonical:
            return bad(i, "not in canonical form (edited)")
        h = rec.pop("hash")
        if _sha(_dumps(rec)) != h:
            return bad(i, "hash does not match the record's content (edited)")
        if rec["seq"] != i - 1:
            return bad(i, f"sequence number {rec['seq']!r} where {i - 1} was expected "
                          "(line deleted, inserted or moved)")
        if rec["prev"] != prev:
            return bad(i, "chain broken: prev is not the hash of the line before "
                          "(line deleted, inserted or reordered)")
        if rec["kind"] == "seal":
            d = rec["data"]
            if not isinstance(d, dict) or d.get("count") != i - 1 or d.get("last_hash") != prev:
                return bad(i, "seal does not match the events before it")
            sealed = True
        else:
            n += 1
        prev = h
    if not sealed and not allow_unsealed:
        return VerifyResult(False, n, len(lines) + 1,
                            f"line {len(lines) + 1}: seal missing (log truncated or not closed)")
    if not lines:
        return VerifyResult(True, 0, None, "empty log")
    return VerifyResult(True, n, None, f"{n} events, chain intact" + (", sealed" if sealed else ""))


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All records of a log as dicts (no verification; see :func:`verify`).

    An incomplete last line (a writer that crashed mid-record) is skipped.
    """
    out: list[dict[str, Any]] = []
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise ValueError(f"{path}: line {i} is not a JSON record: {exc}") from None
    if tail.strip():
        try:
            out.append(json.loads(tail))
        except ValueError:
            pass
    return out


# ----------------------------------------------------------------------------- channel inputs
def _num(x: Any) -> float:
    """A float back from its JSON form ("NaN", "Infinity", "-Infinity" included)."""
    if isinstance(x, str):
        return _SPECIAL[x] if x in _SPECIAL else float(x)
    return float(x)


def encode_input(ci: ChannelInput) -> dict[str, Any]:
    """A :class:`ChannelInput` as JSON-ready data; floats survive exactly (shortest repr)."""
    d = ci.detections
    s = ci.image_stats
    return {
        "received": bool(ci.received),
        "detections": None if d is None else {
            "z": d.z.tolist(), "R": d.R.tolist(), "scores": d.scores.tolist(),
            "labels": d.labels.tolist(), "t": float(d.t), "sensor": d.sensor, "space": d.space,
            "range_rate": None if d.range_rate is None else d.range_rate.tolist(),
        },
        "error_kind": ci.error_kind,
        "error": ci.error,
        "image_stats": None if s is None else {
            "digest": s.digest, "brightness": _float(float(s.brightness)),
            "contrast": _float(float(s.contrast)), "sharpness": _float(float(s.sharpness)),
            "shape": [int(v) for v in s.shape],
        },
        "detector_elapsed": _float(float(ci.detector_elapsed)),
    }


def decode_input(data: Mapping[str, Any]) -> ChannelInput:
    """Inverse of :func:`encode_input` (after a JSON round trip): bit-identical arrays."""
    d = data.get("detections")
    dets = None
    if d is not None:
        m = 4 if d["space"] == "box" else 2
        rr = d.get("range_rate")
        dets = Detections(
            z=np.asarray(d["z"], dtype=np.float64).reshape(-1, m),
            R=np.asarray(d["R"], dtype=np.float64).reshape(-1, m, m),
            scores=np.asarray(d["scores"], dtype=np.float64).reshape(-1),
            labels=np.asarray(d["labels"], dtype=np.int64).reshape(-1),
            t=_num(d["t"]), sensor=str(d["sensor"]), space=d["space"],
            range_rate=None if rr is None else np.asarray(rr, dtype=np.float64).reshape(-1),
        )
    s = data.get("image_stats")
    stats = None if s is None else ImageStats(
        digest=str(s["digest"]), brightness=_num(s["brightness"]), contrast=_num(s["contrast"]),
        sharpness=_num(s["sharpness"]), shape=tuple(int(v) for v in s["shape"]),
    )
    return ChannelInput(
        received=bool(data["received"]), detections=dets, error_kind=data.get("error_kind"),
        error=data.get("error"), image_stats=stats,
        detector_elapsed=_num(data.get("detector_elapsed", 0.0)),
    )


# ----------------------------------------------------------------------------- replay
@dataclass
class ReplayReport:
    """Outcome of :func:`replay`: each mismatch is (seq of the triggering event, expected, actual)
    where expected/actual are the decision events (kind, t, data) that trigger produced."""

    n_steps: int
    mismatches: list[tuple[int, Any, Any]] = field(default_factory=list)
    ok: bool = True
    integrity: VerifyResult | None = None  # verify() of the log (unsealed allowed)


def _is_trigger(ev: Mapping[str, Any]) -> bool:
    """Events that mark an outside call into the supervisor (a step or an operator action)."""
    kind = ev.get("kind")
    if kind in ("step", "takeover_acknowledged", "reset"):
        return True
    data = ev.get("data")
    return kind == "state_change" and isinstance(data, Mapping) and data.get("cause") == "engaged"


def _decisions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"kind": e["kind"], "t": e["t"], "data": e["data"]}
            for e in events if e.get("kind") in DECISION_KINDS]


def _step_time(data: Mapping[str, Any], t: Any) -> Any:
    t_in = data.get("t_input", t)
    if isinstance(t_in, str):
        return _SPECIAL.get(t_in, t_in)
    return t_in


def replay(path: str | Path, *, max_mismatches: int = 100) -> ReplayReport:
    """Re-run a log: rebuild the Supervisor from its "config" event, feed every recorded step
    (decoded inputs, recorded elapsed time) and operator action, and compare the decisions.
    """
    from safety.config import SupervisorConfig
    from safety.supervisor import Supervisor

    events = read_events(path)
    integrity = verify(path, allow_unsealed=True)
    cfg_ev = next((e for e in events if e.get("kind") == "config"), None)
    if cfg_ev is None:
        return ReplayReport(0, [(-1, "a 'config' event", "none in the log")], False, integrity)
    data = cfg_ev["data"]
    cfg_data = data["config"] if "config" in data and "channels" not in data else data
    config = SupervisorConfig.model_validate(cfg_data)
    mem = AuditLog(None)
    sup = Supervisor(config, audit=mem)
    assert mem.records is not None
    # split the recorded log into segments, each opened by a trigger event
    segments: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for ev in events:
        if _is_trigger(ev):
            segments.append((ev, [ev]))
        elif segments:
            segments[-1][1].append(ev)
    report = ReplayReport(0, [], True, integrity)
    for trig, recorded in segments:
        start = len(mem.records)
        kind, t = trig["kind"], trig["t"]
        try:
            if kind == "step":
                d = trig["data"]
                ingested = {str(n): decode_input(v) for n, v in d.get("inputs", {}).items()}
                ego = d.get("ego_speed")
                el = d.get("elapsed")
                sup.step_ingested(
                    _step_time(d, t), ingested,
                    ego_speed=None if ego is None else _num(ego),
                    elapsed_override=None if el is None else _num(el),
                    unknown_channels=tuple(d.get("unknown_channels", ())),
                )
                report.n_steps += 1
            elif kind == "takeover_acknowledged":
                sup.acknowledge_takeover(_num(t))
            elif kind == "reset":
                sup.reset(_num(t))
            else:
                sup.engage(_num(t))
            actual = _decisions(mem.records[start:])
        except Exception as exc:  # a replay that cannot run is a mismatch, not a crash
            actual = [{"kind": "error", "t": t, "data": {"error": f"{type(exc).__name__}: {exc}"}}]
        expected = _decisions(recorded)
        if actual != expected:
            report.ok = False
            if len(report.mismatches) < max_mismatches:
                report.mismatches.append((int(trig["seq"]), expected, actual))
    return report


# ----------------------------------------------------------------------------- explain
def _state_name(s: Any) -> str:
    return str(s).upper() if s is not None else "UNKNOWN"


def _fmt_t(t: Any) -> str:
    try:
        return f"{_num(t):.3f} s"
    except (TypeError, ValueError, KeyError):
        return str(t)


def _fmt_num(x: Any) -> str:
    try:
        return f"{_num(x):.4g}"
    except (TypeError, ValueError, KeyError):
        return str(x)


def _describe(f: Mapping[str, Any], raised_at: Any) -> str:
    where = f" on channel {f['channel']!r}" if f.get("channel") else ""
    msg = str(f.get("message", "")).strip()
    text = (f"at t={_fmt_t(raised_at)} the {f.get('monitor', '?')} monitor raised "
            f"{f.get('kind', '?')}{where} ({f.get('impact', '?')} impact): {msg}")
    if "value" in f and "threshold" in f:
        text += f" [value {_fmt_num(f['value'])}, threshold {_fmt_num(f['threshold'])}"
        w = f.get("window")
        text += f", over {_fmt_num(w)} s of evidence]" if w not in (None, 0, 0.0) else "]"
    return text


def _finding_of(data: Any) -> dict[str, Any]:
    if isinstance(data, Mapping) and isinstance(data.get("finding"), Mapping):
        return dict(data["finding"])
    return dict(data) if isinstance(data, Mapping) else {}


def _before(t_ev: Any, t: float) -> bool:
    try:
        return _num(t_ev) <= t
    except (TypeError, ValueError, KeyError):
        return False


def explain(path: str | Path, t: float) -> str:
    """Why the system was in its state at time ``t``, in plain words: the last state change at
    or before ``t``, its reason, and the root cause (the earliest raised finding still active)
    with what it escalated and when.
    """
    events = [e for e in read_events(path) if e.get("kind") not in ("config", "step", "seal")]
    active: dict[tuple[Any, Any], tuple[Any, dict[str, Any]]] = {}
    changes: list[dict[str, Any]] = []
    takeover: dict[str, Any] | None = None
    mrm: dict[str, Any] | None = None
    for e in events:
        if not _before(e.get("t"), t):
            break
        kind, data = e["kind"], e.get("data") or {}
        if kind == "finding_raised":
            f = _finding_of(data)
            active[(f.get("kind"), f.get("channel"))] = (e["t"], f)
        elif kind == "finding_cleared":
            active.pop((data.get("kind"), data.get("channel")), None)
        elif kind == "state_change":
            changes.append(e)
            if data.get("to") != "takeover_requested":
                takeover = None
            if data.get("to") != "minimal_risk":
                mrm = None
        elif kind == "takeover_issued":
            takeover = {"t": e["t"], **data}
        elif kind == "mrm":
            mrm = {"t": e["t"], **data}
    lines: list[str] = []
    if not changes:
        lines.append(f"At t={_fmt_t(t)} the system was NOMINAL: no state change is recorded "
                     "at or before that time.")
    else:
        last = changes[-1]
        d = last["data"]
        lines.append(f"At t={_fmt_t(t)} the system was {_state_name(d.get('to'))}, since "
                     f"t={_fmt_t(last['t'])} (from {_state_name(d.get('from'))}).")
        if d.get("reason"):
            lines.append(f"Reason: {str(d['reason']).strip()}")
    # the root cause: earliest raised finding still active (worse than information first)
    ranked = sorted(active.values(), key=lambda a: (a[1].get("impact") == "info", _num(a[0])))
    root: tuple[Any, dict[str, Any]] | None = ranked[0] if ranked else None
    if root is None and changes:
        behind = changes[-1]["data"].get("findings") or []
        if behind:
            f0 = min(behind, key=lambda f: _num(f.get("t", 0.0)))
            root = (f0.get("t", changes[-1]["t"]), f0)
    if root is not None:
        raised_at, f = root
        still = "still active" if (f.get("kind"), f.get("channel")) in active else "since cleared"
        lines.append(f"Root cause ({still}): {_describe(f, raised_at)}")
        chain = [c for c in changes if _num(c["t"]) >= _num(raised_at)]
        if chain:
            steps = "; ".join(
                f"t={_fmt_t(c['t'])} {_state_name(c['data'].get('from'))} → "
                f"{_state_name(c['data'].get('to'))}" for c in chain
            )
            lines.append(f"What it escalated: {steps}.")
    elif changes:
        lines.append("No finding is active; the state follows from an operator action or "
                     f"recovery ({changes[-1]['data'].get('cause', 'unknown')}).")
    others = [a for a in ranked if a is not root]
    if others:
        lines.append("Other active findings: " + "; ".join(_describe(f, r) for r, f in others))
    if takeover is not None:
        dl = takeover.get("deadline")
        left = max(0.0, _num(dl) - t) if dl is not None else math.nan
        lines.append(f"A takeover was requested at t={_fmt_t(takeover['t'])} with deadline "
                     f"t={_fmt_t(dl)} ({left:.1f} s left): {takeover.get('reason', '')}")
    if mrm is not None:
        lines.append(f"Minimal-risk manoeuvre since t={_fmt_t(mrm['t'])}: tier "
                     f"{mrm.get('tier')}, {_fmt_num(mrm.get('deceleration'))} m/s², outcome "
                     f"{mrm.get('outcome')} ({mrm.get('reason', '')}).")
    return "\n".join(lines)
