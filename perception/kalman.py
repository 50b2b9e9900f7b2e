"""Batched Kalman filter: predict and update all N tracks in single array operations.

Reference transcription (to be optimised); filterpy's per-track KalmanFilter is the oracle.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


class UpdateResult(NamedTuple):
    x: FloatArray  # (N, dx)
    P: FloatArray  # (N, dx, dx)
    y: FloatArray  # (N, dz) innovation
    S: FloatArray  # (N, dz, dz) innovation covariance
    nis: FloatArray  # (N,) yᵀ S⁻¹ y


def kf_predict(x: FloatArray, P: FloatArray, F: FloatArray, Q: FloatArray) -> tuple[FloatArray, FloatArray]:
    """x ← F x, P ← F P Fᵀ + Q for all tracks (F, Q shared, shape (dx, dx))."""
    x2 = x @ F.T
    P2 = F @ P @ F.T + Q
    return x2, 0.5 * (P2 + np.swapaxes(P2, 1, 2))


def kf_update(x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray, H: FloatArray) -> UpdateResult:
    """Joseph-form update of N tracks with N measurements (row i updates track i)."""
    n, dx = x.shape
    y = z - x @ H.T
    PHt = P @ H.T
    S = H @ PHt + R
    S = 0.5 * (S + np.swapaxes(S, 1, 2))
    K = np.linalg.solve(S, np.swapaxes(PHt, 1, 2)).swapaxes(1, 2)
    x2 = x + np.einsum("nij,nj->ni", K, y)
    I_KH = np.eye(dx) - K @ H
    P2 = I_KH @ P @ np.swapaxes(I_KH, 1, 2) + K @ R @ np.swapaxes(K, 1, 2)
    P2 = 0.5 * (P2 + np.swapaxes(P2, 1, 2))
    nis = np.einsum("ni,ni->n", y, np.linalg.solve(S, y[..., None])[..., 0])
    return UpdateResult(x2, P2, y, S, nis)
