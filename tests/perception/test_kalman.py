"""The vectorized Kalman filter equals filterpy's KalmanFilter track by track, and stays SPD."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from perception.kalman import (
    FilterpyKalman,
    UpdateResult,
    VectorizedKalman,
    kf_predict,
    kf_update,
    make_backend,
)
from perception.models import make_model, predict_model

Arr = NDArray[np.float64]
RTOL = 1e-9


def random_spd(rng: np.random.Generator, n: int, d: int, scale: float, cond: float) -> Arr:
    """n random symmetric positive definite (d, d) matrices, eigenvalues in scale·[1/cond, 1]."""
    A = rng.normal(size=(n, d, d))
    U, _ = np.linalg.qr(A)
    lam = scale * cond ** -rng.uniform(0.0, 1.0, size=(n, d))
    M = (U * lam[:, None, :]) @ U.transpose(0, 2, 1)
    return 0.5 * (M + M.transpose(0, 2, 1))


def assert_rel_close(actual: Arr, expected: Arr, *scales: Arr) -> None:
    """|actual − expected| ≤ RTOL · (largest magnitude of the expected value and the inputs
    it is made of), per track: the norm-wise relative error of a floating-point computation."""
    n = expected.shape[0]
    assert actual.shape == expected.shape
    if n == 0:
        return
    mag = np.abs(expected.reshape(n, -1)).max(axis=1)
    for s in scales:
        mag = np.maximum(mag, np.abs(s.reshape(n, -1)).max(axis=1))
    err = np.abs((actual - expected).reshape(n, -1)).max(axis=1)
    assert np.all(err <= RTOL * mag), (err / np.where(mag > 0, mag, 1.0)).max()


def filterpy_step(
    x: Arr, P: Arr, F: Arr, Q: Arr, z: Arr, R: Arr, H: Arr
) -> tuple[Arr, Arr, UpdateResult]:
    """Reference: one filterpy KalmanFilter per track, predict then update."""
    n, dx = x.shape
    dz = H.shape[0]
    xp, Pp = np.empty_like(x), np.empty_like(P)
    xu, Pu = np.empty_like(x), np.empty_like(P)
    y, S, nis = np.empty((n, dz)), np.empty((n, dz, dz)), np.empty(n)
    for i in range(n):
        kf = KalmanFilter(dim_x=dx, dim_z=dz)
        kf.x = x[i].reshape(dx, 1).copy()
        kf.P = P[i].copy()
        kf.predict(F=F, Q=Q)
        xp[i], Pp[i] = kf.x[:, 0], kf.P
        kf.update(z[i].reshape(dz, 1), R=R[i], H=H)
        xu[i], Pu[i] = kf.x[:, 0], kf.P
        y[i], S[i] = kf.y[:, 0], kf.S
        nis[i] = kf.mahalanobis**2
    return xp, Pp, UpdateResult(xu, Pu, y, S, nis)


@st.composite
def problems(draw: st.DrawFn) -> dict[str, object]:
    """A random filtering problem: a model (or random dims and F), N tracks, noise, inputs."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([0, 1, 2, 3, 7, 20]))
    kind = draw(st.sampled_from(["cv", "ca", "box", "random"]))
    if kind == "random":
        dx = draw(st.integers(1, 8))
        dz = draw(st.integers(1, dx))
        F = np.eye(dx) + rng.normal(0.0, 0.5, size=(dx, dx)) * (rng.random((dx, dx)) < 0.4)
        Q = random_spd(rng, 1, dx, draw(st.floats(1e-3, 10.0)), 1e3)[0]
        H = np.eye(dz, dx)
    else:
        model = make_model(kind, process_noise=draw(st.floats(1e-3, 10.0)))
        dt = draw(st.floats(0.0, 2.0))
        F, Q, H = model.F(dt), model.Q(dt), model.H
        dx, dz = model.dim_x, model.dim_z
    if draw(st.booleans()):
        # a general (non-selection) H: exercises the dense path
        H = rng.normal(size=(dz, dx))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2, 1e4]))
    x = rng.normal(0.0, scale, size=(n, dx))
    P = random_spd(rng, n, dx, scale, draw(st.sampled_from([1.0, 1e2, 1e4])))
    R = random_spd(rng, n, dz, scale * draw(st.sampled_from([1e-2, 1.0, 1e2])), 1e2)
    z = x @ H.T + rng.normal(0.0, scale, size=(n, dz))
    return {"x": x, "P": P, "F": F, "Q": Q, "z": z, "R": R, "H": H}


@given(problems())
def test_vectorized_predict_and_update_equal_filterpy(p: dict[str, Arr]) -> None:
    x, P, F, Q, z, R, H = (p[k] for k in "x P F Q z R H".split())
    xp_ref, Pp_ref, upd_ref = filterpy_step(x, P, F, Q, z, R, H)
    xp, Pp = kf_predict(x, P, F, Q)
    assert xp.shape == x.shape and Pp.shape == P.shape
    assert_rel_close(xp, xp_ref, x)
    assert_rel_close(Pp, Pp_ref, P, np.broadcast_to(Q, P.shape))
    # update from the same prior so that only the update is compared
    upd = kf_update(xp_ref, Pp_ref, z, R, H)
    assert upd.y.shape == z.shape and upd.S.shape == R.shape and upd.nis.shape == (len(x),)
    assert_rel_close(upd.y, upd_ref.y, z, xp_ref)
    assert_rel_close(upd.S, upd_ref.S, R)
    assert_rel_close(upd.x, upd_ref.x, xp_ref, z)
    assert_rel_close(upd.P, upd_ref.P, Pp_ref)
    assert_rel_close(upd.nis, upd_ref.nis)


@given(problems())
def test_filterpy_backend_is_a_drop_in(p: dict[str, Arr]) -> None:
    x, P, F, Q, z, R, H = (p[k] for k in "x P F Q z R H".split())
    fb, vb = FilterpyKalman(), VectorizedKalman()
    (xa, Pa), (xb, Pb) = fb.predict(x, P, F, Q), vb.predict(x, P, F, Q)
    assert_rel_close(xb, xa, x)
    assert_rel_close(Pb, Pa, P, np.broadcast_to(Q, P.shape))
    ua, ub = fb.update(xa, Pa, z, R, H), vb.update(xa, Pa, z, R, H)
    assert isinstance(ua, UpdateResult) and isinstance(ub, UpdateResult)
    for fa, fbv, *scales in (
        (ua.x, ub.x, xa, z), (ua.P, ub.P, Pa), (ua.y, ub.y, z, xa), (ua.S, ub.S, R),
        (ua.nis, ub.nis),
    ):
        assert fa.shape == fbv.shape
        assert_rel_close(fbv, fa, *scales)


@given(problems())
def test_nis_is_y_S_inverse_y_and_outputs_are_symmetric(p: dict[str, Arr]) -> None:
    x, P, F, Q, z, R, H = (p[k] for k in "x P F Q z R H".split())
    xp, Pp = kf_predict(x, P, F, Q)
    np.testing.assert_array_equal(Pp, Pp.transpose(0, 2, 1))
    u = kf_update(xp, Pp, z, R, H)
    np.testing.assert_array_equal(u.P, u.P.transpose(0, 2, 1))
    ref = np.einsum("ni,ni->n", u.y, np.linalg.solve(u.S, u.y[..., None])[..., 0])
    assert np.all(u.nis >= 0.0)
    np.testing.assert_allclose(u.nis, ref, rtol=1e-8, atol=0)


@given(
    name=st.sampled_from(["cv", "ca", "box"]),
    n=st.sampled_from([1, 5, 30]),
    seed=st.integers(0, 2**32 - 1),
    q=st.floats(1e-4, 10.0),
)
def test_covariances_stay_symmetric_positive_definite(
    name: str, n: int, seed: int, q: float
) -> None:
    """200 random steps (random dt, random missed updates, noise spanning decades)."""
    rng = np.random.default_rng(seed)
    m = make_model(name, process_noise=q)
    dz = m.dim_z
    truth = rng.normal(0.0, 100.0, size=(n, dz))
    if name == "box":
        truth[:, 2] = rng.uniform(100.0, 1e4, size=n)
        truth[:, 3] = rng.uniform(0.3, 3.0, size=n)
    steps = 200
    Rs = random_spd(rng, steps * n, dz, 1.0, 1e3) * 10.0 ** rng.uniform(-3, 2, (steps * n, 1, 1))
    Rs = Rs.reshape(steps, n, dz, dz)
    noise = np.einsum("snij,snj->sni", np.linalg.cholesky(Rs), rng.normal(size=(steps, n, dz)))
    dts = rng.choice([0.0, 0.01, 0.1, 1.0, 3.0], size=steps)
    updated = rng.random(steps) < 0.8
    x, P = m.initiate(truth, Rs[0])
    for k in range(steps):
        x, P = predict_model(m, x, P, float(dts[k]))
        np.testing.assert_array_equal(P, P.transpose(0, 2, 1))
        if updated[k]:
            u = kf_update(x, P, truth + noise[k], Rs[k], m.H)
            x, P = u.x, u.P
            assert np.all(np.isfinite(u.nis)) and np.all(u.nis >= 0.0)
            np.testing.assert_array_equal(P, P.transpose(0, 2, 1))
        np.linalg.cholesky(P)  # raises LinAlgError unless every P is positive definite
    eig = np.linalg.eigvalsh(P)
    assert np.all(eig[:, 0] > 0.0), eig[:, 0].min()


def test_empty_and_single_track_shapes() -> None:
    for dx, dz in ((4, 2), (7, 4)):
        H = np.eye(dz, dx)
        x0, P0 = kf_predict(np.zeros((0, dx)), np.zeros((0, dx, dx)), np.eye(dx), np.eye(dx))
        assert x0.shape == (0, dx) and P0.shape == (0, dx, dx)
        u = kf_update(x0, P0, np.zeros((0, dz)), np.zeros((0, dz, dz)), H)
        assert u.x.shape == (0, dx) and u.P.shape == (0, dx, dx)
        assert u.y.shape == (0, dz) and u.S.shape == (0, dz, dz) and u.nis.shape == (0,)
        fu = FilterpyKalman().update(x0, P0, np.zeros((0, dz)), np.zeros((0, dz, dz)), H)
        assert fu.P.shape == (0, dx, dx) and fu.nis.shape == (0,)
    u = kf_update(np.zeros((1, 2)), np.eye(2)[None], np.array([[3.0, 4.0]]), np.eye(2)[None],
                  np.eye(2))
    np.testing.assert_allclose(u.x, [[1.5, 2.0]])
    np.testing.assert_allclose(u.P, 0.5 * np.eye(2)[None])
    np.testing.assert_allclose(u.nis, [12.5])


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    P = random_spd(rng, 5, 4, 1.0, 10.0)
    z = rng.normal(size=(5, 2))
    R = random_spd(rng, 5, 2, 1.0, 10.0)
    copies = [a.copy() for a in (x, P, z, R)]
    kf_predict(x, P, np.eye(4), np.eye(4))
    kf_update(x, P, z, R, np.eye(2, 4))
    for a, b in zip((x, P, z, R), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="kf_predict"):
        kf_predict(np.zeros((2, 4)), np.zeros((3, 4, 4)), np.eye(4), np.eye(4))
    with pytest.raises(ValueError, match="kf_update"):
        kf_update(np.zeros((2, 4)), np.zeros((2, 4, 4)), np.zeros((2, 3)), np.zeros((2, 2, 2)),
                  np.eye(2, 4))
    # the diverse backend checks its inputs the same way, naming itself
    with pytest.raises(ValueError, match=r"FilterpyKalman\.predict"):
        FilterpyKalman().predict(np.zeros((2, 4)), np.zeros((3, 4, 4)), np.eye(4), np.eye(4))
    with pytest.raises(ValueError, match=r"FilterpyKalman\.update"):
        FilterpyKalman().update(np.zeros((2, 4)), np.zeros((2, 4, 4)), np.zeros((2, 3)),
                                np.zeros((2, 2, 2)), np.eye(2, 4))


def test_make_backend() -> None:
    assert isinstance(make_backend("vectorized"), VectorizedKalman)
    assert isinstance(make_backend("filterpy"), FilterpyKalman)
    assert make_backend().name == "vectorized"
    with pytest.raises(ValueError, match="unknown Kalman backend"):
        make_backend("cuda")


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([1, 3, 7, 20]),
    steps=st.integers(1, 6),
    dt=st.sampled_from([0.1, 1.0, 2.0]),
)
def test_diagonal_measurement_noise_path_equals_filterpy(
    seed: int, n: int, steps: int, dt: float
) -> None:
    """SORT's boxes: a diagonal R keeps S diagonal (the elimination meets zeros off the
    diagonal); the result equals filterpy step after step, and S stays diagonal along the way."""
    rng = np.random.default_rng(seed)
    m = make_model("box")
    F, Q, H = m.F(dt), m.Q(dt), m.H
    z0 = np.column_stack([rng.uniform(0, 1000, (n, 2)), rng.uniform(100, 1e4, n),
                          rng.uniform(0.3, 3.0, n)])
    x, P = m.initiate(z0, np.zeros((n, 4, 4)))
    for _ in range(steps):
        R = np.zeros((n, 4, 4))
        R[:, [0, 1, 2, 3], [0, 1, 2, 3]] = rng.uniform(0.5, 20.0, (n, 4))
        z = x[:, :4] + rng.normal(0.0, 3.0, (n, 4))
        xp_ref, Pp_ref, ref = filterpy_step(x, P, F, Q, z, R, H)
        xp, Pp = kf_predict(x, P, F, Q)
        assert_rel_close(xp, xp_ref, x)
        assert_rel_close(Pp, Pp_ref, P, np.broadcast_to(Q, P.shape))
        S_top = Pp_ref[:, :4, :4]
        assert np.count_nonzero(S_top) == 4 * n  # the measured block is diagonal
        u = kf_update(xp_ref, Pp_ref, z, R, H)
        assert_rel_close(u.x, ref.x, xp_ref, z)
        assert_rel_close(u.P, ref.P, Pp_ref)
        assert_rel_close(u.S, ref.S, R)
        assert_rel_close(u.nis, ref.nis)
        np.testing.assert_array_equal(u.P, u.P.transpose(0, 2, 1))
        x, P = ref.x, ref.P


@pytest.mark.parametrize("kind", ["cv", "ca", "box"])
def test_many_tracks_equal_filterpy(kind: str) -> None:
    """Dozens of tracks with full random covariances in one update: filterpy's answer each."""
    rng = np.random.default_rng(17)
    n = 73
    m = make_model(kind, process_noise=0.5)
    F, Q, H = m.F(0.5), m.Q(0.5), m.H
    dx, dz = m.dim_x, m.dim_z
    x = rng.normal(0.0, 10.0, size=(n, dx))
    P = random_spd(rng, n, dx, 10.0, 1e3)
    R = random_spd(rng, n, dz, 1.0, 1e2)
    z = x @ H.T + rng.normal(0.0, 1.0, size=(n, dz))
    xp_ref, Pp_ref, ref = filterpy_step(x, P, F, Q, z, R, H)
    u = kf_update(xp_ref, Pp_ref, z, R, H)
    assert_rel_close(u.x, ref.x, xp_ref, z)
    assert_rel_close(u.P, ref.P, Pp_ref)
    assert_rel_close(u.nis, ref.nis)
    np.testing.assert_array_equal(u.P, u.P.transpose(0, 2, 1))
