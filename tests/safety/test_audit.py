"""Audit log: hash chain, seal, tamper detection, fsync policies, exact input round trip."""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception.detections import Detections
from perception.imagestats import ImageStats
from safety import audit as audit_mod
from safety.audit import (
    GENESIS,
    AuditLog,
    canonical_json,
    decode_input,
    encode_input,
    explain,
    read_events,
    verify,
)
from safety.context import ChannelInput
from safety.findings import Finding, Impact

_TMP = Path(tempfile.mkdtemp(prefix="vigil-audit-test-"))


def _finding(kind: str, channel: str | None, t: float, impact: Impact, msg: str) -> Finding:
    return Finding(kind, kind.split(".")[0], channel, impact, 1.5, 1.0, 0.5, msg, t, (3,))


@cache
def clean_log() -> bytes:
    """A small sealed log with awkward content: NaN, inf, unicode, numpy values, nesting."""
    path = _TMP / "clean.jsonl"
    path.unlink(missing_ok=True)
    with AuditLog(path) as log:
        log.append("config", 0.0, {"config": {"channels": [{"name": "camera"}], "x": 1}})
        log.append("step", 0.1, {"inputs": {"camera": encode_input(ChannelInput(
            True, Detections.from_points([[1.0, 2.0], [-0.0, 1e-300]], t=0.1)))},
            "elapsed": float("nan"), "ego_speed": None})
        log.append("finding_raised", 0.2, _finding(
            "liveness.stale", "radar", 0.2, Impact.CHANNEL, "Radar sent nothing for 1.5 s.",
        ).to_dict())
        log.append("state_change", 0.2, {"from": "nominal", "to": "degraded", "reason": "café ✓",
                                         "findings": [], "v": np.float64(np.inf),
                                         "n": np.int64(-3), "a": np.arange(3)})
        log.append("mrm", 0.3, {"deceleration": -math.inf, "tuple": (1, 2.5, "x")})
    return path.read_bytes()


def write(data: bytes, name: str = "mut.jsonl") -> Path:
    p = _TMP / name
    p.write_bytes(data)
    return p


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


# ----------------------------------------------------------------------------- clean logs
def test_clean_log_verifies_and_records_are_chained() -> None:
    data = clean_log()
    res = verify(write(data))
    assert res.ok and res.first_bad_line is None and res.n_events == 5, res
    recs = [json.loads(x) for x in lines_of(data)]
    assert [r["seq"] for r in recs] == list(range(6))
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(recs))
    assert recs[-1]["kind"] == "seal"
    assert recs[-1]["data"] == {"count": 5, "last_hash": recs[-2]["hash"]}
    assert recs[1]["data"]["elapsed"] == "NaN"
    assert recs[3]["data"]["v"] == "Infinity" and recs[3]["data"]["a"] == [0, 1, 2]
    assert recs[4]["data"]["deceleration"] == "-Infinity"
    assert all(set(r) == {"seq", "kind", "t", "data", "prev", "hash"} for r in recs)
    assert read_events(write(data)) == recs


def test_append_returns_the_written_record() -> None:
    log = AuditLog(None)
    rec = log.append("x", 1.0, {"b": np.float32(0.5), "a": [np.nan]})
    assert rec["data"] == {"a": ["NaN"], "b": 0.5} and rec["seq"] == 0 and rec["prev"] == GENESIS
    assert log.records == [rec]
    log.close()
    assert log.records is not None and log.records[-1]["kind"] == "seal"


def test_canonical_json_is_sorted_compact_ascii() -> None:
    assert canonical_json({"b": 1, "a": [1.5, float("nan")], "é": "ü"}) == (
        '{"a":[1.5,"NaN"],"b":1,"\\u00e9":"\\u00fc"}'
    )


def test_misuse_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        AuditLog(tmp_path / "a.jsonl", fsync="sometimes")  # type: ignore[arg-type]
    p = tmp_path / "b.jsonl"
    log = AuditLog(p)
    with pytest.raises(ValueError, match="seal"):
        log.append("seal", 0.0, {})
    log.append("x", 0.0, {})
    log.close()
    log.close()  # idempotent
    with pytest.raises(ValueError, match="sealed"):
        log.append("x", 1.0, {})
    with pytest.raises(FileExistsError):
        AuditLog(p)
    AuditLog(p, overwrite=True).close()
    assert verify(p).ok and verify(p).n_events == 0


def test_unsealed_log_needs_allow_unsealed(tmp_path: Path) -> None:
    p = tmp_path / "open.jsonl"
    log = AuditLog(p, fsync="never")
    log.append("a", 0.0, {"k": 1})
    log.append("b", 1.0, {"k": 2})
    # flushed per event: visible to another reader before close
    assert len(lines_of(p.read_bytes())) == 2
    res = verify(p)
    assert not res.ok and res.first_bad_line == 3 and "seal" in res.reason
    assert verify(p, allow_unsealed=True).ok
    log.close()
    assert verify(p).ok


@pytest.mark.parametrize(("policy", "expected"), [("event", 4), ("close", 1), ("never", 0)])
def test_fsync_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str,
                        expected: int) -> None:
    calls: list[int] = []
    monkeypatch.setattr(audit_mod.os, "fsync", lambda fd: calls.append(fd))
    p = tmp_path / f"{policy}.jsonl"
    log = AuditLog(p, fsync=policy)  # type: ignore[arg-type]
    log.append("a", 0.0, {})
    assert p.read_bytes().count(b"\n") == 1  # flushed at once whatever the policy
    log.append("b", 0.1, {})
    log.close()  # event: 2 appends + seal + close; close: once; never: none
    assert len(calls) == expected
    assert verify(p).ok


def test_fsync_reaches_the_real_call(tmp_path: Path) -> None:
    p = tmp_path / "real.jsonl"
    with AuditLog(p, fsync="event") as log:
        log.append("a", 0.0, {"x": 1})
    assert os.path.getsize(p) > 0 and verify(p).ok


# ----------------------------------------------------------------------------- tampering
@given(st.data())
def test_any_single_byte_edit_is_detected_at_its_line(data: st.DataObject) -> None:
    log = clean_log()
    pos = data.draw(st.integers(0, len(log) - 1), label="pos")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != log[pos]), label="byte")
    bad = log[:pos] + bytes([new]) + log[pos + 1:]
    res = verify(write(bad))
    assert not res.ok
    assert res.first_bad_line == log[:pos].count(b"\n") + 1, res


@given(st.data())
def test_any_line_deletion_is_detected(data: st.DataObject) -> None:
    ls = lines_of(clean_log())
    j = data.draw(st.integers(0, len(ls) - 1))
    res = verify(write(b"".join(x + b"\n" for k, x in enumerate(ls) if k != j)))
    assert not res.ok and res.first_bad_line == j + 1, res


@given(st.data())
def test_any_swap_of_two_lines_is_detected(data: st.DataObject) -> None:
    ls = lines_of(clean_log())
    i = data.draw(st.integers(0, len(ls) - 2))
    j = data.draw(st.integers(i + 1, len(ls) - 1))
    ls[i], ls[j] = ls[j], ls[i]
    res = verify(write(b"".join(x + b"\n" for x in ls)))
    assert not res.ok and res.first_bad_line == i + 1, res


@given(st.data())
def test_any_byte_truncation_is_detected(data: st.DataObject) -> None:
    log = clean_log()
    k = data.draw(st.integers(0, len(log) - 1))
    res = verify(write(log[:k]))
    assert not res.ok and res.first_bad_line == log[:k].count(b"\n") + 1, res


@given(st.data())
def test_any_line_truncation_is_detected_unless_unsealed_allowed(data: st.DataObject) -> None:
    ls = lines_of(clean_log())
    m = data.draw(st.integers(0, len(ls) - 1))
    p = write(b"".join(x + b"\n" for x in ls[:m]))
    res = verify(p)
    assert not res.ok and res.first_bad_line == m + 1 and "seal" in res.reason
    # without the seal requirement a clean cut at a line boundary is a valid (open) log
    assert verify(p, allow_unsealed=True).ok


def test_appended_lines_after_the_seal_are_detected() -> None:
    log = clean_log()
    extra = log.split(b"\n")[1] + b"\n"
    res = verify(write(log + extra))
    assert not res.ok and res.first_bad_line == len(lines_of(log)) + 1


# ----------------------------------------------------------------------------- input round trip
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
positive = st.floats(min_value=1e-9, max_value=1e9)


@st.composite
def detections(draw: st.DrawFn) -> Detections:
    space: Literal["point", "box"] = draw(st.sampled_from(["point", "box"]))
    m = 4 if space == "box" else 2
    n = draw(st.integers(0, 5))
    z = np.array([[draw(finite) for _ in range(m)] for _ in range(n)]).reshape(n, m)
    if space == "box" and n:
        z[:, 2:4] = np.array([[draw(positive), draw(positive)] for _ in range(n)])
    R = np.zeros((n, m, m))
    for i in range(n):
        R[i] = np.diag([draw(st.floats(0.0, 1e6)) for _ in range(m)])
    scores = np.array([draw(st.floats(0.0, 1.0)) for _ in range(n)])
    labels = np.array([draw(st.integers(-(2**40), 2**40)) for _ in range(n)], dtype=np.int64)
    rr = None
    if draw(st.booleans()):
        rr = np.array([draw(finite) for _ in range(n)])
    t = draw(finite)
    sensor = draw(st.text(max_size=8))
    return Detections(z, R, scores, labels, t, sensor, space, rr)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@given(detections(), st.booleans(), st.one_of(st.none(), st.text(max_size=20)),
       st.floats(allow_nan=True, allow_infinity=True))
def test_encode_decode_round_trip_is_exact(dets: Detections, with_stats: bool,
                                           err: str | None, elapsed: float) -> None:
    stats = ImageStats("ab" * 32, float("nan"), 12.5, float("inf"), (480, 640, 3)) \
        if with_stats else None
    ci = ChannelInput(True, dets, "nan" if err else None, err, stats, elapsed)
    log = AuditLog(None)
    rec = log.append("step", dets.t, {"inputs": {"c": encode_input(ci)}})
    back = decode_input(json.loads(json.dumps(rec))["data"]["inputs"]["c"])
    d2 = back.detections
    assert d2 is not None
    for name in ("z", "R", "scores", "labels", "range_rate"):
        assert _same(getattr(dets, name), getattr(d2, name)), name
    assert (d2.t, d2.sensor, d2.space) == (dets.t, dets.sensor, dets.space)
    assert (back.received, back.error_kind, back.error) == (True, ci.error_kind, err)
    assert (math.isnan(back.detector_elapsed) and math.isnan(elapsed)) or \
        back.detector_elapsed == elapsed
    if stats is None:
        assert back.image_stats is None
    else:
        s = back.image_stats
        assert s is not None and s.digest == stats.digest and s.shape == stats.shape
        assert math.isnan(s.brightness) and s.contrast == 12.5 and s.sharpness == math.inf


def test_round_trip_of_empty_and_rejected_inputs() -> None:
    for ci in (ChannelInput(False), ChannelInput(True, None, "shape", "z has shape (3,)"),
               ChannelInput(True, Detections.empty(2.0, "cam", "box"))):
        back = decode_input(json.loads(canonical_json(encode_input(ci))))
        assert back.received == ci.received and back.error == ci.error
        if ci.detections is not None:
            assert back.detections is not None and back.detections.z.shape == (0, 4)


# ----------------------------------------------------------------------------- explain
def _story(path: Path) -> None:
    f1 = _finding("liveness.stale", "radar", 2.0, Impact.CHANNEL, "Radar sent nothing for 1.5 s.")
    f2 = _finding("integrity.nan", "camera", 4.0, Impact.CHANNEL, "Camera detections hold NaN.")
    with AuditLog(path) as log:
        log.append("config", 0.0, {"channels": []})
        log.append("step", 1.0, {"inputs": {}})
        log.append("finding_raised", 2.0, f1.to_dict())
        log.append("state_change", 2.0, {"from": "nominal", "to": "degraded", "cause": "fault",
                                         "reason": "Radar sent nothing — automation continues.",
                                         "findings": [f1.to_dict()]})
        log.append("finding_raised", 4.0, f2.to_dict())
        log.append("state_change", 4.0, {"from": "degraded", "to": "takeover_requested",
                                         "cause": "fault", "reason": "No healthy channel left.",
                                         "findings": [f1.to_dict(), f2.to_dict()]})
        log.append("takeover_issued", 4.0, {"reason": "Please take over.", "deadline": 14.0})
        log.append("finding_cleared", 6.0, {"kind": "integrity.nan", "channel": "camera"})


def test_explain_names_state_reason_and_root_cause(tmp_path: Path) -> None:
    p = tmp_path / "story.jsonl"
    _story(p)
    early = explain(p, 1.0)
    assert "NOMINAL" in early and "no state change" in early
    mid = explain(p, 3.0)
    assert "DEGRADED" in mid and "since t=2.000 s" in mid and "Radar sent nothing" in mid
    assert "liveness.stale" in mid and "'radar'" in mid
    late = explain(p, 5.0)
    assert late.startswith("At t=5.000 s the system was TAKEOVER_REQUESTED, since t=4.000 s")
    root = next(x for x in late.splitlines() if x.startswith("Root cause"))
    assert "liveness.stale" in root and "at t=2.000 s" in root  # the earliest, not the latest
    assert "NOMINAL → DEGRADED" in late and "DEGRADED → TAKEOVER_REQUESTED" in late
    assert "integrity.nan" in late  # the other active finding
    assert "9.0 s left" in late
    cleared = explain(p, 7.0)
    assert "integrity.nan" not in cleared and "liveness.stale" in cleared


def test_edit_that_overflows_a_float_is_reported_not_raised() -> None:
    log = clean_log()
    assert b"1e-300" in log
    res = verify(write(log.replace(b"1e-300", b"1e9300", 1)))
    assert not res.ok and res.first_bad_line == 2 and "canonical" in res.reason
    res = verify(write(log.replace(b'"NaN"', b"NaN\x20\x20", 1)))
    assert not res.ok and res.first_bad_line == 2


# ----------------------------------------------------------------------------- replay
def _run_supervised(path: Path) -> dict[str, int]:
    """A short drive with the real Supervisor: radar drops out (DEGRADED), then the camera sends
    garbage (takeover), the driver acknowledges, and the operator resets.

    Returns the seq of the step event of each step index, keyed "step<k>".
    """
    from safety.config import SupervisorConfig
    from safety.supervisor import HealthState, Supervisor

    rng = np.random.default_rng(42)
    truth = np.array([[20.0, 0.0], [30.0, 5.0]])
    log = AuditLog(path, fsync="never")
    sup = Supervisor(SupervisorConfig.default(), audit=log)
    ack_at: float | None = None
    seqs: dict[str, int] = {}
    for k in range(110):
        t = round(0.1 * k, 10)
        cam = Detections.from_points(truth + rng.normal(0, 0.3, truth.shape), t=t, sigma=0.3,
                                     sensor="camera")
        rad = Detections.from_points(truth + rng.normal(0, 0.4, truth.shape), t=t, sigma=0.4,
                                     sensor="radar")
        seqs[f"step{k}"] = log.count
        inputs = {"camera": "garbage" if 60 <= k < 63 else cam, "radar": rad if k < 40 else None}
        out = sup.step(t, inputs, ego_speed=8.0)
        if out.takeover is not None and ack_at is None:
            ack_at = t + 1.0
        if ack_at is not None and abs(t - ack_at) < 1e-9:
            assert sup.acknowledge_takeover(t)
            assert sup.state is HealthState.MANUAL
        if k == 100:
            sup.reset(t)
    log.close()
    assert ack_at is not None, "the drive must exercise a takeover"
    return seqs


@pytest.fixture(scope="module")
def supervised_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("replay") / "drive.jsonl"
    return path, _run_supervised(path)


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, Any]], dict[str, Any] | None]
             ) -> None:
    events = read_events(src)
    events = [e for e in (edit(e) for e in events) if e is not None]
    dst.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_replay_reproduces_every_decision(supervised_log: tuple[Path, dict[str, int]]) -> None:
    from safety.audit import replay

    path, _ = supervised_log
    assert verify(path).ok
    kinds = [e["kind"] for e in read_events(path)]
    for k in ("state_change", "finding_raised", "takeover_issued", "takeover_acknowledged",
              "reset"):
        assert k in kinds, k
    report = replay(path)
    assert report.mismatches == [] and report.ok
    assert report.n_steps == 110
    assert report.integrity is not None and report.integrity.ok


def test_replay_reports_a_changed_input(supervised_log: tuple[Path, dict[str, int]],
                                        tmp_path: Path) -> None:
    """A step's recorded wall time raised past the budget: the next step's decisions differ."""
    from safety.audit import replay

    path, seqs = supervised_log
    target = seqs["step20"]

    def edit(e: dict[str, Any]) -> dict[str, Any]:
        if e["seq"] == target:
            assert e["kind"] == "step"
            e["data"]["elapsed"] = 1.0
        return e

    bad = tmp_path / "edited.jsonl"
    _rewrite(path, bad, edit)
    report = replay(bad)
    assert not report.ok and report.integrity is not None and not report.integrity.ok
    seq, expected, actual = report.mismatches[0]
    assert seq == seqs["step21"]
    assert not any(d["data"].get("kind") == "deadline.overrun" for d in expected)
    assert any(d["kind"] == "finding_raised" and d["data"]["kind"] == "deadline.overrun"
               for d in actual)


def test_replay_reports_a_deleted_decision(supervised_log: tuple[Path, dict[str, int]],
                                           tmp_path: Path) -> None:
    from safety.audit import replay

    path, _ = supervised_log
    first_change = next(e["seq"] for e in read_events(path) if e["kind"] == "state_change")
    bad = tmp_path / "deleted.jsonl"
    _rewrite(path, bad, lambda e: None if e["seq"] == first_change else e)
    report = replay(bad)
    assert not report.ok and len(report.mismatches) == 1
    _, expected, actual = report.mismatches[0]
    assert [d["kind"] for d in actual if d not in expected] == ["state_change"]


def test_explain_on_a_supervised_drive(supervised_log: tuple[Path, dict[str, int]]) -> None:
    path, _ = supervised_log
    events = read_events(path)
    issued = next(e for e in events if e["kind"] == "takeover_issued")
    text = explain(path, issued["t"])
    assert "TAKEOVER_REQUESTED" in text and "Root cause" in text
    assert "takeover was requested" in text
    ack = next(e for e in events if e["kind"] == "takeover_acknowledged")
    assert "MANUAL" in explain(path, ack["t"]).splitlines()[0]
