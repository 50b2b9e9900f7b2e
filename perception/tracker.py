"""Multi-object Kalman tracker: gated association, vectorized filter, track lifecycle.

State is a structure of arrays (one row per live track) and every step is array operations over
all tracks: predict all, associate all, update the matched rows, apply the lifecycle rules as
masks, compact, append births. IDs come from a monotone counter and are never reused.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from perception.association import associate, chi2_gate, iou_matrix_z, mahalanobis_cost
from perception.detections import Detections
from perception.errors import TrackerError
from perception.kalman import KalmanBackend, make_backend
from perception.models import MotionModel, make_model, predict_model
from perception.tracks import Tracks, TrackStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_MAX_WINDOW = 62  # hit history is a bit mask in an int64

#: Default deletion bound on the trace of a track's position covariance, by measurement space.
#: Ground plane (m²): 200, i.e. a position standard deviation of 10 m per axis, beyond which a
#: track cannot tell a lane or a kerb from the next; it also lets a fresh track (velocity
#: variance 1e3 m²/s², enough for oncoming traffic) miss one measurement at rates down to 3 Hz
#: (2·1e3·0.3² = 180). Image boxes (px²): 5e4, a box-centre standard deviation of about 160 px
#: (a quarter of a VGA frame); SORT's box model starts rates with variance 1e4 px²/step², so a
#: fresh box track survives one missed frame (2·1e4 ≈ 2e4).
DEFAULT_MAX_COV_TRACE: dict[str, float] = {"point": 200.0, "box": 5e4}
# plain ints: comparing arrays against IntEnum members costs an enum lookup per use
_TENTATIVE, _CONFIRMED, _COASTING = (
    int(TrackStatus.TENTATIVE), int(TrackStatus.CONFIRMED), int(TrackStatus.COASTING)
)


#: Variance (m/s)² of a range rate used to seed a new track's radial velocity: generous next to
#: automotive radar Doppler noise (≈ 0.1–0.3 m/s), tight next to the 30 m/s uninformed prior.
RANGE_RATE_VAR = 1.0


class Tracker:
    """Tracks objects of one sensor channel; ``step(t, detections)`` → :class:`Tracks`.

    Keyword names equal ``safety.channels.TrackerSettings`` so ``Tracker(**settings.model_dump())``
    works. Lifecycle: a track is born tentative from an unmatched detection, confirmed after
    ``n_init`` hits among its last ``init_window`` measurement steps, coasting while confirmed but
    not updated, and deleted when ``time_since_update > max_coast`` or its position covariance
    trace exceeds ``max_cov_trace``; a tentative track dies on a miss once it has had
    ``init_window`` measurement steps without confirming. ``step(t, None)`` predicts only (no
    measurement: does not count as a miss for confirmation, but time since update still grows).

    One object, one track (Mahalanobis gating): confirmed tracks are associated first, then get
    a second chance inside the looser ``recovery_gate_probability`` gate, then tentative tracks
    take what is left; a track that stays within the gate of an older confirmed track for
    ``coalesce_steps`` measurement steps without the two ever being updated together is a twin
    and is deleted (0 disables). IoU gating keeps SORT's single association and has neither.
    """

    def __init__(
        self,
        model: str | MotionModel = "cv",  # "cv" | "ca" | "box", or a model instance
        *,
        process_noise: float = 1.0,
        backend: Literal["vectorized", "filterpy"] = "vectorized",
        gating: Literal["mahalanobis", "iou"] = "mahalanobis",
        gate_probability: float = 0.999,
        iou_threshold: float = 0.3,
        n_init: int = 3,
        init_window: int = 5,
        max_coast: float = 1.0,
        max_cov_trace: float | None = None,  # None: DEFAULT_MAX_COV_TRACE of the model space
        sensor: str = "sensor",
        recovery_gate_probability: float = 0.99999,
        coalesce_steps: int = 3,
    ) -> None:
        self.model: MotionModel = (
            make_model(model, process_noise) if isinstance(model, str) else model
        )
        self.backend: KalmanBackend = make_backend(backend)
        self.backend_name = backend
        if gating not in ("mahalanobis", "iou"):
            raise ValueError(f"gating must be 'mahalanobis' or 'iou', got {gating!r}")
        if gating == "iou" and self.model.space != "box":
            raise ValueError("gating='iou' needs a box model (space 'box')")
        if not 1 <= n_init <= init_window <= _MAX_WINDOW:
            raise ValueError(f"need 1 <= n_init <= init_window <= {_MAX_WINDOW}, "
                             f"got n_init={n_init}, init_window={init_window}")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        if max_cov_trace is None:
            max_cov_trace = DEFAULT_MAX_COV_TRACE[self.model.space]
        if max_coast <= 0 or max_cov_trace <= 0:
            raise ValueError("max_coast and max_cov_trace must be positive")
        if not 0.0 < recovery_gate_probability < 1.0:
            raise ValueError(
                f"recovery_gate_probability must be in (0, 1), got {recovery_gate_probability}"
            )
        if coalesce_steps < 0:
            raise ValueError(f"coalesce_steps must be >= 0, got {coalesce_steps}")
        self.gating = gating
        self.gate_probability = gate_probability
        self.iou_threshold = iou_threshold
        self.n_init = int(n_init)
        self.init_window = int(init_window)
        self.max_coast = float(max_coast)
        self.max_cov_trace = float(max_cov_trace)
        self.sensor = sensor
        self._H = np.asarray(self.model.H, dtype=np.float64)
        dz = int(self.model.dim_z)
        self._gate = 1.0 - iou_threshold if gating == "iou" else chi2_gate(gate_probability, dz)
        self._window_mask = np.int64((1 << self.init_window) - 1)
        self.recovery_gate_probability = float(recovery_gate_probability)
        self.coalesce_steps = int(coalesce_steps)
        self._guard = gating == "mahalanobis"  # duplicate guard: needs covariance distances
        self._recovery_gate = (
            max(self._gate, chi2_gate(recovery_gate_probability, dz)) if self._guard else 0.0
        )
        self._coalesce_gate = chi2_gate(gate_probability, 2) if self._guard else 0.0
        self._next_id = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all tracks and the time base; the ID counter goes on (IDs are never reused)."""
        dx, dz = int(self.model.dim_x), int(self.model.dim_z)
        self._t: float | None = None
        self._ids = np.zeros(0, np.int64)
        self._x = np.zeros((0, dx))
        self._P = np.zeros((0, dx, dx))
        self._status = np.zeros(0, np.int64)
        self._age = np.zeros(0, np.int64)  # steps since creation
        self._hits = np.zeros(0, np.int64)  # total updates (birth counts as one)
        self._looks = np.zeros(0, np.int64)  # measurement steps seen, birth included
        self._history = np.zeros(0, np.int64)  # bit k set: hit k measurement steps ago
        self._dup = np.zeros(0, np.int64)  # consecutive measurement steps shadowing an older track
        self._t_update = np.zeros(0)
        self._scores = np.zeros(0)
        self._labels = np.zeros(0, np.int64)
        self._dz = dz
        self.deleted_ids: IntArray = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def t(self) -> float | None:
        """Time of the last step (None before the first step or after ``reset``)."""
        return self._t

    # ------------------------------------------------------------------ helpers
    def _check_time(self, t: float) -> float:
        try:
            tf = float(t)
        except (TypeError, ValueError) as exc:
            raise TrackerError(f"time is not a number: {t!r}") from exc
        if not np.isfinite(tf):
            raise TrackerError(f"time is not finite: {tf}")
        if self._t is not None and not tf > self._t:
            raise TrackerError(f"time must strictly increase: got {tf} after {self._t}")
        return tf

    def _predicted(self, t: float) -> tuple[FloatArray, FloatArray]:
        """States and covariances of all tracks predicted to ``t`` (no state change)."""
        if self._t is None or len(self) == 0:
            return self._x, self._P
        x, P = predict_model(self.model, self._x, self._P, t - self._t, self.backend)
        return np.array(x, dtype=np.float64), np.array(P, dtype=np.float64)  # fresh, written below

    def _cost(self, x: FloatArray, P: FloatArray, dets: Detections) -> FloatArray:
        H = self._H
        if self.gating == "iou":
            return 1.0 - iou_matrix_z(x @ H.T, dets.z)
        return mahalanobis_cost(x @ H.T, H @ P @ H.T, dets.z, dets.R)

    def peek(self, t: float) -> Tracks:
        """The tracks as a predict-only step to ``t`` would leave them, without changing anything.

        Lifecycle is not applied (tracks that such a step would delete are still listed); useful
        to decide *before* stepping whether a fresh detection is needed.
        """
        tf = self._check_time(t)
        x, P = self._predicted(tf)
        n = len(self)
        status = np.where(self._status == _CONFIRMED, _COASTING, self._status)
        return self._output(
            tf, x, P, status.astype(np.int64), self._age + 1, np.zeros(n, bool),
            np.full(n, np.nan), np.full((n, self._dz), np.nan),
            np.full((n, self._dz, self._dz), np.nan), np.full(n, -1, np.int64),
        )

    # ------------------------------------------------------------------ step
    def step(self, t: float, detections: Detections | None) -> Tracks:
        """Advance to time ``t`` and incorporate ``detections`` (None: predict only)."""
        tf = self._check_time(t)
        if detections is not None and detections.space != self.model.space:
            raise TrackerError(
                f"detections of space {detections.space!r} given to a {self.model.space!r} tracker"
            )
        x, P = self._predicted(tf)
        n, dz = len(self), self._dz
        updated = np.zeros(n, bool)
        nis = np.full(n, np.nan)
        innov = np.full((n, dz), np.nan)
        innov_cov = np.full((n, dz, dz), np.nan)
        det_index = np.full(n, -1, np.int64)
        unmatched_dets = np.zeros(0, np.int64)

        if detections is not None:
            n_d = len(detections)
            if n and n_d:
                cost = self._cost(x, P, detections)
                if self._guard:
                    ti, di, unmatched_dets = self._cascade(cost)
                else:
                    a = associate(cost, self._gate)
                    ti, di, unmatched_dets = a.matches[:, 0], a.matches[:, 1], a.unmatched_dets
                if ti.size:
                    z, R = detections.z[di], detections.R[di]
                    res = self.backend.update(x[ti], P[ti], z, R, self._H)
                    x[ti], P[ti] = res.x, res.P
                    innov[ti], innov_cov[ti], nis[ti] = res.y, res.S, res.nis
                    updated[ti] = True
                    det_index[ti] = di
                    self._scores[ti] = detections.scores[di]
                    self._labels[ti] = detections.labels[di]
            else:
                unmatched_dets = np.arange(n_d, dtype=np.int64)

        # ---- lifecycle (masks over all existing tracks)
        self._x, self._P = x, P
        self.deleted_ids = np.zeros(0, np.int64)
        if n:
            self._age += 1
            self._hits += updated
            self._t_update = np.where(updated, tf, self._t_update)
            status = self._status
            tentative = status == _TENTATIVE
            dead = (tf - self._t_update) > self.max_coast
            if detections is not None:
                self._history = ((self._history << 1) | updated) & self._window_mask
                self._looks += 1
                promote = tentative & (np.bitwise_count(self._history) >= self.n_init)
                dead |= tentative & ~updated & ~promote & (self._looks >= self.init_window)
                tentative &= ~promote
            confirmed_status = np.where(updated, _CONFIRMED, _COASTING)
            self._status = np.where(tentative, _TENTATIVE, confirmed_status).astype(np.int64)
            cov_trace = np.trace(self.model.position_cov(P), axis1=1, axis2=2)
            dead |= ~(cov_trace <= self.max_cov_trace)  # NaN trace counts as too large
            if self._guard and self.coalesce_steps and detections is not None:
                dead |= self._coalesce(updated, dead)
            if np.any(dead):
                self.deleted_ids = self._ids[dead]
                keep = ~dead
                self._compact(keep)
                updated, nis, innov, innov_cov, det_index = (
                    updated[keep], nis[keep], innov[keep], innov_cov[keep], det_index[keep]
                )

        # ---- births from unmatched detections
        if detections is not None and unmatched_dets.size:
            m = unmatched_dets.size
            bx, bP = self.model.initiate(detections.z[unmatched_dets], detections.R[unmatched_dets])
            if detections.range_rate is not None:
                bx, bP = self._doppler_init(
                    np.asarray(bx, np.float64), np.asarray(bP, np.float64),
                    detections.z[unmatched_dets], detections.range_rate[unmatched_dets],
                )
            born_status = _CONFIRMED if self.n_init <= 1 else _TENTATIVE
            self._append(
                ids=np.arange(self._next_id, self._next_id + m, dtype=np.int64),
                x=np.asarray(bx, dtype=np.float64), P=np.asarray(bP, dtype=np.float64),
                status=np.full(m, born_status, np.int64), t=tf,
                scores=detections.scores[unmatched_dets], labels=detections.labels[unmatched_dets],
            )
            self._next_id += m
            updated = np.concatenate([updated, np.zeros(m, bool)])
            nis = np.concatenate([nis, np.full(m, np.nan)])
            innov = np.concatenate([innov, np.full((m, dz), np.nan)])
            innov_cov = np.concatenate([innov_cov, np.full((m, dz, dz), np.nan)])
            det_index = np.concatenate([det_index, unmatched_dets])

        self._t = tf
        return self._output(
            tf, self._x, self._P, self._status, self._age, updated, nis, innov, innov_cov, det_index
        )

    def _doppler_init(
        self, x: FloatArray, P: FloatArray, z: FloatArray, rr: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Seed new point tracks' velocity with the measured range rate (radar Doppler).

        Along the line of sight the velocity is the range rate (variance
        ``RANGE_RATE_VAR``); across it the model's uninformed prior stays. Without this a radar
        track is born knowing nothing of its speed, its next gate spans metres, and clutter
        near the sensor confirms phantom tracks that fly off at impossible speeds.
        """
        if self.model.space != "point" or x.shape[1] < 4:
            return x, P
        r = np.hypot(z[:, 0], z[:, 1])
        ok = np.isfinite(rr) & (r > 1e-6)
        if not ok.any():
            return x, P
        u = z[ok, :2] / r[ok, None]  # unit line of sight
        uu = u[:, :, None] * u[:, None, :]
        prior = P[ok, 2, 2][:, None, None]  # the model's velocity variance (isotropic)
        x = x.copy()
        P = P.copy()
        x[ok, 2:4] = rr[ok, None] * u
        P[ok, 2:4, 2:4] = RANGE_RATE_VAR * uu + prior * (np.eye(2) - uu)
        return x, P

    # ------------------------------------------------------------------ duplicate guard
    def _cascade(self, cost: FloatArray) -> tuple[IntArray, IntArray, IntArray]:
        """Gated association in priority order; returns matched track and detection indices and
        the detections left unmatched.

        1. Confirmed (and coasting) tracks take the detections inside their gate.
        2. Confirmed tracks still without one get a second chance at the remaining detections
           inside the looser recovery gate. A consistent filter rejects 1 - gate_probability of
           true measurements (more under manoeuvres); such a detection belongs to the missed
           track's object, and a track born from it would be a twin sharing the object's
           detections with the original.
        3. Tentative tracks take what is left inside their gate. A tentative track's large
           covariance makes every distance to it small; competing on equal terms it takes the
           detections of a confirmed neighbour.
        """
        reportable = self._status != _TENTATIVE
        dets = np.arange(cost.shape[1], dtype=np.int64)
        ti: list[IntArray] = []
        di: list[IntArray] = []
        stages = (
            (np.flatnonzero(reportable), self._gate),
            (None, self._recovery_gate),
            (np.flatnonzero(~reportable), self._gate),
        )
        left = np.zeros(0, np.int64)
        for rows, gate in stages:
            if rows is None:  # recovery: the confirmed tracks stage 1 left without a detection
                rows = left
            if not (rows.size and dets.size):
                left = rows
                continue
            a = associate(cost[rows][:, dets], gate)
            ti.append(rows[a.matches[:, 0]])
            di.append(dets[a.matches[:, 1]])
            left = rows[a.unmatched_tracks]
            dets = dets[a.unmatched_dets]
        if not ti:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), dets
        return np.concatenate(ti), np.concatenate(di), dets

    def _coalesce(self, updated: BoolArray, dead: BoolArray) -> BoolArray:
        """Twins: a track that for ``coalesce_steps`` measurement steps in a row lies within the
        gate of an older confirmed track, the two never updated in the same step, follows the
        same object (two objects side by side are both detected). The younger is deleted; the
        older keeps its ID. Returns the mask of tracks to delete.
        """
        n = updated.shape[0]
        if n < 2:
            self._dup = np.zeros(n, np.int64)
            return np.zeros(n, bool)
        pos = np.asarray(self.model.position(self._x), dtype=np.float64)
        cov = np.asarray(self.model.position_cov(self._P), dtype=np.float64)
        d = pos[None, :, :] - pos[:, None, :]  # [i, j] = p_j - p_i
        S = cov[None, :] + cov[:, None]
        det = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
        q = (S[..., 1, 1] * d[..., 0] ** 2 - (S[..., 0, 1] + S[..., 1, 0]) * d[..., 0] * d[..., 1]
             + S[..., 0, 0] * d[..., 1] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = np.where(det > 0.0, q / det, np.inf)
        # rows are in ID order, so i < j means i is the older; it must be reportable and alive
        older = np.triu(np.ones((n, n), bool), 1)
        older &= ((self._status != _TENTATIVE) & ~dead)[:, None]
        pair = older & (d2 <= self._coalesce_gate) & ~(updated[:, None] & updated[None, :])
        shadowed = pair.any(axis=0) & ~dead
        self._dup = np.where(shadowed, self._dup + 1, 0)
        return self._dup >= self.coalesce_steps

    # ------------------------------------------------------------------ SoA plumbing
    def _compact(self, keep: BoolArray) -> None:
        for name in ("_ids", "_x", "_P", "_status", "_age", "_hits", "_looks", "_history",
                     "_t_update", "_scores", "_labels", "_dup"):
            setattr(self, name, getattr(self, name)[keep])

    def _append(
        self, *, ids: IntArray, x: FloatArray, P: FloatArray, status: IntArray, t: float,
        scores: FloatArray, labels: IntArray,
    ) -> None:
        m = ids.shape[0]
        self._ids = np.concatenate([self._ids, ids])
        self._x = np.concatenate([self._x, x])
        self._P = np.concatenate([self._P, P])
        self._status = np.concatenate([self._status, status])
        self._age = np.concatenate([self._age, np.zeros(m, np.int64)])
        self._hits = np.concatenate([self._hits, np.ones(m, np.int64)])
        self._looks = np.concatenate([self._looks, np.ones(m, np.int64)])
        self._history = np.concatenate([self._history, np.ones(m, np.int64)])
        self._t_update = np.concatenate([self._t_update, np.full(m, t)])
        self._scores = np.concatenate([self._scores, np.asarray(scores, np.float64)])
        self._labels = np.concatenate([self._labels, np.asarray(labels, np.int64)])
        self._dup = np.concatenate([self._dup, np.zeros(m, np.int64)])

    def _output(
        self, t: float, x: FloatArray, P: FloatArray, status: IntArray, age: IntArray,
        updated: BoolArray, nis: FloatArray, innov: FloatArray, innov_cov: FloatArray,
        det_index: IntArray,
    ) -> Tracks:
        n = x.shape[0]
        if n:
            pos = np.asarray(self.model.position(x), dtype=np.float64)
            pos_cov = np.asarray(self.model.position_cov(P), dtype=np.float64)
        else:
            pos, pos_cov = np.zeros((0, 2)), np.zeros((0, 2, 2))
        return Tracks(
            t=t, sensor=self.sensor, ids=self._ids.copy(), status=status.copy(), x=x.copy(),
            P=P.copy(), position=pos, position_cov=pos_cov, age=age.copy(), hits=self._hits.copy(),
            time_since_update=t - self._t_update, cov_trace=np.trace(pos_cov, axis1=1, axis2=2),
            updated=updated, nis=nis, innovation=innov, innovation_cov=innov_cov,
            scores=self._scores.copy(), labels=self._labels.copy(), det_index=det_index,
            space=self.model.space,
        )
