"""Fault injectors: each does what it says inside its window and nothing outside."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from perception.detections import Detections
from perception.detectors import safe_detect
from perception.errors import DetectorError
from sim.faults import (
    DetectorInput,
    FaultChain,
    FaultConfig,
    FaultyDetector,
    PassthroughDetector,
    SimClock,
    build_fault_chains,
    make_fault,
)
from sim.render import RenderConfig, render_frame
from sim.sensors import FrameCamera, FrameCameraConfig, build_detector
from sim.triggers import TriggerContext
from sim.world import ActorConfig, World, WorldConfig

FA = TypeAdapter(FaultConfig)
DT = 0.1
START, STOP = 1.0, 2.0  # window used by most tests: active for t in [1.0, 2.0)


def fault_cfg(kind: str, **kw: Any) -> Any:
    data = {"kind": kind, "channel": "cam", "start": START, "duration": STOP - START, **kw}
    return FA.validate_python(data)


def points(t: float, n: int = 3) -> Detections:
    z = np.column_stack([10.0 + 5.0 * np.arange(n), np.linspace(-2, 2, n)])
    return Detections.from_points(
        z, t=t, sigma=0.5, scores=np.full(n, 0.8), labels=np.arange(n), sensor="cam"
    )


def boxes(t: float) -> Detections:
    return Detections.from_boxes(
        [[100, 100, 140, 180], [300, 200, 330, 260]], t=t, scores=[0.9, 0.7], sensor="cam"
    )


def drive(fault: Any, make: Any, t_end: float = 3.0) -> list[tuple[float, Any, Any]]:
    """Run one fault over a stream; rows (t, clean, delivered)."""
    chain = FaultChain("cam", [fault])
    out = []
    for k in range(round(t_end / DT) + 1):
        t = round(k * DT, 10)
        chain.update(TriggerContext(t=t))
        clean = make(t)
        out.append((t, clean, chain.apply(t, clean)))
    return out


def inside(t: float) -> bool:
    return START - 1e-9 <= t < STOP - 1e-9


def assert_identity_outside(rows: list[tuple[float, Any, Any]]) -> None:
    for t, clean, got in rows:
        if not inside(t):
            assert got is clean, f"fault acted outside its window at t={t}"


def mk(kind: str, seed: int = 0, **kw: Any) -> Any:
    return make_fault(fault_cfg(kind, **kw), np.random.default_rng(seed))


# ----------------------------------------------------------------------------- activation
def test_window_bookkeeping_and_describe() -> None:
    f = mk("dropout")
    drive(f, points)
    assert f.intervals == [(1.0, 2.0)]
    assert f.onsets == [1.0]
    assert f.active(1.5) and not f.active(0.9) and not f.active(2.0)
    text = f.describe()
    assert text == "cam: dropout (probability=1.0) from t >= 1 for 1 s"


def test_start_omitted_means_from_first_step_and_stop_trigger() -> None:
    cfg = FA.validate_python({"kind": "dropout", "channel": "cam", "stop": 0.5})
    f = make_fault(cfg, np.random.default_rng(0))
    rows = drive(f, points, 1.0)
    assert f.intervals == [(0.0, 0.5)]  # stop fires when t >= 0.5
    assert [r[2] is None for r in rows] == [True] * 5 + [False] * 6


def test_repeat_rearms_the_start_trigger() -> None:
    cfg = FA.validate_python(
        {"kind": "dropout", "channel": "cam", "duration": 0.3, "repeat": True,
         "start": {"any_of": [[{"kind": "ego_speed", "value": 5.0, "edge": "rising"}]]}}
    )  # fmt: skip
    f = make_fault(cfg, np.random.default_rng(0))
    speeds = [0, 9, 9, 9, 9, 0, 9, 9, 9, 9]
    for k, v in enumerate(speeds):
        f.update(TriggerContext(t=k * 0.1, ego_speed=v))
    assert [round(s, 3) for s in f.onsets] == [0.1, 0.6]


def test_unknown_kind_or_field_rejected() -> None:
    with pytest.raises(ValidationError):
        FA.validate_python({"kind": "gremlins", "channel": "cam"})
    with pytest.raises(ValidationError):
        FA.validate_python({"kind": "dropout", "channel": "cam", "probabilty": 0.5})
    with pytest.raises(ValueError, match="unknown channel"):
        build_fault_chains([fault_cfg("dropout")], 0, channels=["radar"])


def test_fault_streams_are_keyed_by_name_or_index() -> None:
    cfgs = [fault_cfg("missed", probability=0.5), fault_cfg("noise", sigma=1.0)]
    a = build_fault_chains(cfgs, 1)["cam"].faults[1].rng.random(4)
    b = build_fault_chains([*cfgs, fault_cfg("dropout")], 1)["cam"].faults[1].rng.random(4)
    np.testing.assert_array_equal(a, b)  # appending a fault changes nothing before it


# ----------------------------------------------------------------------------- stream faults
def test_dropout() -> None:
    rows = drive(mk("dropout"), points)
    assert_identity_outside(rows)
    assert all(got is None for t, _, got in rows if inside(t))


def test_frozen_repeats_last_output_before_onset() -> None:
    rows = drive(mk("frozen"), points)
    assert_identity_outside(rows)
    before = next(c for t, c, _ in reversed(rows) if t < START)
    for t, _, got in rows:
        if inside(t):
            assert np.array_equal(got.z, before.z) and got.t == pytest.approx(t)  # restamped
    rows = drive(mk("frozen", restamp=False), points)
    assert all(got.t == pytest.approx(0.9) for t, _, got in rows if inside(t))


def test_frozen_frame_is_byte_identical() -> None:
    frames = {k: np.full((16, 16), k, np.uint8) for k in range(31)}
    rows = drive(mk("frozen"), lambda t: frames[round(t * 10)])
    held = [got for t, _, got in rows if inside(t)]
    assert all(h.tobytes() == frames[9].tobytes() for h in held)


def test_latency_delivers_late_with_original_stamps() -> None:
    rows = drive(mk("latency", delay=0.3), points)
    assert_identity_outside(rows)
    got = {t: g for t, _, g in rows}
    assert got[1.0] is None and got[1.1] is None and got[1.2] is None
    assert got[1.3].t == pytest.approx(1.0) and got[1.9].t == pytest.approx(1.6)


def test_jitter_moves_timestamps_only() -> None:
    rows = drive(mk("jitter", sigma=0.05), points)
    assert_identity_outside(rows)
    dts = np.array([g.t - c.t for t, c, g in rows if inside(t)])
    assert np.all(dts != 0.0) and np.abs(dts).max() < 0.3
    assert all(np.array_equal(g.z, c.z) for t, c, g in rows if inside(t))


def test_reorder_delivers_out_of_order() -> None:
    rows = drive(mk("reorder", probability=1.0), points)
    assert_identity_outside(rows[:10])
    stamps = [g.t for t, _, g in rows if g is not None]
    assert any(b < a for a, b in pairwise(stamps))  # time went backwards
    assert set(np.round(stamps, 6)) <= {round(t, 6) for t, _, _ in rows}


def test_noise_increase_keeps_declared_covariance() -> None:
    rows = drive(mk("noise", sigma=2.0), points, 10.0)
    assert_identity_outside(rows)
    err = np.concatenate([g.z - c.z for t, c, g in rows if inside(t)])
    assert err.std() == pytest.approx(2.0, rel=0.35)
    assert all(np.array_equal(g.R, c.R) for t, c, g in rows if inside(t))
    rows = drive(mk("noise", sigma=2.0, inflate_R=True), points)
    g, c = next((g, c) for t, c, g in rows if inside(t))
    np.testing.assert_allclose(g.R[:, 0, 0], c.R[:, 0, 0] + 4.0)


def test_bias_step_points_and_boxes() -> None:
    rows = drive(mk("bias_step", offset=(1.5, -0.5)), points)
    assert_identity_outside(rows)
    for t, c, g in rows:
        if inside(t):
            np.testing.assert_allclose(g.z - c.z, np.tile([1.5, -0.5], (3, 1)))
    rows = drive(mk("bias_step", offset=(10.0, 0.0)), boxes)
    g, c = next((g, c) for t, c, g in rows if inside(t))
    np.testing.assert_allclose(g.z[:, 0] - c.z[:, 0], 10.0)
    np.testing.assert_allclose(g.z[:, 1:], c.z[:, 1:])


def test_bias_ramp_grows_from_onset_and_caps() -> None:
    rows = drive(mk("bias_ramp", rate=(2.0, 0.0), max_offset=1.5), points)
    assert_identity_outside(rows)
    off = {t: (g.z - c.z)[0, 0] for t, c, g in rows if inside(t)}
    assert off[1.0] == pytest.approx(0.0) and off[1.5] == pytest.approx(1.0)
    assert off[1.9] == pytest.approx(1.5)  # capped


def test_bias_step_shifts_frames() -> None:
    img = np.zeros((40, 40), np.uint8)
    img[10:20, 10:20] = 255
    rows = drive(mk("bias_step", offset=(5.0, 0.0)), lambda t: img)
    g = next(g for t, _, g in rows if inside(t))
    assert g[15, 24] == 255 and g[15, 12] == 0


def test_ghosts_persist_and_move_plausibly() -> None:
    rows = drive(mk("ghost", count=2, max_speed=3.0), points)
    assert_identity_outside(rows)
    inside_rows = [(t, c, g) for t, c, g in rows if inside(t)]
    assert all(len(g) == len(c) + 2 for _, c, g in inside_rows)
    ghosts = np.array([g.z[-2:] for _, _, g in inside_rows])
    steps = np.linalg.norm(np.diff(ghosts, axis=0), axis=2)
    assert steps.max() < 1.0  # < 10 m/s at 10 Hz: persists and moves smoothly
    assert np.all(np.abs(ghosts[..., 0]) < 60)


def test_missed_detections() -> None:
    rows = drive(mk("missed", probability=0.5), lambda t: points(t, 20), 10.0)
    assert_identity_outside(rows)
    kept = np.mean([len(g) / 20 for t, _, g in rows if inside(t)])
    assert kept == pytest.approx(0.5, abs=0.12)


def test_confidence_degradation() -> None:
    rows = drive(mk("confidence", scale=0.5, shift=-0.1), points)
    assert_identity_outside(rows)
    g = next(g for t, _, g in rows if inside(t))
    np.testing.assert_allclose(g.scores, 0.8 * 0.5 - 0.1)


def test_nan_corruption_yields_raw_arrays() -> None:
    rows = drive(mk("nan", fraction=0.3), points)
    assert_identity_outside(rows)
    for t, _, g in rows:
        if inside(t):
            assert isinstance(g, dict) and not isinstance(g, Detections)
            assert np.isnan(g["z"]).any()
            with pytest.raises(ValueError):
                Detections(
                    g["z"], g["R"], g["scores"], g["labels"], g["t"], g["sensor"], g["space"]
                )
    rows = drive(mk("nan"), lambda t: Detections.empty(t, "cam"))
    assert np.isnan(next(g for t, _, g in rows if inside(t))["z"]).all()
    rows = drive(mk("nan", fraction=0.1), lambda t: np.full((20, 20, 3), 9, np.uint8))
    g = next(g for t, _, g in rows if inside(t))
    assert g.dtype == np.float32 and np.isnan(g).any()


def test_faults_compose_in_order() -> None:
    chain = build_fault_chains(
        [
            FA.validate_python({"kind": "bias_step", "channel": "cam", "offset": (1.0, 0.0)}),
            FA.validate_python({"kind": "confidence", "channel": "cam", "scale": 0.5}),
        ],
        0,
    )["cam"]
    chain.update(TriggerContext(t=0.0))
    d = points(0.0)
    g = chain.apply(0.0, d)
    np.testing.assert_allclose(g.z[:, 0], d.z[:, 0] + 1.0)
    np.testing.assert_allclose(g.scores, 0.4)
    assert [f.kind for f in chain.active()] == ["bias_step", "confidence"]


# ----------------------------------------------------------------------------- image faults
def scene() -> tuple[FrameCamera, Any, Any]:
    cfg = FrameCameraConfig(channel="cam")
    cam = FrameCamera(cfg)
    world = World(
        WorldConfig(
            actors=[ActorConfig(id=1, position=(15, 0)), ActorConfig(id=2, position=(25, 4))]
        )
    )
    return cam, build_detector(cfg), world.truth()


def test_image_faults_act_on_frames_only_inside_window() -> None:
    cam, det, truth = scene()
    frame = render_frame(truth, cam.camera, RenderConfig(), np.random.default_rng(0))
    assert len(det.detect(frame, 0.0)) == 2
    grey = frame.mean()
    for kind, check in [
        ("glare", lambda g: (g >= 250).all(axis=2).mean() > 0.05),
        ("darkness", lambda g: g.mean() < 0.4 * grey and len(det.detect(g, 0.0)) == 0),
        (
            "blur",
            lambda g: (
                np.abs(np.diff(g.astype(float), axis=1)).mean()
                < 0.7 * np.abs(np.diff(frame.astype(float), axis=1)).mean()
            ),
        ),
    ]:
        rows = drive(mk(kind), lambda t: frame)
        assert_identity_outside(rows)
        g = next(g for t, _, g in rows if inside(t))
        assert g.shape == frame.shape and g.dtype == np.uint8
        assert check(g), kind
        d = points(0.0)
        f = mk(kind)
        f.update(TriggerContext(t=1.5))
        assert f.apply(1.5, d) is d  # measurement-level outputs pass untouched


def test_glare_over_an_actor_hides_it_from_the_detector() -> None:
    cam, det, truth = scene()
    frame = render_frame(truth, cam.camera, RenderConfig(), np.random.default_rng(0))
    f = mk("glare", center=(0.5, 0.55), radius=0.12)
    f.update(TriggerContext(t=1.5))
    assert len(det.detect(f.apply(1.5, frame), 0.0)) < 2


def test_ghosts_painted_on_frames_are_detected() -> None:
    cam, det, truth = scene()
    frame = render_frame(truth, cam.camera, RenderConfig(), np.random.default_rng(0))
    f = mk("ghost", count=1)
    f.update(TriggerContext(t=1.5))
    assert len(det.detect(f.apply(1.5, frame), 0.0)) >= 3 - 1  # a ghost box may cover an actor
    assert not np.array_equal(f.apply(1.6, frame), frame)


# ----------------------------------------------------------------------------- detector faults
def test_detector_crash_through_faulty_detector() -> None:
    chain = build_fault_chains([fault_cfg("detector_crash")], 0)["cam"]
    det = chain.make_detector()
    assert chain.needs_detector
    for k in range(30):
        t = round(k * DT, 10)
        chain.update(TriggerContext(t=t))
        x = chain.apply(t, points(t))
        assert isinstance(x, DetectorInput)  # routed through the detector in and out of the window
        if inside(t):
            with pytest.raises(DetectorError, match="crash"):
                safe_detect(det, x, t)
        else:
            assert np.array_equal(safe_detect(det, x, t).z, points(t).z)


def test_detector_hang_advances_the_sim_clock() -> None:
    clock = SimClock()
    chain = build_fault_chains([fault_cfg("detector_hang", seconds=0.4)], 0)["cam"]
    det = chain.make_detector(clock=clock)
    elapsed = {}
    for k in range(30):
        t = round(k * DT, 10)
        clock.set(t)
        chain.update(TriggerContext(t=t))
        x = chain.apply(t, points(t))
        before = clock()
        safe_detect(det, x, t)
        elapsed[t] = clock() - before
    assert all(elapsed[t] == pytest.approx(0.4 if inside(t) else 0.0) for t in elapsed)


def test_faulty_detector_wraps_an_image_detector() -> None:
    cam, inner, truth = scene()
    frame = render_frame(truth, cam.camera)
    det = FaultyDetector(inner)
    assert det.input_kind == "image" and len(safe_detect(det, frame, 0.0)) == 2
    det.crash = True
    with pytest.raises(DetectorError):
        safe_detect(det, frame, 0.0)
    with pytest.raises(DetectorError):
        safe_detect(PassthroughDetector(), "not detections", 0.0)


def test_nan_dict_through_passthrough_detector_is_rejected_as_nan() -> None:
    chain = build_fault_chains([fault_cfg("nan"), fault_cfg("detector_hang", seconds=0.1)], 0)[
        "cam"
    ]
    det = chain.make_detector()
    chain.update(TriggerContext(t=1.5))
    x = chain.apply(1.5, points(1.5))
    assert isinstance(x, dict)
    with pytest.raises(DetectorError, match="NaN"):
        safe_detect(det, x, 1.5)


def test_fault_chains_are_bit_identical_for_the_same_seed() -> None:
    cfgs = [
        fault_cfg("noise", sigma=1.0),
        fault_cfg("missed", probability=0.3),
        fault_cfg("ghost", count=2),
        fault_cfg("jitter", sigma=0.02),
    ]

    def run(seed: int) -> list[bytes]:
        chain = build_fault_chains(cfgs, seed)["cam"]
        out = []
        for k in range(30):
            t = round(k * DT, 10)
            chain.update(TriggerContext(t=t))
            d = chain.apply(t, points(t, 6))
            out.append(d.z.tobytes() + np.float64(d.t).tobytes())
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)
