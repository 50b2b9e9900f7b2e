"""Multi-object Kalman tracker: gated association, vectorized filter, track lifecycle.

State is a structure of arrays (one row per live track) and every step is array operations over
all tracks: predict all, associate all, update the matched rows, apply the lifecycle rules as
masks, compact, append births. IDs come from a monotone counter and are never reused.

With a handful of tracks per frame a step costs what its numpy calls cost, whatever their size,
so the hot path is written to make few of them: state arrays are never modified in place once a
step has published them (the returned :class:`Tracks` shares them read-only instead of copying),
derived output fields are computed on first access, association skips the Hungarian solver when
the gated pairs are already one-to-one, and tentative-track bookkeeping is skipped when there
are none.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from perception.association import (
    _one_to_one,
    associate,
    chi2_gate,
    iou_matrix_z,
    mahalanobis_cost,
)
from perception.detections import Detections
from perception.errors import TrackerError
from perception.kalman import (
    KalmanBackend,
    UpdateResult,
    VectorizedKalman,
    _kf_predict_core,
    _kf_update_core,
    make_backend,
)
from perception.models import (
    MotionModel,
    PositionFirst,
    make_model,
    predict_model,
)
from perception.tracks import Tracks, TrackStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_MAX_WINDOW = 62  # hit history is a bit mask in an int64
# plain ints: comparing arrays against IntEnum members costs an enum lookup per use
_TENTATIVE, _CONFIRMED, _COASTING = (
    int(TrackStatus.TENTATIVE), int(TrackStatus.CONFIRMED), int(TrackStatus.COASTING)
)

#: Variance (m/s)² of a range rate used to seed a new track's radial velocity: generous next to
#: automotive radar Doppler noise (≈ 0.1–0.3 m/s), tight next to the 30 m/s uninformed prior.
RANGE_RATE_VAR = 1.0

#: Default deletion bound on the trace of a track's position covariance, by measurement space.
#: Ground plane (m²): 200, i.e. a position standard deviation of 10 m per axis, beyond which a
#: track cannot tell a lane or a kerb from the next; it also lets a fresh track (velocity
#: variance 1e3 m²/s², enough for oncoming traffic) miss one measurement at rates down to 3 Hz
#: (2·1e3·0.3² = 180). Image boxes (px²): 5e4, a box-centre standard deviation of about 160 px
#: (a quarter of a VGA frame); SORT's box model starts rates with variance 1e4 px²/step², so a
#: fresh box track survives one missed frame (2·1e4 ≈ 2e4).
DEFAULT_MAX_COV_TRACE: dict[str, float] = {"point": 200.0, "box": 5e4}


def _frozen(a: NDArray[Any]) -> NDArray[Any]:
    a.setflags(write=False)
    return a


_NO_INT = _frozen(np.zeros(0, np.int64))
_CONSTANTS: dict[tuple[int, int, bool], NDArray[Any]] = {}


def _constant(n: int, value: int | bool) -> NDArray[Any]:
    """A shared read-only array of ``n`` copies of ``value`` (bool for a bool, else int64)."""
    is_bool = isinstance(value, bool)
    key = (n, int(value), is_bool)
    a = _CONSTANTS.get(key)
    if a is None:
        a = _frozen(np.full(n, value, bool if is_bool else np.int64))
        if len(_CONSTANTS) < 4096:
            _CONSTANTS[key] = a
    return a


# ------------------------------------------------------------------------------ output
class _Derived(NamedTuple):
    """What the lazily derived fields of one step's :class:`Tracks` are computed from."""

    model: MotionModel
    dz: int
    step_no: int
    born: IntArray
    t_update: FloatArray
    rows: IntArray  # rows updated this step
    dets: IntArray  # the detection that updated each of them
    res: UpdateResult | None  # their update (rows of res match ``rows``)
    birth_rows: int  # first row born this step (rows from here on are births)
    birth_dets: IntArray  # detection each birth came from
    labels: IntArray  # last associated label per row


_DERIVED = frozenset({
    "position", "position_cov", "cov_trace", "age", "time_since_update", "nis", "innovation",
    "innovation_cov", "det_index", "labels",
})


class _StepTracks(Tracks):
    """:class:`Tracks` whose derived fields (position, innovations, ...) are computed on first
    access: same fields, same values, same types; most consumers read only a few of them."""

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        src: _Derived | None = d.get("_src")
        if src is None or name not in _DERIVED:
            raise AttributeError(name)
        value = _derive(self, src, name)
        d[name] = value
        return value

    @property
    def confirmed(self) -> BoolArray:
        """Mask of tracks that are confirmed or coasting after confirmation (reportable)."""
        return np.asarray(self.status != _TENTATIVE)


def _derive(tr: Tracks, src: _Derived, name: str) -> Any:
    n = tr.ids.shape[0]
    dz = src.dz
    if name == "position":
        return _frozen(np.asarray(src.model.position(tr.x), dtype=np.float64))
    if name == "position_cov":
        return _frozen(np.asarray(src.model.position_cov(tr.P), dtype=np.float64))
    if name == "cov_trace":
        pc = tr.position_cov
        return pc[:, 0, 0] + pc[:, 1, 1]
    if name == "age":
        return src.step_no - src.born
    if name == "time_since_update":
        return tr.t - src.t_update
    if name == "labels":
        return src.labels
    if name == "det_index":
        out = np.full(n, -1, np.int64)
        out[src.rows] = src.dets
        out[src.birth_rows:] = src.birth_dets
        return out
    shape = {"nis": (n,), "innovation": (n, dz), "innovation_cov": (n, dz, dz)}[name]
    full = np.full(shape, np.nan)
    if src.res is not None and src.rows.size:
        full[src.rows] = {"nis": src.res.nis, "innovation": src.res.y,
                          "innovation_cov": src.res.S}[name]
    return full


# ------------------------------------------------------------------------------ tracker
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

    The returned :class:`Tracks` shares the tracker's arrays, marked read-only (they are never
    changed afterwards); copy an array before modifying it.
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
        self.recovery_gate_probability = float(recovery_gate_probability)
        self.coalesce_steps = int(coalesce_steps)
        self._H = np.asarray(self.model.H, dtype=np.float64)
        dz = int(self.model.dim_z)
        self._dz = dz
        self._selection = bool(np.array_equal(self._H, np.eye(dz, int(self.model.dim_x))))
        self._gate = 1.0 - iou_threshold if gating == "iou" else chi2_gate(gate_probability, dz)
        self._guard = gating == "mahalanobis"  # duplicate guard: needs covariance distances
        self._recovery_gate = (
            max(self._gate, chi2_gate(recovery_gate_probability, dz)) if self._guard else 0.0
        )
        self._coalesce_gate = chi2_gate(gate_probability, 2) if self._guard else 0.0
        self._window_mask = np.int64((1 << self.init_window) - 1)
        # confirmation test on the hit-history bit mask: a lookup table for short windows
        self._confirm_lut: BoolArray | None = (
            np.bitwise_count(np.arange(1 << self.init_window)) >= self.n_init
            if self.init_window <= 16 else None
        )
        # the position covariance is the leading 2×2 block (a slice, no model call)
        self._pos01 = type(self.model).position_cov is PositionFirst.position_cov
        # the vectorized backend is called without re-validating what the tracker guarantees
        self._fast = isinstance(self.backend, VectorizedKalman)
        self._constrain = getattr(self.model, "constrain", None)
        self._fq: tuple[float, FloatArray, FloatArray] = (math.nan, self._H, self._H)
        self._next_id = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all tracks and the time base; the ID counter goes on (IDs are never reused)."""
        dx, dz = int(self.model.dim_x), int(self.model.dim_z)
        self._t: float | None = None
        self._ids = _NO_INT
        self._x = _frozen(np.zeros((0, dx)))
        self._P = _frozen(np.zeros((0, dx, dx)))
        self._status = _NO_INT
        self._born = _NO_INT  # step number at birth (age = steps since)
        self._hits = _NO_INT  # total updates (birth counts as one)
        self._born_look = _NO_INT  # measurement-step number at birth (the birth is a look)
        self._history = _NO_INT  # bit k set: hit k measurement steps ago
        self._dup = _NO_INT  # consecutive measurement steps shadowing an older track
        self._t_update = _frozen(np.zeros(0))
        self._scores = _frozen(np.zeros(0))  # score of the last associated detection
        self._labels = _NO_INT  # its label
        self._step_no = 0
        self._look_no = 0
        self._n_tentative = 0
        self._dz = dz
        self.deleted_ids: IntArray = _NO_INT

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
        if not math.isfinite(tf):
            raise TrackerError(f"time is not finite: {tf}")
        if self._t is not None and not tf > self._t:
            raise TrackerError(f"time must strictly increase: got {tf} after {self._t}")
        return tf

    def _predicted(self, t: float) -> tuple[FloatArray, FloatArray]:
        """States and covariances of all tracks predicted to ``t`` (fresh, writable arrays)."""
        if self._t is None or self._ids.shape[0] == 0:
            return self._x, self._P
        dt = t - self._t
        if not self._fast:
            return predict_model(self.model, self._x, self._P, dt, self.backend)
        if dt != self._fq[0]:
            self._fq = (dt, self.model.F(dt), self.model.Q(dt))
        x = self._x if self._constrain is None else self._constrain(self._x, dt)
        return _kf_predict_core(x, self._P, self._fq[1], self._fq[2])

    def _update(self, x: FloatArray, P: FloatArray, z: FloatArray, R: FloatArray
                ) -> UpdateResult:
        if self._fast:
            return _kf_update_core(x, P, z, R, self._H)
        return self.backend.update(x, P, z, R, self._H)

    def _meas(self, x: FloatArray, P: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Predicted measurements H x and their covariances H P Hᵀ."""
        if self._selection:
            dz = self._dz
            return x[:, :dz], P[:, :dz, :dz]
        H = self._H
        return x @ H.T, H @ P @ H.T

    def peek(self, t: float) -> Tracks:
        """The tracks as a predict-only step to ``t`` would leave them, without changing anything.

        Lifecycle is not applied (tracks that such a step would delete are still listed); useful
        to decide *before* stepping whether a fresh detection is needed.
        """
        tf = self._check_time(t)
        x, P = self._predicted(tf)
        status = np.where(self._status == _CONFIRMED, _COASTING, self._status)
        return self._output(tf, x, P, status, np.zeros(len(self), bool), self._hits,
                            self._t_update, self._scores, self._labels, self._born,
                            self._step_no + 1, _NO_INT, _NO_INT, None, len(self), _NO_INT)

    # ------------------------------------------------------------------ association
    def _associate(self, x: FloatArray, P: FloatArray, dets: Detections
                   ) -> tuple[IntArray, IntArray]:
        """Matched (track rows ascending, detections) for this step's detections."""
        zp, Sp = self._meas(x, P)
        if self.gating == "iou":
            cost = 1.0 - iou_matrix_z(zp, dets.z)
            feasible = cost <= self._gate
            return _one_to_one(cost, feasible)
        cost = mahalanobis_cost(zp, Sp, dets.z, dets.R)
        ti, di = self._cascade(cost)
        order = np.argsort(ti)
        return ti[order], di[order]

    def _cascade(self, cost: FloatArray) -> tuple[IntArray, IntArray]:
        """Gated association in priority order (Mahalanobis gating).

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
        left = _NO_INT
        for rows, gate in (
            (np.flatnonzero(reportable), self._gate),
            (None, self._recovery_gate),
            (np.flatnonzero(~reportable), self._gate),
        ):
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
            return _NO_INT, _NO_INT
        return np.concatenate(ti), np.concatenate(di)

    def _shadows(self, pos: FloatArray, cov: FloatArray, eligible: BoolArray, rows: IntArray,
                 cols: IntArray) -> BoolArray:
        """(len(cols),) mask: column track j lies within the coalescing gate of an older,
        eligible row track i (i < j)."""
        d = pos[cols][None, :, :] - pos[rows][:, None, :]  # [i, j] = p_j - p_i
        S = cov[cols][None, :] + cov[rows][:, None]
        det = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
        q = (S[..., 1, 1] * d[..., 0] ** 2 - (S[..., 0, 1] + S[..., 1, 0]) * d[..., 0] * d[..., 1]
             + S[..., 0, 0] * d[..., 1] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = np.where(det > 0.0, q / det, np.inf)
        pair = (rows[:, None] < cols[None, :]) & eligible[rows][:, None]
        pair &= d2 <= self._coalesce_gate
        return np.asarray(pair.any(axis=0))

    def _coalesce(self, x: FloatArray, P: FloatArray, status: IntArray, updated: BoolArray,
                  dead: BoolArray | None) -> BoolArray | None:
        """Twins: a track that for ``coalesce_steps`` measurement steps in a row lies within the
        gate of an older confirmed track, the two never updated in the same step, follows the
        same object (two objects side by side are both detected). The younger is deleted; the
        older keeps its ID. Returns the updated deletion mask.
        """
        n = updated.shape[0]
        alive = np.ones(n, bool) if dead is None else ~dead
        # a pair counts only if at least one of the two missed this step: test just those pairs
        # (all rows against the columns that missed, the rows that missed against the rest)
        shadowed = np.zeros(n, bool)
        missed = np.flatnonzero(~updated)
        if missed.size:
            pos = np.asarray(self.model.position(x), dtype=np.float64)
            cov = np.asarray(self.model.position_cov(P), dtype=np.float64)
            # rows are in ID order, so i < j means i is the older; it must be reportable, alive
            eligible = (status != _TENTATIVE) & alive
            rows = np.arange(n)
            hit = np.flatnonzero(updated)
            shadowed[missed] = self._shadows(pos, cov, eligible, rows, missed)
            if hit.size:
                shadowed[hit] = self._shadows(pos, cov, eligible, missed, hit)
            shadowed &= alive
        self._dup = np.where(shadowed, self._dup + 1, 0)
        twins = self._dup >= self.coalesce_steps
        if not twins.any():
            return dead
        return twins if dead is None else dead | twins

    # ------------------------------------------------------------------ step
    def step(self, t: float, detections: Detections | None) -> Tracks:
        """Advance to time ``t`` and incorporate ``detections`` (None: predict only)."""
        tf = self._check_time(t)
        if detections is not None and detections.space != self.model.space:
            raise TrackerError(
                f"detections of space {detections.space!r} given to a {self.model.space!r} tracker"
            )
        n = self._ids.shape[0]
        self._step_no += 1
        x, P = self._predicted(tf)
        ti = di = _NO_INT
        res: UpdateResult | None = None
        scores, labels = self._scores, self._labels
        births = _NO_INT
        measured = detections is not None
        k = 0
        if measured:
            assert detections is not None
            self._look_no += 1
            m = detections.z.shape[0]
            if n and m:
                ti, di = self._associate(x, P, detections)
                k = ti.shape[0]
                if k:
                    z, R = detections.z[di], detections.R[di]
                    if k == n:  # every track updated: ti is 0..n-1
                        res = self._update(x, P, z, R)
                        x, P = res.x, res.P
                        scores, labels = detections.scores[di], detections.labels[di]
                    else:
                        res = self._update(x[ti], P[ti], z, R)
                        x[ti], P[ti] = res.x, res.P
                        scores, labels = scores.copy(), labels.copy()
                        scores[ti], labels[ti] = detections.scores[di], detections.labels[di]
                if k < m:
                    used = np.zeros(m, bool)
                    used[di] = True
                    births = np.flatnonzero(~used)
            elif m:
                births = np.arange(m, dtype=np.int64)

        # ---- lifecycle (masks over the existing tracks)
        status, hits, t_update = self._status, self._hits, self._t_update
        dead: BoolArray | None = None
        if k == n:
            updated = _constant(n, True)
            if n:
                hits = hits + 1
                t_update = np.full(n, tf)
        else:
            updated = np.zeros(n, bool)
            if k:
                updated[ti] = True
                hits = hits + updated
                t_update = np.where(updated, tf, t_update)
        if n:
            if measured:
                if self._n_tentative:
                    hist = ((self._history << 1) | updated) & self._window_mask
                    self._history = hist
                    tent = status == _TENTATIVE
                    lut = self._confirm_lut
                    ok = lut[hist] if lut is not None else np.bitwise_count(hist) >= self.n_init
                    promote = tent & ok  # only a hit can complete the count: promote ⊆ updated
                    tent ^= promote
                    first = self._look_no + 1 - self.init_window
                    dead = tent & ~updated & (self._born_look <= first)
                    status = np.where(tent, _TENTATIVE, _COASTING - updated)
                elif k == n:
                    status = _constant(n, _CONFIRMED)
                else:
                    status = np.where(updated, _CONFIRMED, _COASTING)
            else:
                status = np.where(status == _CONFIRMED, _COASTING, status)
            if k < n and tf - float(t_update.min()) > self.max_coast:
                lost = (tf - t_update) > self.max_coast
                dead = lost if dead is None else dead | lost
            if self._pos01:
                trace = P[:, 0, 0] + P[:, 1, 1]
            else:
                pc = self.model.position_cov(P)
                trace = pc[:, 0, 0] + pc[:, 1, 1]
            if not float(trace.max()) <= self.max_cov_trace:  # NaN counts as too large
                vague = ~(trace <= self.max_cov_trace)
                dead = vague if dead is None else dead | vague
            if self._guard and self.coalesce_steps and measured:
                if n > 1:
                    dead = self._coalesce(x, P, status, updated, dead)
                elif self._dup[0]:
                    self._dup = np.zeros(1, np.int64)
        self.deleted_ids = _NO_INT
        born = self._born
        if dead is not None and dead.any():
            keep = ~dead
            self.deleted_ids = _frozen(self._ids[dead])
            x, P, status, hits, t_update, updated = (
                x[keep], P[keep], status[keep], hits[keep], t_update[keep], updated[keep]
            )
            scores, labels = scores[keep], labels[keep]
            self._ids, born, self._born_look, self._history, self._dup = (
                self._ids[keep], born[keep], self._born_look[keep], self._history[keep],
                self._dup[keep],
            )
            if res is not None:  # re-index this step's updates to the surviving rows
                alive = keep[ti]
                ti = (np.cumsum(keep) - 1)[ti[alive]]
                di = di[alive]
                res = UpdateResult(*(a[alive] for a in res))

        # ---- births from unmatched detections
        first_birth = x.shape[0]
        if births.size:
            assert detections is not None
            mb = births.shape[0]
            bx, bP = self.model.initiate(detections.z[births], detections.R[births])
            if detections.range_rate is not None:
                bx, bP = self._doppler_init(
                    np.asarray(bx, np.float64), np.asarray(bP, np.float64),
                    detections.z[births], detections.range_rate[births],
                )
            ones = np.ones(mb, np.int64)
            self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + mb)])
            self._next_id += mb
            x = np.concatenate([x, bx])
            P = np.concatenate([P, bP])
            born_status = _CONFIRMED if self.n_init <= 1 else _TENTATIVE
            status = np.concatenate([status, np.full(mb, born_status, np.int64)])
            hits = np.concatenate([hits, ones])
            t_update = np.concatenate([t_update, np.full(mb, tf)])
            scores = np.concatenate([scores, detections.scores[births]])
            labels = np.concatenate([labels, detections.labels[births]])
            updated = np.concatenate([updated, np.zeros(mb, bool)])
            born = np.concatenate([born, np.full(mb, self._step_no, np.int64)])
            self._born_look = np.concatenate([self._born_look, np.full(mb, self._look_no)])
            self._history = np.concatenate([self._history, ones])
            self._dup = np.concatenate([self._dup, np.zeros(mb, np.int64)])
        if births.size or self._n_tentative:
            self._n_tentative = int(np.count_nonzero(status == _TENTATIVE))

        self._x, self._P, self._hits, self._scores = (
            _frozen(x), _frozen(P), _frozen(hits), _frozen(scores)
        )
        self._status = _frozen(status)
        self._t_update, self._labels, self._born = t_update, labels, born
        self._t = tf
        return self._output(tf, self._x, self._P, self._status, _frozen(updated), self._hits,
                            t_update, scores, labels, born, self._step_no, ti, di, res,
                            first_birth, births)

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

    # ------------------------------------------------------------------ output
    def _output(
        self, t: float, x: FloatArray, P: FloatArray, status: IntArray, updated: BoolArray,
        hits: IntArray, t_update: FloatArray, scores: FloatArray, labels: IntArray,
        born: IntArray, step_no: int, rows: IntArray, dets: IntArray, res: UpdateResult | None,
        birth_rows: int, birth_dets: IntArray,
    ) -> Tracks:
        out = object.__new__(_StepTracks)
        out.__dict__.update(
            t=t, sensor=self.sensor, ids=self._ids, status=status, x=x, P=P, hits=hits,
            updated=updated, scores=scores, space=self.model.space,
            _src=_Derived(self.model, self._dz, step_no, born, t_update, rows, dets, res,
                          birth_rows, birth_dets, labels),
        )
        return out

