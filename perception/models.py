"""Motion models for the Kalman trackers: transition ``F(dt)``, process noise ``Q(dt)``, ``H``.

Every model measures the first ``dim_z`` state components (``H = [I, 0]``, a selection matrix,
which the vectorized filter exploits) and starts new tracks with the unmeasured components at
zero and a large variance.

- :class:`ConstantVelocity` [x, y, vx, vy] and :class:`ConstantAcceleration`
  [x, y, vx, vy, ax, ay]: planar kinematics with continuous white-noise acceleration (CV) or
  jerk (CA) of spectral density ``q``, discretised exactly over ``dt``.
- :class:`SortBox` [u, v, s, r, u', v', s']: SORT's box model (centre, area, aspect ratio) with
  SORT's original covariance settings; ``dt`` is in frames for MOT data.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from perception.kalman import KalmanBackend, VectorizedKalman

FloatArray = NDArray[np.float64]
Space = Literal["point", "box"]
ModelName = Literal["cv", "ca", "box"]


class MotionModel(Protocol):
    """What a tracker needs from a motion model (all arrays float64, batched over N tracks)."""

    name: str
    space: Space
    dim_x: int
    dim_z: int
    H: FloatArray  # (dz, dx) selection matrix: measured components first

    def F(self, dt: float) -> FloatArray:
        """State transition over ``dt`` (dx, dx)."""
        ...

    def Q(self, dt: float) -> FloatArray:
        """Process noise accumulated over ``dt`` (dx, dx), symmetric PSD."""
        ...

    def initiate(self, z: FloatArray, R: FloatArray) -> tuple[FloatArray, FloatArray]:
        """New tracks (x (N, dx), P (N, dx, dx)) from measurements z (N, dz), R (N, dz, dz)."""
        ...

    def position(self, x: FloatArray) -> FloatArray:
        """Position part (N, 2) of states (N, dx)."""
        ...

    def position_cov(self, P: FloatArray) -> FloatArray:
        """Position covariance (N, 2, 2) of covariances (N, dx, dx)."""
        ...


def _check_dt(dt: float) -> float:
    dt = float(dt)
    if not math.isfinite(dt) or dt < 0.0:
        raise ValueError(f"dt must be finite and >= 0, got {dt!r}")
    return dt


def _frozen(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


_EYE2 = np.eye(2)


def _kron_eye2(A: FloatArray) -> FloatArray:
    """``np.kron(A, eye(2))`` (the same products A[i, j] · I[k, l]) without kron's overhead."""
    n = A.shape[0]
    out: FloatArray = (A[:, None, :, None] * _EYE2[None, :, None, :]).reshape(2 * n, 2 * n)
    return out


@lru_cache(maxsize=256)
def _kinematic_F(order: int, dt: float) -> FloatArray:
    """Planar kinematic transition for states [pos(2), vel(2), (acc(2))], order 1 or 2."""
    n = order + 1
    F1 = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            F1[i, j] = dt ** (j - i) / float(math.factorial(j - i))
    return _frozen(_kron_eye2(F1))


@lru_cache(maxsize=256)
def _kinematic_Q(order: int, dt: float, q: float) -> FloatArray:
    """Exact discretisation of continuous white noise on the highest derivative (density q).

    Entry (i, j) per axis: q dt^(p_i + p_j + 1) / ((p_i + p_j + 1) p_i! p_j!), p = order - index.
    """
    n = order + 1
    Q1 = np.zeros((n, n))
    fact = [1.0, 1.0, 2.0, 6.0]
    for i in range(n):
        for j in range(n):
            pi, pj = order - i, order - j
            e = pi + pj + 1
            Q1[i, j] = q * dt**e / (e * fact[pi] * fact[pj])
    return _frozen(_kron_eye2(Q1))


class PositionFirst:
    """Models whose position (ground [x, y] or box centre [u, v]) is state components 0 and 1.

    The tracker recognises this layout (``position_cov`` not overridden) and reads the position
    covariance as a slice on its hot path instead of calling the model.
    """

    def position(self, x: FloatArray) -> FloatArray:
        """Position: state components 0 and 1, (N, 2)."""
        return np.asarray(x)[:, :2]

    def position_cov(self, P: FloatArray) -> FloatArray:
        """Position covariance: the leading 2×2 block, (N, 2, 2)."""
        return np.asarray(P)[:, :2, :2]


class _Planar(PositionFirst):
    """Shared parts of the planar kinematic models (positions are state components 0 and 1)."""

    name: str
    space: Space = "point"
    dim_z = 2
    dim_x: int
    _order: int

    def __init__(self, q: float = 1.0, init_var: float = 1e3) -> None:
        if not (np.isfinite(q) and q >= 0.0):
            raise ValueError(f"process noise q must be finite and >= 0, got {q!r}")
        if not (np.isfinite(init_var) and init_var > 0.0):
            raise ValueError(f"init_var must be finite and > 0, got {init_var!r}")
        self.q = float(q)
        self.init_var = float(init_var)
        self.H = _frozen(np.eye(self.dim_z, self.dim_x))

    def F(self, dt: float) -> FloatArray:
        """State transition over ``dt``: x ← x + v dt (+ a dt²/2), v ← v (+ a dt)."""
        return _kinematic_F(self._order, _check_dt(dt))

    def Q(self, dt: float) -> FloatArray:
        """White-noise process noise over ``dt`` (exact discretisation, zero at dt = 0)."""
        return _kinematic_Q(self._order, _check_dt(dt), self.q)

    def initiate(self, z: FloatArray, R: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Position from z with covariance R; higher derivatives 0 with variance ``init_var``."""
        z = np.asarray(z, dtype=np.float64)
        R = np.asarray(R, dtype=np.float64)
        n = z.shape[0]
        x = np.zeros((n, self.dim_x))
        x[:, :2] = z
        P = np.zeros((n, self.dim_x, self.dim_x))
        P[:, :2, :2] = R
        idx = np.arange(2, self.dim_x)
        P[:, idx, idx] = self.init_var
        return x, P

    def constrain(self, x: FloatArray, dt: float) -> FloatArray:
        """State constraints to apply before predicting; none for planar kinematics."""
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(q={self.q}, init_var={self.init_var})"


class ConstantVelocity(_Planar):
    """Planar constant velocity [x, y, vx, vy]; white-noise acceleration of density ``q``."""

    name = "cv"
    dim_x = 4
    _order = 1


class ConstantAcceleration(_Planar):
    """Planar constant acceleration [x, y, vx, vy, ax, ay]; white-noise jerk of density ``q``."""

    name = "ca"
    dim_x = 6
    _order = 2


# SORT (Bewley et al. 2016, sort.py KalmanBoxTracker): P = eye(7); P[4:,4:] *= 1000; P *= 10;
# Q = eye(7); Q[-1,-1] *= 0.01; Q[4:,4:] *= 0.01.
_SORT_P0 = np.eye(7)
_SORT_P0[4:, 4:] *= 1000.0
_SORT_P0 *= 10.0
_SORT_Q = np.eye(7)
_SORT_Q[-1, -1] *= 0.01
_SORT_Q[4:, 4:] *= 0.01
_frozen(_SORT_P0)
_frozen(_SORT_Q)


@lru_cache(maxsize=256)
def _sort_F(dt: float) -> FloatArray:
    F = np.eye(7)
    F[0, 4] = F[1, 5] = F[2, 6] = dt
    return _frozen(F)


class SortBox(PositionFirst):
    """SORT's box model [u, v, s, r, u', v', s'] (centre, area, aspect ratio, and their rates).

    At ``dt = 1`` (one frame) ``F``, ``Q`` and the initial ``P`` are SORT's; ``Q`` scales linearly
    with ``dt`` (a random walk per unit time) and with ``q``. ``initiate`` uses SORT's fixed P0,
    not the measurement covariance, as SORT does.
    """

    name = "box"
    space: Space = "box"
    dim_x = 7
    dim_z = 4

    def __init__(self, q: float = 1.0) -> None:
        if not (np.isfinite(q) and q >= 0.0):
            raise ValueError(f"process noise q must be finite and >= 0, got {q!r}")
        self.q = float(q)
        self.H = _frozen(np.eye(4, 7))

    def F(self, dt: float) -> FloatArray:
        """Box transition: u, v, s advance by their rates times ``dt``; r is constant."""
        return _sort_F(_check_dt(dt))

    def Q(self, dt: float) -> FloatArray:
        """SORT's process noise times ``q * dt`` (SORT's exactly at dt = 1, q = 1)."""
        return _sort_Q(_check_dt(dt), self.q)

    def initiate(self, z: FloatArray, R: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Box from z, rates 0; covariance SORT's P0 (rates' variance 10⁴)."""
        z = np.asarray(z, dtype=np.float64)
        n = z.shape[0]
        x = np.zeros((n, 7))
        x[:, :4] = z
        P = np.broadcast_to(_SORT_P0, (n, 7, 7)).copy()
        return x, P

    def constrain(self, x: FloatArray, dt: float) -> FloatArray:
        """SORT's predict clamp: zero the area rate where the area would not stay positive.

        Returns ``x`` itself when no area collapses (the common case), else a corrected copy;
        ``x`` is never modified.
        """
        x = np.asarray(x, dtype=np.float64)
        s_next = x[:, 2] + dt * x[:, 6]
        if x.shape[0] == 0 or s_next.min() > 0.0:
            return x
        x = x.copy()
        x[s_next <= 0.0, 6] = 0.0
        return x

    def __repr__(self) -> str:
        return f"SortBox(q={self.q})"


@lru_cache(maxsize=256)
def _sort_Q(dt: float, q: float) -> FloatArray:
    return _frozen(_SORT_Q * (q * dt))


def make_model(name: ModelName | str, process_noise: float = 1.0) -> MotionModel:
    """Motion model by name: ``"cv"``, ``"ca"`` or ``"box"`` with process noise scale ``q``."""
    if name == "cv":
        return ConstantVelocity(q=process_noise)
    if name == "ca":
        return ConstantAcceleration(q=process_noise)
    if name == "box":
        return SortBox(q=process_noise)
    raise ValueError(f"unknown motion model {name!r}; expected 'cv', 'ca' or 'box'")


def predict_model(
    model: MotionModel,
    x: FloatArray,
    P: FloatArray,
    dt: float,
    backend: KalmanBackend | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Predict N tracks over ``dt``: the model's ``constrain`` (if it has one), then F and Q.

    Trackers should predict through this so model-specific rules (SORT's area clamp) apply.
    """
    constrain = getattr(model, "constrain", None)
    if constrain is not None:
        x = constrain(x, dt)
    kb = backend if backend is not None else VectorizedKalman()
    return kb.predict(x, P, model.F(dt), model.Q(dt))
