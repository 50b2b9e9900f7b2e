"""Fuzz ``Supervisor.step`` with garbage: it never raises, always returns a state, and every
invalid input produces a finding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from perception.detections import Detections
from perception.detectors import CallableDetector, as_image
from perception.errors import DetectorError
from safety.channels import ChannelConfig, TrackerSettings
from safety.config import SupervisorConfig
from safety.supervisor import HealthState, StepOutput, Supervisor

CHANNELS = ("camera", "radar", "image")


def _config() -> SupervisorConfig:
    return SupervisorConfig(channels=[
        ChannelConfig(name="camera"),
        ChannelConfig(name="radar", kind="radar", role="redundant"),
        ChannelConfig(name="image", frame="image", role="redundant",
                      tracker=TrackerSettings(model="box", gating="iou")),
    ])


def _detector(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = frame.shape[:2]
    return np.array([[1.0, 1.0, w / 2, h / 2]]), np.array([0.8])


def valid_points(t: float, n: int) -> Detections:
    p = np.column_stack([np.linspace(5, 40, n), np.zeros(n)]) if n else np.zeros((0, 2))
    return Detections.from_points(p, t=t, sigma=0.3, scores=np.full(n, 0.9))


floats_any = st.floats(allow_nan=True, allow_infinity=True, width=64)
arrays_any = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
    elements=None,
)
garbage = st.one_of(
    st.none(), st.integers(), floats_any, st.text(max_size=5), st.binary(max_size=8),
    st.lists(floats_any, max_size=5), arrays_any,
    st.dictionaries(st.sampled_from(["z", "R", "scores", "labels", "t", "space", "bogus"]),
                    st.one_of(floats_any, arrays_any, st.text(max_size=3)), max_size=4),
    st.builds(lambda n: {"z": np.full((n, 2), 1.0), "R": np.broadcast_to(np.eye(2), (n, 2, 2))},
              st.sampled_from([0, 1, 5, 5000])),
    st.builds(lambda n: valid_points(0.0, n), st.integers(0, 30)),
    st.just(np.full((48, 64, 3), 120, np.uint8)), st.just(np.full((48, 64), np.nan)),
    st.just(Detections.from_boxes([[5, 5, 20, 30]], t=0.0)),
)
times = st.one_of(st.floats(-1.0, 1.0), st.sampled_from([math.nan, math.inf, -math.inf]),
                  st.just("later"), st.none())


def _valid(value: Any, name: str) -> bool:
    """What the supervisor should accept without complaint for this channel."""
    if value is None:
        return True
    if name == "image" and isinstance(value, np.ndarray):  # through the registered detector
        try:
            as_image(value)
        except DetectorError:
            return False
        return True
    want = "box" if name == "image" else "point"
    if isinstance(value, dict) and name != "image":  # a detection mapping: Detections decides
        try:
            n = len(np.asarray(value.get("z")))
            value = Detections(**{"t": 0.0, "scores": np.ones(n), "labels": np.zeros(n, int),
                                  **value})
        except Exception:
            return False
    if isinstance(value, Detections):
        return value.space == want and len(value) <= 1000
    return False


@given(steps=st.lists(st.tuples(times, st.fixed_dictionaries({c: garbage for c in CHANNELS}),
                                st.one_of(st.none(), floats_any, st.text(max_size=2))),
                      min_size=1, max_size=6),
       extra=st.one_of(st.none(), st.text(max_size=3)))
def test_step_never_raises_and_flags_invalid_input(steps: list[Any], extra: str | None) -> None:
    sup = Supervisor(_config(), detectors={"image": CallableDetector(_detector, name="d")})
    t_now = 0.0
    for dt_or_bad, inputs, ego in steps:
        if isinstance(dt_or_bad, float) and math.isfinite(dt_or_bad):
            t = t_now + dt_or_bad  # a negative step makes time go backwards
        else:
            t = dt_or_bad
        prev_t = sup._t
        if extra:
            inputs = {**inputs, extra: 1.0}
        out = sup.step(t, inputs, ego_speed=ego)
        assert isinstance(out, StepOutput) and isinstance(out.state, HealthState)
        assert isinstance(out.objects, list) and math.isfinite(out.t)
        # garbage is the input's fault, never an internal error of the safety layer
        assert not [f for f in out.raised if f.kind.startswith("internal.")], out.raised
        good_time = isinstance(t, float) and math.isfinite(t) and (prev_t is None or t > prev_t)
        if not good_time:
            assert any(f.kind == "integrity.time" for f in out.faults)
            continue
        t_now = t
        if ego is not None and not (isinstance(ego, float) and math.isfinite(ego)):
            assert any(f.kind == "integrity.ego_speed" for f in out.faults)
        for name in CHANNELS:
            v = inputs[name]
            if not _valid(v, name):
                assert any(f.channel == name for f in out.faults), (name, type(v), out.faults)


@given(payload=garbage)
def test_non_mapping_inputs_are_findings(payload: Any) -> None:
    bad: Any = payload if not isinstance(payload, dict) else [payload]
    sup = Supervisor(_config())
    out = sup.step(0.0, bad)
    assert out.state is not HealthState.NOMINAL
    assert {f.channel for f in out.faults} >= set(CHANNELS)
