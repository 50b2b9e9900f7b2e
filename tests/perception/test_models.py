"""Motion models: F/Q sanity, exact discretisation, SORT's settings, initiation, factory."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.common import Q_continuous_white_noise
from hypothesis import given
from hypothesis import strategies as st

from perception.models import (
    ConstantAcceleration,
    ConstantVelocity,
    MotionModel,
    SortBox,
    make_model,
    predict_model,
)

ALL = ("cv", "ca", "box")
dts = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
qs = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)


@given(name=st.sampled_from(ALL), dt=dts, q=qs)
def test_Q_is_symmetric_psd_and_F_has_unit_diagonal(name: str, dt: float, q: float) -> None:
    m = make_model(name, process_noise=q)
    F, Q = m.F(dt), m.Q(dt)
    assert F.shape == Q.shape == (m.dim_x, m.dim_x)
    np.testing.assert_array_equal(Q, Q.T)
    eig = np.linalg.eigvalsh(Q)
    assert eig.min() >= -1e-12 * max(1.0, eig.max())
    np.testing.assert_array_equal(np.diag(F), np.ones(m.dim_x))


@pytest.mark.parametrize("name", ALL)
def test_zero_dt_is_identity_without_noise(name: str) -> None:
    m = make_model(name, process_noise=3.0)
    np.testing.assert_array_equal(m.F(0.0), np.eye(m.dim_x))
    np.testing.assert_array_equal(m.Q(0.0), np.zeros((m.dim_x, m.dim_x)))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dt", [-0.1, float("nan"), float("inf")])
def test_bad_dt_is_rejected(name: str, dt: float) -> None:
    m = make_model(name)
    with pytest.raises(ValueError, match="dt"):
        m.F(dt)
    with pytest.raises(ValueError, match="dt"):
        m.Q(dt)


@given(
    dt=dts,
    state=st.lists(st.floats(-100, 100, allow_nan=False), min_size=6, max_size=6),
)
def test_kinematics_propagate_position(dt: float, state: list[float]) -> None:
    s = np.array(state)
    cv = ConstantVelocity()
    x = s[:4] @ cv.F(dt).T
    np.testing.assert_allclose(x[:2], s[:2] + s[2:4] * dt, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(x[2:], s[2:4], rtol=0, atol=0)
    ca = ConstantAcceleration()
    x = s @ ca.F(dt).T
    expected = s[:2] + s[2:4] * dt + 0.5 * s[4:6] * dt**2
    np.testing.assert_allclose(x[:2], expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(x[2:4], s[2:4] + s[4:6] * dt, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(x[4:], s[4:6], rtol=0, atol=0)


@given(dt=dts, q=qs)
def test_kinematic_Q_matches_filterpy_continuous_white_noise(dt: float, q: float) -> None:
    for model, order in ((ConstantVelocity(q=q), 2), (ConstantAcceleration(q=q), 3)):
        ref = Q_continuous_white_noise(dim=order, dt=dt, spectral_density=q, block_size=2,
                                       order_by_dim=False)
        np.testing.assert_allclose(model.Q(dt), ref, rtol=1e-12, atol=1e-300)


@given(a=st.floats(0.0, 3.0), b=st.floats(0.0, 3.0), q=qs, name=st.sampled_from(("cv", "ca")))
def test_kinematic_discretisation_is_exact(a: float, b: float, q: float, name: str) -> None:
    """Predicting over a then b equals predicting over a + b: F and Q compose as a semigroup."""
    m = make_model(name, process_noise=q)
    Fa, Fb, Fab = m.F(a), m.F(b), m.F(a + b)
    np.testing.assert_allclose(Fb @ Fa, Fab, rtol=1e-12, atol=1e-12)
    composed = Fb @ m.Q(a) @ Fb.T + m.Q(b)
    scale = max(1e-300, float(np.abs(m.Q(a + b)).max()))
    np.testing.assert_allclose(composed, m.Q(a + b), rtol=0, atol=1e-11 * scale)


def test_sort_box_matches_sort_at_one_frame() -> None:
    m = SortBox()
    F = np.eye(7)
    F[0, 4] = F[1, 5] = F[2, 6] = 1.0
    np.testing.assert_array_equal(m.F(1.0), F)
    np.testing.assert_array_equal(m.Q(1.0), np.diag([1, 1, 1, 1, 0.01, 0.01, 0.0001]))
    np.testing.assert_array_equal(m.H, np.eye(4, 7))
    z = np.array([[100.0, 50.0, 400.0, 0.5], [10.0, 20.0, 30.0, 2.0]])
    x, P = m.initiate(z, np.broadcast_to(np.eye(4), (2, 4, 4)))
    np.testing.assert_array_equal(x[:, :4], z)
    np.testing.assert_array_equal(x[:, 4:], 0.0)
    np.testing.assert_array_equal(P[1], np.diag([10, 10, 10, 10, 1e4, 1e4, 1e4]))
    assert m.space == "box" and m.dim_x == 7 and m.dim_z == 4


def test_sort_box_area_clamp() -> None:
    """SORT: if s + s' <= 0 then s' = 0 before predicting; other rows untouched."""
    m = SortBox()
    x = np.zeros((3, 7))
    x[:, 2] = [100.0, 100.0, 100.0]
    x[:, 6] = [-100.0, -99.0, -150.0]
    out = m.constrain(x, 1.0)
    np.testing.assert_array_equal(out[:, 6], [0.0, -99.0, 0.0])
    np.testing.assert_array_equal(x[:, 6], [-100.0, -99.0, -150.0])  # input not modified
    xp, _ = predict_model(m, x, np.broadcast_to(np.eye(7), (3, 7, 7)).copy(), 1.0)
    assert np.all(xp[:, 2] > 0.0)
    np.testing.assert_array_equal(xp[:, 2], [100.0, 1.0, 100.0])


@given(name=st.sampled_from(ALL), n=st.integers(0, 5), seed=st.integers(0, 2**32 - 1))
def test_initiate_leaves_unmeasured_at_zero_with_large_variance(
    name: str, n: int, seed: int
) -> None:
    m: MotionModel = make_model(name)
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 50.0, size=(n, m.dim_z))
    A = rng.normal(size=(n, m.dim_z, m.dim_z))
    R = A @ A.transpose(0, 2, 1) + np.eye(m.dim_z)
    x, P = m.initiate(z, R)
    assert x.shape == (n, m.dim_x) and P.shape == (n, m.dim_x, m.dim_x)
    np.testing.assert_array_equal(x[:, : m.dim_z], z)
    np.testing.assert_array_equal(x[:, m.dim_z :], 0.0)
    np.testing.assert_array_equal(P, P.transpose(0, 2, 1))
    if n:
        assert np.linalg.eigvalsh(P).min() > 0.0
        unmeasured = np.diagonal(P, axis1=1, axis2=2)[:, m.dim_z :]
        assert unmeasured.min() >= 100.0
        np.testing.assert_array_equal(P[:, : m.dim_z, m.dim_z :], 0.0)
    if m.name != "box":
        np.testing.assert_array_equal(P[:, :2, :2], R)
    np.testing.assert_array_equal(m.position(x), z[:, :2])
    np.testing.assert_array_equal(m.position_cov(P), P[:, :2, :2])


def test_make_model_names_and_errors() -> None:
    assert isinstance(make_model("cv"), ConstantVelocity)
    assert isinstance(make_model("ca"), ConstantAcceleration)
    assert isinstance(make_model("box"), SortBox)
    assert make_model("cv", process_noise=2.5).Q(1.0)[2, 2] == 2.5
    for name in ALL:
        m = make_model(name)
        assert m.name == name
        np.testing.assert_array_equal(m.H, np.eye(m.dim_z, m.dim_x))
    with pytest.raises(ValueError, match="unknown motion model"):
        make_model("kalman")
    with pytest.raises(ValueError, match="process noise"):
        make_model("cv", process_noise=-1.0)


def test_model_matrices_are_read_only() -> None:
    """F and Q are cached per dt; handing out writable arrays would let a caller corrupt them."""
    m = make_model("cv")
    with pytest.raises(ValueError):
        m.F(0.1)[0, 2] = 5.0
    with pytest.raises(ValueError):
        m.Q(0.1)[0, 0] = 5.0
