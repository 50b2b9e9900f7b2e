"""Batched Kalman filter: predict and update all N tracks in single array operations.

Two interchangeable backends implement :class:`KalmanBackend`:

- :class:`VectorizedKalman` (``kf_predict`` / ``kf_update``): no per-track Python loop. The
  prediction is one matrix product on the flattened covariances (the shared ``F`` enters as its
  symmetrised Kronecker square, evaluated for the upper triangle only and mirrored, so the result
  is exactly symmetric). For a selection ``H`` (``H P Hᵀ`` and ``P Hᵀ`` are slices of ``P``) and
  up to ``_SMALL_N`` tracks the update runs tracks-first on numpy's stacked small-matrix kernels:
  about fifteen calls whatever the number of tracks, which is what a step with a handful of
  tracks costs; a diagonal ``S`` (diagonal ``R``, as SORT's box noise) is inverted by
  reciprocals. Beyond that, and for a general ``H``, the update works in a tracks-last layout so
  that every operation is a contiguous vector operation over all tracks, corrects ``[P | x]``
  with one contraction, and solves with ``S`` by Gaussian elimination over the measurement
  dimension (``S`` is symmetric positive definite, so no pivoting is needed).
- :class:`FilterpyKalman`: one ``filterpy.kalman.KalmanFilter`` per track, the independent
  (diverse redundant) implementation that property tests compare against.

Both use the Joseph-form covariance update ``(I-KH) P (I-KH)ᵀ + K R Kᵀ`` and return the
innovation ``y``, its covariance ``S`` and the normalised innovation squared ``yᵀ S⁻¹ y`` per track.
Covariances must be symmetric; the vectorized backend returns exactly symmetric covariances.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

BackendName = Literal["vectorized", "filterpy"]
_T = TypeVar("_T")


class UpdateResult(NamedTuple):
    """Posterior of a batched update plus the per-track innovation statistics."""

    x: FloatArray  # (N, dx)
    P: FloatArray  # (N, dx, dx)
    y: FloatArray  # (N, dz) innovation
    S: FloatArray  # (N, dz, dz) innovation covariance
    nis: FloatArray  # (N,) yᵀ S⁻¹ y


class KalmanBackend(Protocol):
    """A Kalman filter implementation that predicts and updates N tracks at once."""

    name: str

    def predict(
        self, x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """x ← F x, P ← F P Fᵀ + Q for all tracks (F, Q shared, shape (dx, dx))."""
        ...

    def update(
        self, x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray
    ) -> UpdateResult:
        """Joseph-form update of N tracks with N measurements (row i updates track i)."""
        ...


# --------------------------------------------------------------------------------------------
# Prediction: vec(F P Fᵀ) = (F ⊗ F) vec(P), evaluated only for the upper triangle and mirrored.
# --------------------------------------------------------------------------------------------


class _PredictPlan(NamedTuple):
    Ft: FloatArray  # (dx, dx) Fᵀ
    M: FloatArray  # (dx*dx, dx(dx+1)/2) symmetrised Kronecker columns for the upper triangle
    mirror: IntArray  # (dx*dx,) index of each full-matrix entry in the upper-triangle vector
    iu: tuple[IntArray, IntArray]  # upper-triangle indices, for Q


_PLAN_CACHE: OrderedDict[tuple[int, bytes], _PredictPlan] = OrderedDict()
_PLAN_CACHE_SIZE = 32
_GEMM_BLOCK_ELEMENTS = 192_000  # rows × (dx² × dx(dx+1)/2) per matrix product
# Models hand out the same (read-only, cached) F and Q objects for the same dt, so the last few
# are recognised by identity before falling back to hashing their bytes.
_BY_ID: OrderedDict[int, tuple[FloatArray, object]] = OrderedDict()
_BY_ID_SIZE = 16


def _by_identity(a: FloatArray, make: Callable[[FloatArray], _T]) -> _T:
    """``make(a)``, remembered for the very object ``a`` (checked with ``is``, not by id alone)."""
    hit = _BY_ID.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]  # type: ignore[return-value]
    value = make(a)
    _BY_ID[id(a)] = (a, value)
    if len(_BY_ID) > _BY_ID_SIZE:
        _BY_ID.popitem(last=False)
    return value


def _predict_plan(F: FloatArray) -> _PredictPlan:
    """The matrices that turn a flattened covariance into the flattened ``F P Fᵀ`` (cached by F)."""
    key = (F.shape[0], F.tobytes())
    plan = _PLAN_CACHE.get(key)
    if plan is not None:
        return plan
    dx = F.shape[0]
    iu = np.triu_indices(dx)
    # For symmetric P: (F P Fᵀ)_ij = Σ_kl ½ (F_ik F_jl + F_il F_jk) P_kl; the symmetrised
    # coefficients make entries (i, j) and (j, i) one and the same number.
    kron = np.einsum("ik,jl->ijkl", F, F)
    sym = 0.5 * (kron + kron.transpose(0, 1, 3, 2))
    M = np.ascontiguousarray(sym[iu].reshape(len(iu[0]), dx * dx).T)
    pos = np.empty((dx, dx), dtype=np.intp)
    pos[iu] = np.arange(len(iu[0]))
    pos.T[iu] = np.arange(len(iu[0]))
    plan = _PredictPlan(np.ascontiguousarray(F.T), M, pos.ravel(), iu)
    _PLAN_CACHE[key] = plan
    if len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
        _PLAN_CACHE.popitem(last=False)
    return plan


def _upper(Q: FloatArray) -> FloatArray:
    """Upper triangle of Q, row by row (the layout of the predicted covariance vector)."""
    return np.ascontiguousarray(Q[np.triu_indices(Q.shape[0])])


def kf_predict(
    x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """x ← F x, P ← F P Fᵀ + Q for all tracks (F, Q shared, shape (dx, dx)).

    P must be symmetric (only its symmetric part is used); the result is exactly symmetric.
    """
    x = np.asarray(x, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    n, dx = x.shape
    if P.shape != (n, dx, dx) or F.shape != (dx, dx) or Q.shape != (dx, dx):
        raise ValueError(
            f"kf_predict shapes: x {x.shape}, P {P.shape}, F {F.shape}, Q {Q.shape}"
        )
    return _kf_predict_core(x, P, F, Q)


def _kf_predict_core(
    x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """:func:`kf_predict` for callers that guarantee float64 arrays of matching shapes."""
    n, dx = x.shape
    plan = _by_identity(F, _predict_plan)
    x2 = x @ plan.Ft
    flat = P.reshape(n, dx * dx)
    # Row blocks small enough that BLAS stays single-threaded: threading a product this thin
    # costs more than it saves, and on a loaded machine it can cost 10-100×.
    block = max(1, _GEMM_BLOCK_ELEMENTS // plan.M.size)
    if n <= block:
        upper = flat @ plan.M
    else:
        upper = np.empty((n, plan.M.shape[1]))
        for start in range(0, n, block):
            np.matmul(flat[start : start + block], plan.M, out=upper[start : start + block])
    upper += _by_identity(Q, _upper)
    P2 = upper[:, plan.mirror].reshape(n, dx, dx)
    return x2, P2


# --------------------------------------------------------------------------------------------
# Update, in a tracks-last layout: arrays (.., N) so every step is a contiguous vector operation.
# --------------------------------------------------------------------------------------------


_SELECTION_CACHE: dict[tuple[tuple[int, ...], bytes], bool] = {}


def _is_selection(H: FloatArray) -> bool:
    """True when H = [I_dz, 0]: the measured components are the first dz state components."""
    key = (H.shape, H.tobytes())
    hit = _SELECTION_CACHE.get(key)
    if hit is None:
        dz, dx = H.shape
        hit = dz <= dx and bool(np.array_equal(H, np.eye(dz, dx)))
        if len(_SELECTION_CACHE) < 64:
            _SELECTION_CACHE[key] = hit
    return hit


def _solve_spd(aug: FloatArray, dz: int) -> None:
    """Overwrite ``aug`` = [S | B] (dz, dz + k, N), tracks last, so that ``aug[:, dz:]`` = S⁻¹ B.

    Gaussian elimination then back substitution on whole rows: one vector operation per step for
    all tracks. S is symmetric positive definite, so the diagonal pivots need no pivoting.
    """
    for j in range(dz - 1):
        factor = aug[j + 1 :, j] / aug[j, j]
        aug[j + 1 :, j + 1 :] -= factor[:, None, :] * aug[j, None, j + 1 :]
    idx = np.arange(dz)
    aug /= aug[idx, idx][:, None, :]  # unit diagonal: row i of [U | B] divided by U[i, i]
    for j in range(dz - 1, 0, -1):
        aug[:j, dz:] -= aug[:j, j, None, :] * aug[j, None, dz:]


#: Up to this many tracks the update runs tracks-first on numpy's stacked small-matrix kernels
#: (fewest calls); beyond it the tracks-last elimination below wins on arithmetic.
_SMALL_N = 64


def _update_small(x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, dz: int
                  ) -> UpdateResult:
    """Joseph-form update for a selection H, tracks first: S⁻¹ by LAPACK, products by matmul.

    The same operations as filterpy's ``KalmanFilter.update`` (``SI = inv(S)``, ``K = P Hᵀ SI``),
    batched: about fifteen numpy calls whatever the number of tracks. A diagonal S (diagonal R,
    e.g. SORT's box noise) is inverted by reciprocals.
    """
    n = x.shape[0]
    PHt = P[:, :, :dz]
    S = P[:, :dz, :dz] + R
    y = z - x[:, :dz]
    s = S.diagonal(0, 1, 2)
    if n and np.count_nonzero(S) == n * dz and s.min() > 0.0:
        # S diagonal (diagonal R, uncorrelated measured components: SORT's boxes): S⁻¹ is the
        # reciprocal of its diagonal, exactly what LAPACK's inverse returns for it
        si = 1.0 / s
        K = PHt * si[:, None, :]
        nis = (y * y * si).sum(axis=1)
    else:
        Si = np.linalg.inv(S)
        K = np.matmul(PHt, Si)
        nis = np.matmul(y[:, None, :], np.matmul(Si, y[:, :, None]))[:, 0, 0]
    x2 = x + np.matmul(K, y[:, :, None])[:, :, 0]
    # Joseph form, factored as in kf_update: M = (I - K H) P; P' = M + (K R - M Hᵀ) Kᵀ
    M = P - np.matmul(K, P[:, :dz, :])
    C = np.matmul(K, R)
    C -= M[:, :, :dz]
    M += np.matmul(C, K.transpose(0, 2, 1))
    P2 = M + M.transpose(0, 2, 1)
    P2 *= 0.5
    return UpdateResult(x2, P2, y, S, nis)


def kf_update(
    x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray
) -> UpdateResult:
    """Joseph-form update of N tracks with N measurements (row i updates track i).

    ``P`` and ``R`` must be symmetric and ``S = H P Hᵀ + R`` positive definite. The posterior
    covariance is exactly symmetric.
    """
    x = np.asarray(x, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    n, dx = x.shape
    dz = H.shape[0]
    if (
        P.shape != (n, dx, dx)
        or z.shape != (n, dz)
        or R.shape != (n, dz, dz)
        or H.shape != (dz, dx)
    ):
        raise ValueError(
            f"kf_update shapes: x {x.shape}, P {P.shape}, z {z.shape}, R {R.shape}, H {H.shape}"
        )
    return _kf_update_core(x, P, z, R, H, _is_selection(H))


def _kf_update_core(
    x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray, selection: bool
) -> UpdateResult:
    """:func:`kf_update` for callers that guarantee float64 arrays of matching shapes and know
    whether ``H`` is a selection ``[I, 0]``."""
    n, dx = x.shape
    dz = H.shape[0]
    if selection and n <= _SMALL_N:
        try:
            return _update_small(x, P, z, R, dz)
        except np.linalg.LinAlgError:
            pass  # a singular S: the elimination below returns non-finite values instead
    Rt = R.transpose(1, 2, 0).copy()  # contiguous: strided operands make einsum slow
    # W = [P | x], tracks last. Both are corrected by the same gain, so one contraction with
    # [H P | H x - z] gives [(I - K H) P | x + K y].
    W = np.empty((dx, dx + 1, n))
    W[:, :dx] = P.transpose(1, 2, 0)
    W[:, dx] = x.T
    aug = np.empty((dz, dz + dx + 1, n))  # [S | H P | -y], solved in place to [. | Kᵀ | -S⁻¹y]
    if selection:
        B = W[:dz].copy()  # [H P | H x]: the first dz rows
        np.add(W[:dz, :dz], Rt, out=aug[:, :dz])
    else:
        B = np.tensordot(H, W, axes=1)
        St = np.einsum("ajn,bj->abn", B[:, :dx], H)
        St += Rt
        np.add(St, St.transpose(1, 0, 2), out=aug[:, :dz])
        aug[:, :dz] *= 0.5
    S = aug[:, :dz].transpose(2, 0, 1).copy()
    B[:, dx] -= z.T  # H x - z = -y
    aug[:, dz:] = B
    _solve_spd(aug, dz)
    Kt = aug[:, dz : dz + dx]  # (dz, dx, N): Kt[a, i] = K[i, a], since K = P Hᵀ S⁻¹ = (S⁻¹ H P)ᵀ
    nis = np.einsum("an,an->n", B[:, dx], aug[:, -1])
    y = -B[:, dx].T
    W -= np.einsum("ain,ajn->ijn", Kt, B)
    # Joseph form, factored: M = (I - K H) P;  P' = M (I - K H)ᵀ + K R Kᵀ = M + (K R - M Hᵀ) Kᵀ
    M = W[:, :dx]
    C = np.einsum("abn,ain->bin", Rt, Kt)  # (K R)ᵀ, (dz, dx, N)
    if selection:
        C -= M[:, :dz].transpose(1, 0, 2)
    else:
        C -= np.tensordot(H, M, axes=(1, 1))
    M += np.einsum("bin,bjn->ijn", C, Kt)
    P2 = M.transpose(2, 0, 1) + M.transpose(2, 1, 0)
    P2 *= 0.5
    return UpdateResult(W[:, dx].T, P2, y, S, nis)


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class VectorizedKalman:
    """The array backend: ``kf_predict`` / ``kf_update`` over all tracks at once."""

    name = "vectorized"

    def predict(
        self, x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """x ← F x, P ← F P Fᵀ + Q for all tracks."""
        return kf_predict(x, P, F, Q)

    def update(
        self, x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray
    ) -> UpdateResult:
        """Joseph-form update of N tracks with N measurements."""
        return kf_update(x, P, z, R, H)


class FilterpyKalman:
    """One ``filterpy.kalman.KalmanFilter`` per track: an independent, diverse implementation.

    Slow (a Python loop over tracks) by design: it shares no code with the vectorized backend,
    so a channel running it gives the cross-check a genuinely redundant filter.
    """

    name = "filterpy"

    def predict(
        self, x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """x ← F x, P ← F P Fᵀ + Q, track by track through filterpy."""
        from filterpy.kalman import KalmanFilter

        x = np.asarray(x, dtype=np.float64)
        P = np.asarray(P, dtype=np.float64)
        n, dx = x.shape
        x2 = np.empty((n, dx))
        P2 = np.empty((n, dx, dx))
        for i in range(n):
            kf = KalmanFilter(dim_x=dx, dim_z=1)
            kf.x = x[i].reshape(dx, 1).copy()
            kf.P = P[i].copy()
            kf.predict(F=np.asarray(F, dtype=np.float64), Q=np.asarray(Q, dtype=np.float64))
            x2[i] = kf.x[:, 0]
            P2[i] = kf.P
        return x2, P2

    def update(
        self, x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray
    ) -> UpdateResult:
        """Joseph-form update (filterpy's own), track by track, with y, S and NIS per track."""
        from filterpy.kalman import KalmanFilter

        x = np.asarray(x, dtype=np.float64)
        P = np.asarray(P, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        R = np.asarray(R, dtype=np.float64)
        H = np.asarray(H, dtype=np.float64)
        n, dx = x.shape
        dz = H.shape[0]
        x2 = np.empty((n, dx))
        P2 = np.empty((n, dx, dx))
        y = np.empty((n, dz))
        S = np.empty((n, dz, dz))
        nis = np.empty(n)
        for i in range(n):
            kf = KalmanFilter(dim_x=dx, dim_z=dz)
            kf.x = x[i].reshape(dx, 1).copy()
            kf.P = P[i].copy()
            kf.update(z[i].reshape(dz, 1), R=R[i], H=H)
            x2[i] = kf.x[:, 0]
            P2[i] = kf.P
            y[i] = kf.y[:, 0]
            S[i] = kf.S
            nis[i] = float(kf.y[:, 0] @ kf.SI @ kf.y[:, 0])
        return UpdateResult(x2, P2, y, S, nis)


def make_backend(name: BackendName | str = "vectorized") -> KalmanBackend:
    """Backend by name: ``"vectorized"`` (fast, default) or ``"filterpy"`` (diverse reference)."""
    if name == "vectorized":
        return VectorizedKalman()
    if name == "filterpy":
        return FilterpyKalman()
    raise ValueError(f"unknown Kalman backend {name!r}; expected 'vectorized' or 'filterpy'")
