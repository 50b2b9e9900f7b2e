"""Multi-object Kalman tracker: gated association, vectorized filter, track lifecycle.

State is a structure of arrays (one row per live track) and every step is array operations over
all tracks: predict all, associate all, update the matched rows, apply the lifecycle rules as
masks, compact, append births. IDs come from a monotone counter and are never reused.

With a handful of tracks per frame a step costs what its Python-level calls cost, whatever their
size, so the hot path is written to make few of them. The common step (existing tracks, nothing
born or deleted, every stage's gated pairs one-to-one) is one compiled call, ``_step_kernel``:
predict, the Mahalanobis cost matrix and association cascade, the update of the matched rows,
the lifecycle rules, and every published field (derived ones too: position, covariance trace,
innovations, age, ...) written into three packed read-only buffers, one per dtype, since each
array a kernel returns costs about half a microsecond to hand back. The returned :class:`Tracks`
holds views of them (a read is a dictionary lookup), and the next step reads its state from the
same buffers. Other steps run the same compiled bodies one by one (the Hungarian solver when a
stage is not one-to-one, births and deletions in numpy) and pack their output the same way.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import numba as nb
import numpy as np
from numpy.typing import NDArray

from perception.association import (
    _one_to_one,
    _resolve_singular,
    associate,
    chi2_gate,
    iou_matrix_z,
    mahalanobis_body,
    mahalanobis_kernel,
)
from perception.detections import Detections
from perception.errors import TrackerError
from perception.kalman import (
    KalmanBackend,
    VectorizedKalman,
    _kf_predict_core,
    make_backend,
)
from perception.kernels import (
    BIN1,
    F1,
    IIN1,
    IN1,
    IN2,
    IN3,
    _kf_predict_body,
    _kf_update_rows_body,
    compiled,
    kf_update_rows_kernel,
)
from perception.models import (
    MotionModel,
    PositionFirst,
    _Planar,
    make_model,
    predict_model,
)
from perception.tracks import Tracks, TrackStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_MAX_WINDOW = 62  # hit history is a bit mask in an int64
# plain ints: comparing arrays against IntEnum members costs an enum lookup per use
_TENTATIVE, _CONFIRMED, _COASTING, _DELETED = (
    int(TrackStatus.TENTATIVE), int(TrackStatus.CONFIRMED), int(TrackStatus.COASTING),
    int(TrackStatus.DELETED),
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
_NO_BOOL = _frozen(np.zeros(0, bool))
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


# ------------------------------------------------------------------------------ kernels
_I1 = nb.int64[::1]
_B1 = nb.boolean[::1]


_body = nb.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")


@_body
def _associate_body(zp, Sp, z, R, status, gate, recovery_gate):
    """:func:`_associate_kernel`'s computation, callable from other compiled kernels."""
    cost, bad = mahalanobis_body(zp, Sp, z, R)
    n, m = cost.shape
    match = np.full(n, -1, np.int64)
    if bad:
        return match, m, False
    free = np.ones(m, np.bool_)
    rows = np.zeros(n, np.bool_)
    rc = np.zeros(n, np.int64)
    cc = np.zeros(m, np.int64)
    n_free = m
    for stage in range(3):
        g = recovery_gate if stage == 1 else gate
        for i in range(n):
            tentative = status[i] == _TENTATIVE
            rows[i] = tentative if stage == 2 else (not tentative and match[i] < 0)
            rc[i] = 0
        for j in range(m):
            cc[j] = 0
        for i in range(n):
            if not rows[i]:
                continue
            for j in range(m):
                c = cost[i, j]
                if free[j] and c <= g:
                    rc[i] += 1
                    cc[j] += 1
                    if rc[i] > 1 or cc[j] > 1:
                        return match, m, False
        for i in range(n):
            if rc[i]:
                for j in range(m):
                    if free[j] and cost[i, j] <= g:
                        match[i] = j
                        break
        for i in range(n):
            if rc[i]:
                free[match[i]] = False
                n_free -= 1
    return match, n_free, True


@compiled(nb.types.Tuple((_I1, nb.int64, nb.boolean))(
    IN2, IN3, IN2, IN3, IIN1, nb.float64, nb.float64))
def _associate_kernel(zp, Sp, z, R, status, gate, recovery_gate):
    """Mahalanobis gating and :meth:`Tracker._cascade` in one call for the common case: every
    distance finite and every stage's gated pairs already one-to-one. Returns the detection
    per track row (-1: none), the number of unmatched detections, and False when the case is
    not the common one (the caller then runs the general path)."""
    return _associate_body(zp, Sp, z, R, status, gate, recovery_gate)


@_body
def _lifecycle_body(status, hits, t_update, history, born_look, dup, match, pos, pcov, tf,
                    measured, tentative, window_mask, n_init, first, max_coast, max_cov_trace,
                    coalesce, coalesce_gate, coalesce_steps):
    """The lifecycle rules of :meth:`Tracker.step` for all tracks in one call: new status
    (``_DELETED`` for the tracks to delete), hits, time of update and updated mask, the number
    of deletions and of surviving tentative tracks; the hit history and twin count (internal,
    never published) are updated in place. Same rules, in the same order, as the masks they
    replace (tentative expiry, coasting too long, covariance too large, twins)."""
    n = status.shape[0]
    st = np.empty(n, np.int64)
    hits2 = np.empty(n, np.int64)
    tu = np.empty(n)
    upd = np.empty(n, np.bool_)
    dead = np.zeros(n, np.bool_)
    for t in range(n):
        u = match[t] >= 0
        upd[t] = u
        hits2[t] = hits[t] + 1 if u else hits[t]
        tu[t] = tf if u else t_update[t]
        s = status[t]
        if not measured:
            st[t] = _COASTING if s == _CONFIRMED else s
        elif tentative:
            h = ((history[t] << 1) | (1 if u else 0)) & window_mask
            history[t] = h
            bits = 0
            while h:
                h &= h - 1
                bits += 1
            if s == _TENTATIVE and not bits >= n_init:  # not (yet) confirmed
                st[t] = _TENTATIVE
                dead[t] = not u and born_look[t] <= first
            else:
                st[t] = _CONFIRMED if u else _COASTING
        else:
            st[t] = _CONFIRMED if u else _COASTING
        if (tf - tu[t]) > max_coast:
            dead[t] = True
        trace = pcov[t, 0, 0] + pcov[t, 1, 1]
        if not trace <= max_cov_trace:  # NaN counts as too large
            dead[t] = True
    if coalesce and n == 1:
        dup[0] = 0
    elif coalesce and n > 1:
        # Twins: a track that for ``coalesce_steps`` measurement steps in a row lies within the
        # gate of an older (i < j: rows are in ID order) reportable, live track, the two never
        # updated in the same step, follows the same object (two objects side by side are both
        # detected); the younger is deleted. Only pairs where one of the two missed are tested.
        missed = np.empty(n, np.int64)
        n_missed = 0
        for t in range(n):
            if not upd[t]:
                missed[n_missed] = t
                n_missed += 1
        shadowed = np.zeros(n, np.bool_)
        for j in range(n):
            if dead[j] or n_missed == 0:
                continue
            q_end = j if not upd[j] else n_missed
            for q in range(q_end):
                i = q if not upd[j] else missed[q]
                if i >= j:
                    break
                if st[i] == _TENTATIVE or dead[i]:
                    continue
                d0 = pos[j, 0] - pos[i, 0]
                d1 = pos[j, 1] - pos[i, 1]
                s00 = pcov[j, 0, 0] + pcov[i, 0, 0]
                s01 = pcov[j, 0, 1] + pcov[i, 0, 1]
                s10 = pcov[j, 1, 0] + pcov[i, 1, 0]
                s11 = pcov[j, 1, 1] + pcov[i, 1, 1]
                det = s00 * s11 - s01 * s10
                qf = s11 * (d0 * d0) - (s01 + s10) * d0 * d1 + s00 * (d1 * d1)
                d2 = qf / det if det > 0.0 else np.inf
                if d2 <= coalesce_gate:
                    shadowed[j] = True
                    break
        for j in range(n):
            dup[j] = dup[j] + 1 if shadowed[j] else 0
            if dup[j] >= coalesce_steps:
                dead[j] = True
    n_dead = 0
    n_tent = 0
    for t in range(n):
        if dead[t]:
            st[t] = _DELETED
            n_dead += 1
        elif st[t] == _TENTATIVE:
            n_tent += 1
    return st, hits2, tu, upd, n_dead, n_tent


@compiled(nb.types.Tuple((_I1, _I1, F1, _B1, nb.int64, nb.int64))(
    IIN1, IIN1, IN1, _I1, IIN1, _I1, IIN1, IN2, IN3, nb.float64, nb.boolean, nb.boolean,
    nb.int64, nb.int64, nb.int64, nb.float64, nb.float64, nb.boolean, nb.float64, nb.int64))
def _lifecycle_kernel(status, hits, t_update, history, born_look, dup, match, pos, pcov, tf,
                      measured, tentative, window_mask, n_init, first, max_coast, max_cov_trace,
                      coalesce, coalesce_gate, coalesce_steps):
    """The lifecycle rules of :meth:`Tracker.step` for all tracks (see ``_lifecycle_body``);
    the hit history and twin count are updated in place."""
    return _lifecycle_body(status, hits, t_update, history, born_look, dup, match, pos, pcov,
                           tf, measured, tentative, window_mask, n_init, first, max_coast,
                           max_cov_trace, coalesce, coalesce_gate, coalesce_steps)


# Rows of a step's packed int64 output (ibuf) and bool output (bbuf); the float output (fbuf)
# is flat: x (n·dx) | P (n·dx²) | t_update | scores | cov_trace | time_since_update | nis (n
# each) | innovation (n·dz) | innovation_cov (n·dz²). One array per dtype: each array a kernel
# returns costs a boxing, a view of a row or segment much less.
_ROW_STATUS, _ROW_HITS, _ROW_LABELS, _ROW_AGE, _ROW_DET, _ROW_HISTORY, _ROW_DUP = range(7)
_INT_ROWS = 7


@_body
def _pack_body(x, P, pcov, status, hits, t_update, scores, labels, born, updated, det_index,
               innov, history, dup, tf, step_no, dz):
    """A step's published arrays in three buffers (layout above): state, covariance trace of
    the position, time since update, age, and the innovation statistics ``innov`` (rows
    [y, S row-major, NIS]; rows past its length, and all when it has none, are NaN)."""
    n, dx = x.shape
    fbuf = np.empty(n * (dx + dx * dx + 5 + dz + dz * dz))
    o = 0
    for t in range(n):
        for i in range(dx):
            fbuf[o + t * dx + i] = x[t, i]
    o += n * dx
    for t in range(n):
        for i in range(dx):
            for j in range(dx):
                fbuf[o + (t * dx + i) * dx + j] = P[t, i, j]
    o += n * dx * dx
    for t in range(n):
        fbuf[o + t] = t_update[t]
        fbuf[o + n + t] = scores[t]
        fbuf[o + 2 * n + t] = pcov[t, 0, 0] + pcov[t, 1, 1]
        fbuf[o + 3 * n + t] = tf - t_update[t]
    o += 4 * n
    k = innov.shape[0]
    o_y = o + n
    o_s = o_y + n * dz
    for t in range(n):
        if t < k:
            fbuf[o + t] = innov[t, dz + dz * dz]
            for a in range(dz):
                fbuf[o_y + t * dz + a] = innov[t, a]
            for a in range(dz * dz):
                fbuf[o_s + t * dz * dz + a] = innov[t, dz + a]
        else:
            fbuf[o + t] = np.nan
            for a in range(dz):
                fbuf[o_y + t * dz + a] = np.nan
            for a in range(dz * dz):
                fbuf[o_s + t * dz * dz + a] = np.nan
    ibuf = np.empty((_INT_ROWS, n), np.int64)
    bbuf = np.empty((2, n), np.bool_)
    for t in range(n):
        ibuf[_ROW_STATUS, t] = status[t]
        ibuf[_ROW_HITS, t] = hits[t]
        ibuf[_ROW_LABELS, t] = labels[t]
        ibuf[_ROW_AGE, t] = step_no - born[t]
        ibuf[_ROW_DET, t] = det_index[t]
        ibuf[_ROW_HISTORY, t] = history[t]
        ibuf[_ROW_DUP, t] = dup[t]
        bbuf[0, t] = updated[t]
        bbuf[1, t] = status[t] != _TENTATIVE
    return fbuf, ibuf, bbuf


_RF1 = nb.types.Array(nb.float64, 1, "C", readonly=True)
_RI2 = nb.types.Array(nb.int64, 2, "C", readonly=True)
_RB2 = nb.types.Array(nb.bool_, 2, "C", readonly=True)
_PACKED = nb.types.Tuple((_RF1, _RI2, _RB2))  # returned read-only: published as they are


@compiled(_PACKED(IN2, IN3, IN3, IIN1, IIN1, IN1, IN1, IIN1, IIN1, BIN1, IIN1, IN2, IIN1, IIN1,
                  nb.float64, nb.int64, nb.int64))
def _pack_kernel(x, P, pcov, status, hits, t_update, scores, labels, born, updated, det_index,
                 innov, history, dup, tf, step_no, dz):
    """:func:`_pack_body` in one call, for the steps that do not go through ``_step_kernel``
    (births, deletions, the general association, other models and backends, ``peek``)."""
    return _pack_body(x, P, pcov, status, hits, t_update, scores, labels, born, updated,
                      det_index, innov, history, dup, tf, step_no, dz)


@_body
def _finish_body(x, P, innov, scores, labels, match, status, hits, t_update, history, born_look,
                 dup, born, measured, tf, tentative, window_mask, n_init, first, max_coast,
                 max_cov_trace, coalesce, coalesce_gate, coalesce_steps, step_no, dz):
    """Lifecycle and packing of ``_step_kernel`` after the update (the hit history and twin
    count go to the packed output, the inputs stay as they are); not done when a track dies."""
    hist = history.copy()
    dp = dup.copy()
    st, hi, tu, upd, n_dead, n_tent = _lifecycle_body(
        status, hits, t_update, hist, born_look, dp, match, x[:, :2], P[:, :2, :2], tf,
        measured, tentative, window_mask, n_init, first, max_coast, max_cov_trace, coalesce,
        coalesce_gate, coalesce_steps)
    if n_dead:
        return (np.empty(0), np.empty((_INT_ROWS, 0), np.int64), np.empty((2, 0), np.bool_),
                n_tent, False)
    fbuf, ibuf, bbuf = _pack_body(x, P, P[:, :2, :2], st, hi, tu, scores, labels, born, upd,
                                  match, innov, hist, dp, tf, step_no, dz)
    return fbuf, ibuf, bbuf, n_tent, True


_FQ3 = nb.types.Array(nb.float64, 3, "C", readonly=True)
_IIN2 = nb.types.Array(nb.int64, 2, "C", readonly=True)


@compiled(nb.types.Tuple((_RF1, _RI2, _RB2, nb.int64, nb.boolean))(
    IN2, _RF1, _IIN2, _FQ3, IN2, IN2, IN3, IN1, IIN1, IIN1, IIN1, nb.boolean, nb.float64,
    nb.float64, nb.float64, nb.boolean, nb.int64, nb.int64, nb.int64, nb.float64, nb.float64,
    nb.boolean, nb.float64, nb.int64, nb.int64))
def _step_kernel(x, fbuf, ibuf, FQ, H, z, R, det_scores, det_labels, born_look, born, measured,
                 tf, gate, recovery_gate, tentative, window_mask, n_init, first, max_coast,
                 max_cov_trace, coalesce, coalesce_gate, coalesce_steps, step_no):
    """A whole :meth:`Tracker.step` of existing tracks in one call when nothing is born or
    deleted and the association is the common case: predict, associate, update, lifecycle,
    packed output (same bodies, same order as the separate kernels). The state comes as the
    previous step's packed buffers (``x``: the states to predict from); ``FQ`` stacks F and Q.
    Returns the packed buffers (read-only), the number of tentative tracks and True; False
    (inputs untouched) otherwise."""
    n, dx = x.shape
    dz = H.shape[0]
    b = n * dx + n * dx * dx
    P = fbuf[n * dx:b].reshape(n, dx, dx)
    t_update = fbuf[b:b + n]
    scores = fbuf[b + n:b + 2 * n]
    status = ibuf[_ROW_STATUS]
    hits = ibuf[_ROW_HITS]
    labels = ibuf[_ROW_LABELS]
    history = ibuf[_ROW_HISTORY]
    dup = ibuf[_ROW_DUP]
    xp, Pp = _kf_predict_body(x, P, FQ[0], FQ[1])
    m = z.shape[0] if measured else 0
    if m:
        match, n_left, simple = _associate_body(xp[:, :dz], Pp[:, :dz, :dz], z, R, status,
                                                gate, recovery_gate)
        if not simple or n_left:
            return (np.empty(0), np.empty((_INT_ROWS, 0), np.int64),
                    np.empty((2, 0), np.bool_), 0, False)
        xu, Pu, innov, sc, lb = _kf_update_rows_body(xp, Pp, z, R, H, match, scores, labels,
                                                     det_scores, det_labels)
        return _finish_body(xu, Pu, innov, sc, lb, match, status, hits, t_update, history,
                            born_look, dup, born, measured, tf, tentative, window_mask, n_init,
                            first, max_coast, max_cov_trace, coalesce, coalesce_gate,
                            coalesce_steps, step_no, dz)
    no_match = np.full(n, -1, np.int64)
    return _finish_body(xp, Pp, np.empty((0, dz + dz * dz + 1)), scores, labels, no_match,
                        status, hits, t_update, history, born_look, dup, born, measured, tf,
                        tentative, window_mask, n_init, first, max_coast, max_cov_trace,
                        coalesce, coalesce_gate, coalesce_steps, step_no, dz)


# ------------------------------------------------------------------------------ output
class _StepTracks(Tracks):
    """:class:`Tracks` published by a tracker step: every field a view of the step's packed
    buffers (read-only), and ``confirmed`` stored with them, so reading a field costs a
    dictionary lookup however many consumers read it."""

    @functools.cached_property
    def confirmed(self) -> BoolArray:
        """Mask of tracks that are confirmed or coasting after confirmation (reportable)."""
        return np.asarray(self.status != _TENTATIVE)


def _unpack(t: float, sensor: str, space: str, ids: IntArray, dx: int, dz: int, fbuf: FloatArray,
            ibuf: IntArray, bbuf: BoolArray, position: FloatArray | None,
            position_cov: FloatArray | None) -> _StepTracks:
    """The :class:`Tracks` whose arrays are views of a step's packed (read-only) buffers;
    ``position``/``position_cov`` None: the leading state components."""
    n = ibuf.shape[1]
    a = n * dx
    b = a + a * dx
    x = fbuf[:a].reshape(n, dx)
    P = fbuf[a:b].reshape(n, dx, dx)
    c = b + 5 * n
    d = c + n * dz
    out = object.__new__(_StepTracks)
    object.__setattr__(out, "__dict__", {
        "t": t, "sensor": sensor, "ids": ids, "status": ibuf[_ROW_STATUS], "x": x, "P": P,
        "position": x[:, :2] if position is None else position,
        "position_cov": P[:, :2, :2] if position_cov is None else position_cov,
        "age": ibuf[_ROW_AGE], "hits": ibuf[_ROW_HITS],
        "time_since_update": fbuf[b + 3 * n:c - n], "cov_trace": fbuf[b + 2 * n:b + 3 * n],
        "updated": bbuf[0], "nis": fbuf[c - n:c], "innovation": fbuf[c:d].reshape(n, dz),
        "innovation_cov": fbuf[d:].reshape(n, dz, dz), "scores": fbuf[b + n:b + 2 * n],
        "labels": ibuf[_ROW_LABELS], "det_index": ibuf[_ROW_DET], "space": space,
        "confirmed": bbuf[1],
    })
    return out


class _Derived(NamedTuple):
    """What the lazily derived fields of one step's :class:`Tracks` are computed from."""

    model: MotionModel
    pos01: bool  # the model's position and its covariance are the leading components
    dz: int
    step_no: int
    born: IntArray
    t_update: FloatArray
    det_index: IntArray  # detection that updated each row, -1 if none (births not included)
    birth_dets: IntArray  # detection each birth came from (rows after ``det_index``'s)
    innov: FloatArray | None  # rows [y, S row-major, NIS] (NaN: not updated); births not included
    labels: IntArray  # last associated label per row


_DERIVED = frozenset({
    "position", "position_cov", "cov_trace", "age", "time_since_update", "nis", "innovation",
    "innovation_cov", "det_index", "labels",
})


class _LazyTracks(Tracks):
    """:class:`Tracks` whose derived fields (position, innovations, ...) are computed on first
    access: same fields, same values, same types. Published by trackers that never take the
    one-call step (IoU gating, the filterpy backend, ...): there most consumers read only a few
    fields, and packing them all would cost more than it saves."""

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
        if src.pos01:
            return _frozen(tr.x[:, :2])
        return _frozen(np.asarray(src.model.position(tr.x), dtype=np.float64))
    if name == "position_cov":
        if src.pos01:
            return _frozen(tr.P[:, :2, :2])
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
        if src.birth_dets.shape[0]:
            return np.concatenate([src.det_index, src.birth_dets])
        return src.det_index.copy()
    shape = {"innovation": (n, dz), "innovation_cov": (n, dz, dz), "nis": (n,)}[name]
    inn = src.innov
    if inn is None:
        return np.full(shape, np.nan)
    k = inn.shape[0]
    if name == "innovation":
        part = inn[:, :dz]
    elif name == "innovation_cov":
        part = inn[:, dz:dz + dz * dz].reshape(k, dz, dz)
    else:
        part = inn[:, dz + dz * dz]
    if k < n:  # births: not updated
        return np.concatenate([part, np.full((n - k, *shape[1:]), np.nan)])
    return part


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
        self._window_mask = (1 << self.init_window) - 1
        self._coalescing = self._guard and self.coalesce_steps > 0
        # position and its covariance are the leading components (slices, no model call)
        self._pos01 = (type(self.model).position_cov is PositionFirst.position_cov
                       and type(self.model).position is PositionFirst.position)
        # the vectorized backend is called without re-validating what the tracker guarantees
        self._fast = isinstance(self.backend, VectorizedKalman)
        self._constrain = getattr(self.model, "constrain", None)
        # F, Q and the two stacked, by dt
        self._fq: dict[float, tuple[FloatArray, FloatArray, FloatArray]] = {}
        if getattr(type(self.model), "constrain", None) is _Planar.constrain:
            self._constrain = None  # the identity
        self._dx = int(self.model.dim_x)
        self._space = self.model.space
        self._no_innov = _frozen(np.zeros((0, dz + dz * dz + 1)))
        self._no_dets = Detections.empty(0.0, sensor, self.model.space)
        # one compiled call per step (``_step_kernel``): the vectorized backend, Mahalanobis
        # gating, H a selection of the leading components, position the first two of them
        self._fused = self._fast and self._guard and self._selection and self._pos01
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
        self._fbuf = _frozen(np.zeros(0))  # the last step's packed buffers (see _pack_body)
        self._ibuf = _frozen(np.zeros((_INT_ROWS, 0), np.int64))
        self._empty: dict[str, Any] | None = None  # the fields of a step without tracks
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
        fq = self._fq.get(dt)
        if fq is None:
            fq = self._new_fq(dt)
        x = self._x if self._constrain is None else self._constrain(self._x, dt)
        return _kf_predict_core(x, self._P, fq[0], fq[1])

    def _new_fq(self, dt: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """F and Q for a step of ``dt``, kept for the next steps of the same length."""
        if len(self._fq) >= 64:
            self._fq.clear()
        F, Q = self.model.F(dt), self.model.Q(dt)
        fq = self._fq[dt] = (F, Q, _frozen(np.stack([F, Q]).astype(np.float64)))
        return fq

    def _update(self, x: FloatArray, P: FloatArray, dets: Detections, match: IntArray,
                scores: FloatArray, labels: IntArray
                ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray]:
        """Update the rows with ``match >= 0`` by their detections: x, P, innovation statistics
        (rows [y, S row-major, NIS], NaN where not updated), scores and labels, all rows."""
        if self._fast:
            out: tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray] = (
                kf_update_rows_kernel(x, P, dets.z, dets.R, self._H, match, scores, labels,
                                      dets.scores, dets.labels))
            return out
        ti = np.flatnonzero(match >= 0)
        di = match[ti]
        res = self.backend.update(x[ti], P[ti], dets.z[di], dets.R[di], self._H)
        n, dz = x.shape[0], self._dz
        x, P = x.copy(), P.copy()
        x[ti], P[ti] = res.x, res.P
        innov = np.full((n, dz + dz * dz + 1), np.nan)
        innov[ti] = np.column_stack([res.y, res.S.reshape(-1, dz * dz), res.nis])
        scores, labels = scores.copy(), labels.copy()
        scores[ti], labels[ti] = dets.scores[di], dets.labels[di]
        return x, P, innov, scores, labels

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
                            self._step_no + 1, _constant(len(self), -1), _NO_INT, None)

    # ------------------------------------------------------------------ association
    def _associate(self, x: FloatArray, P: FloatArray, dets: Detections
                   ) -> tuple[IntArray, int]:
        """Detection matched to each track row (-1: none) and the number of unmatched ones."""
        zp, Sp = self._meas(x, P)
        if self.gating == "iou":
            cost = 1.0 - iou_matrix_z(zp, dets.z)
            feasible = cost <= self._gate
            ti, di = _one_to_one(cost, feasible)
        else:
            match, n_left, simple = _associate_kernel(
                zp, Sp, dets.z, dets.R, self._status, self._gate, self._recovery_gate)
            if simple:
                return match, n_left
            cost, bad = mahalanobis_kernel(zp, Sp, dets.z, dets.R)
            if bad:
                cost = _resolve_singular(cost, zp, Sp, dets.z, dets.R)
            ti, di = self._cascade(cost)
        match = np.full(x.shape[0], -1, np.int64)
        match[ti] = di
        return match, dets.z.shape[0] - ti.shape[0]

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

    # ------------------------------------------------------------------ step
    def step(self, t: float, detections: Detections | None) -> Tracks:
        """Advance to time ``t`` and incorporate ``detections`` (None: predict only)."""
        tf = self._check_time(t)
        if detections is not None and detections.space != self.model.space:
            raise TrackerError(
                f"detections of space {detections.space!r} given to a {self.model.space!r} tracker"
            )
        n = self._ids.shape[0]
        if n and self._fused:
            out = self._fused_step(tf, detections)
            if out is not None:
                return out
        elif not n and (detections is None or not detections.z.shape[0]):
            return self._empty_step(tf, detections is not None)
        self._step_no += 1
        x, P = self._predicted(tf)
        match: IntArray | None = None
        innov: FloatArray | None = None
        scores, labels = self._scores, self._labels
        births = _NO_INT
        measured = detections is not None
        if detections is not None:
            self._look_no += 1
            m = detections.z.shape[0]
            if n and m:
                match, n_left = self._associate(x, P, detections)
                if n_left < m:
                    x, P, innov, scores, labels = self._update(
                        x, P, detections, match, scores, labels)
                if n_left:
                    used = np.zeros(m, bool)
                    used[match[match >= 0]] = True
                    births = np.flatnonzero(~used)
            elif m:
                births = np.arange(m, dtype=np.int64)

        # ---- lifecycle (one pass over the existing tracks)
        status, hits, t_update = self._status, self._hits, self._t_update
        updated: BoolArray = _NO_BOOL
        n_dead = n_tent = 0
        if match is None:
            match = _constant(n, -1)
        history, dup = self._history, self._dup
        if n:
            if self._pos01:
                pos, pcov = x[:, :2], P[:, :2, :2]
            else:
                pos = np.asarray(self.model.position(x), dtype=np.float64)
                pcov = np.asarray(self.model.position_cov(P), dtype=np.float64)
            history, dup = history.copy(), dup.copy()  # published state is never changed
            status, hits, t_update, updated, n_dead, n_tent = _lifecycle_kernel(
                status, hits, self._t_update, history, self._born_look, dup, match,
                pos, pcov, tf, measured, self._n_tentative > 0, self._window_mask, self.n_init,
                self._look_no + 1 - self.init_window, self.max_coast, self.max_cov_trace,
                self._coalescing and measured, self._coalesce_gate,
                self.coalesce_steps)
        self.deleted_ids = _NO_INT
        born = self._born
        if n_dead:
            keep = status != _DELETED
            self.deleted_ids = _frozen(self._ids[~keep])
            x, P, status, hits, t_update, updated, match = (
                x[keep], P[keep], status[keep], hits[keep], t_update[keep], updated[keep],
                match[keep],
            )
            scores, labels = scores[keep], labels[keep]
            self._ids, born, self._born_look, history, dup = (
                _frozen(self._ids[keep]), born[keep], self._born_look[keep], history[keep],
                dup[keep],
            )
            if innov is not None:
                innov = innov[keep]

        # ---- births from unmatched detections
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
            self._ids = _frozen(
                np.concatenate([self._ids, np.arange(self._next_id, self._next_id + mb)]))
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
            history = np.concatenate([history, ones])
            dup = np.concatenate([dup, np.zeros(mb, np.int64)])
            if born_status == _TENTATIVE:
                n_tent += mb
        self._n_tentative = n_tent
        if not self._fused:  # never a one-call step: publish lazily, without packed buffers
            for arr in (x, P, hits, scores, status, updated):
                arr.setflags(write=False)
            self._x, self._P, self._hits, self._scores, self._status = x, P, hits, scores, status
            self._t_update, self._labels, self._born = t_update, labels, born
            self._history, self._dup = history, dup
            self._t = tf
            lazy = object.__new__(_LazyTracks)
            lazy.__dict__.update(
                t=tf, sensor=self.sensor, ids=self._ids, status=status, x=x, P=P, hits=hits,
                updated=updated, scores=scores, space=self._space,
                _src=_Derived(self.model, self._pos01, self._dz, self._step_no, born, t_update,
                              match, births, innov, labels),
            )
            return lazy
        out, fbuf, ibuf = self._pack(tf, x, P, status, updated, hits, t_update, scores, labels,
                                     born, self._step_no, match, births, innov, history, dup)
        self._keep(tf, out, fbuf, ibuf)
        self._born = born
        return out

    def _keep(self, tf: float, out: Tracks, fbuf: FloatArray, ibuf: IntArray) -> None:
        """Take a step's published arrays (and the packed internal rows) as the new state."""
        self._fbuf, self._ibuf = fbuf, ibuf
        n = ibuf.shape[1]
        b = n * self._dx * (1 + self._dx)
        self._x, self._P, self._hits, self._scores, self._status = (
            out.x, out.P, out.hits, out.scores, out.status)
        self._labels, self._t_update = out.labels, fbuf[b:b + n]
        self._history, self._dup = ibuf[_ROW_HISTORY], ibuf[_ROW_DUP]
        self._t = tf

    def _empty_step(self, tf: float, measured: bool) -> Tracks:
        """:meth:`step` without tracks and without detections: nothing but the counters moves;
        the published arrays are the (empty, read-only) ones of every such step."""
        self._step_no += 1
        if measured:
            self._look_no += 1
        self._n_tentative = 0
        self.deleted_ids = _NO_INT
        self._t = tf
        empty = self._empty
        if empty is None:
            empty = self._empty = {**self._output(
                tf, self._x, self._P, self._status, _NO_BOOL, self._hits, self._t_update,
                self._scores, self._labels, self._born, self._step_no, _NO_INT, _NO_INT,
                None).__dict__}
        out = object.__new__(_StepTracks)
        object.__setattr__(out, "__dict__", {**empty, "t": tf})
        return out

    def _fused_step(self, tf: float, detections: Detections | None) -> Tracks | None:
        """:meth:`step` of existing tracks in one compiled call (``_step_kernel``); None, with
        nothing changed, when a track is born or deleted or the association is not the common
        case (the caller then runs the general step)."""
        dt = tf - self._t  # type: ignore[operator]  # tracks exist: there was a step
        fq = self._fq.get(dt)
        if fq is None:
            fq = self._new_fq(dt)
        x = self._x if self._constrain is None else self._constrain(self._x, dt)
        measured = detections is not None
        d = self._no_dets if detections is None else detections
        look_no = self._look_no + 1 if measured else self._look_no
        step_no = self._step_no + 1
        fbuf, ibuf, bbuf, n_tent, ok = _step_kernel(
            x, self._fbuf, self._ibuf, fq[2], self._H, d.z, d.R, d.scores, d.labels,
            self._born_look, self._born, measured, tf, self._gate, self._recovery_gate,
            self._n_tentative > 0, self._window_mask, self.n_init,
            look_no + 1 - self.init_window, self.max_coast, self.max_cov_trace,
            self._coalescing and measured, self._coalesce_gate, self.coalesce_steps, step_no)
        if not ok:
            return None
        self._step_no, self._look_no, self._n_tentative = step_no, look_no, n_tent
        self.deleted_ids = _NO_INT
        out = _unpack(tf, self.sensor, self._space, self._ids, self._dx, self._dz, fbuf, ibuf,
                      bbuf, None, None)
        self._keep(tf, out, fbuf, ibuf)
        return out

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
        born: IntArray, step_no: int, det_index: IntArray, birth_dets: IntArray,
        innov: FloatArray | None,
    ) -> Tracks:
        return self._pack(t, x, P, status, updated, hits, t_update, scores, labels, born,
                          step_no, det_index, birth_dets, innov, self._history, self._dup)[0]

    def _pack(
        self, t: float, x: FloatArray, P: FloatArray, status: IntArray, updated: BoolArray,
        hits: IntArray, t_update: FloatArray, scores: FloatArray, labels: IntArray,
        born: IntArray, step_no: int, det_index: IntArray, birth_dets: IntArray,
        innov: FloatArray | None, history: IntArray, dup: IntArray,
    ) -> tuple[Tracks, FloatArray, IntArray]:
        """The published :class:`Tracks` of a general step (``det_index`` of the existing rows,
        ``birth_dets`` of the births after them; ``innov`` rows [y, S, NIS] of the existing
        rows, None: no update), and its packed float and int buffers."""
        if birth_dets.shape[0]:
            det_index = np.concatenate([det_index, birth_dets])
        if self._pos01:
            pos = pcov = None
            cov = P[:, :2, :2]
        else:
            pos = _frozen(np.asarray(self.model.position(x), dtype=np.float64))
            pcov = cov = _frozen(np.asarray(self.model.position_cov(P), dtype=np.float64))
        fbuf, ibuf, bbuf = _pack_kernel(
            x, P, cov, status, hits, t_update, scores, labels, born, updated, det_index,
            self._no_innov if innov is None else innov, history, dup, t, step_no, self._dz)
        out = _unpack(t, self.sensor, self._space, self._ids, self._dx, self._dz, fbuf, ibuf,
                      bbuf, pos, pcov)
        return out, fbuf, ibuf
