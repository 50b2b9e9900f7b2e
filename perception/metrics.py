"""Tracking quality: CLEAR-MOT (MOTA, MOTP, ID switches) and identity (IDF1) metrics.

The matching follows Bernardin & Stiefelhagen (2008) as py-motmetrics implements it, so the
numbers agree with it exactly: per frame, keep last frame's correspondences when still within
the distance threshold, then Hungarian on the rest; IDF1 from a global min-cost identity
assignment (Ristani et al. 2016). Works with any distance (IoU for boxes, Euclidean on the ground).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numba as nb
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from perception.kernels import F1, F2, IIN1, IN1, IN2, compiled

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class TrackingScores:
    """Summary of a tracker against ground truth (counts are over all frames)."""

    num_frames: int
    num_objects: int  # ground-truth appearances
    num_predictions: int  # hypothesis appearances
    num_matches: int
    num_switches: int
    num_misses: int
    num_false_positives: int
    mota: float
    motp: float  # mean distance of matches (1 − IoU for boxes)
    idtp: int
    idfp: int
    idfn: int
    idf1: float
    idp: float
    idr: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _div(a: float, b: float) -> float:
    """a / b with IEEE semantics (x/0 = ±inf, 0/0 = NaN), as py-motmetrics reports them."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.true_divide(a, b))


def _lsa_with_missing(costs: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Hungarian assignment where NaN/inf mark forbidden pairs (never returned)."""
    if costs.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    valid = np.isfinite(costs)
    if valid.all():
        finite = costs
    elif not valid.any():  # nothing may pair: the assignment would keep none of its pairs
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    else:
        c = np.abs(costs[valid]).max() + 1.0
        finite = np.where(valid, costs, 2 * min(costs.shape) * c + 1.0)
    r, c_ = linear_sum_assignment(finite)
    keep = valid[r, c_]
    return r[keep], c_[keep]


def iou_distance(a_xywh: FloatArray, b_xywh: FloatArray, max_dist: float = 0.5) -> FloatArray:
    """1 − IoU between (N,4) and (M,4) xywh boxes; pairs above ``max_dist`` are NaN (no pair)."""
    a = np.asarray(a_xywh, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xywh, dtype=np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.empty((a.shape[0], b.shape[0]))
    amin, amax = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    bmin, bmax = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    isize = np.maximum(np.minimum(amax, bmax) - np.maximum(amin, bmin), 0.0)
    ivol = isize.prod(axis=-1)
    avol = np.maximum(amax - amin, 0.0).prod(axis=-1)
    bvol = np.maximum(bmax - bmin, 0.0).prod(axis=-1)
    uvol = avol + bvol - ivol
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(ivol == 0, 0.0, ivol / uvol)
    d = 1.0 - iou
    return np.where(d > max_dist, np.nan, d)


def euclidean_distance(a: FloatArray, b: FloatArray, max_dist: float = 2.0) -> FloatArray:
    """Euclidean distance between (N,2) and (M,2) points; pairs above ``max_dist`` are NaN."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    out: FloatArray = _euclidean_kernel(a, b, float(max_dist))
    return out


@compiled(F2(IN2, IN2, nb.float64))
def _euclidean_kernel(a, b, max_dist):
    """√(dx² + dy²) for every pair, NaN above ``max_dist``: numpy's broadcast formula in one call
    (its two-term sum and sqrt are the same IEEE operations)."""
    n, m = a.shape[0], b.shape[0]
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            dx = a[i, 0] - b[j, 0]
            dy = a[i, 1] - b[j, 1]
            d = math.sqrt(dx * dx + dy * dy)
            out[i, j] = np.nan if d > max_dist else d
    return out


def _ids(ids: Iterable[int]) -> NDArray[np.int64]:
    """Ids as a 1-D int64 array (an int64 array as it is; anything else through a list)."""
    if type(ids) is np.ndarray and ids.dtype == np.int64 and ids.ndim == 1:
        return ids
    return np.asarray(list(ids), dtype=np.int64)


@dataclass
class MotAccumulator:
    """Frame-by-frame CLEAR-MOT event accumulation (same rules as py-motmetrics' accumulator)."""

    _match: dict[int, int] = field(default_factory=dict)  # object id → last hypothesis id
    _obj_frames: dict[int, int] = field(default_factory=dict)
    _hyp_frames: dict[int, int] = field(default_factory=dict)
    _pair_frames: dict[tuple[int, int], int] = field(default_factory=dict)
    frames: int = 0
    matches: int = 0
    switches: int = 0
    misses: int = 0
    false_positives: int = 0
    dist_sum: float = 0.0

    def update(self, oids: Iterable[int], hids: Iterable[int], dists: FloatArray) -> None:
        """Add one frame: object ids, hypothesis ids and their distance matrix (NaN = no pair)."""
        o = _ids(oids)
        h = _ids(hids)
        d = np.array(dists, dtype=np.float64).reshape(o.size, h.size)
        self._add(o.tolist(), h.tolist(), d)

    def _add(self, ol: list[int], hl: list[int], d: FloatArray) -> None:
        """:meth:`update` with the ids as Python lists and ``d`` an (len(ol), len(hl)) float64
        array it does not change."""
        self.frames += 1
        of = self._obj_frames
        for x in ol:
            of[x] = of.get(x, 0) + 1
        hf = self._hyp_frames
        for x in hl:
            hf[x] = hf.get(x, 0) + 1
        pairs = self._pair_frames
        dl = d.tolist()
        isfinite = math.isfinite
        if d.size <= 64:  # a handful of rows: Python scalars beat numpy calls
            for i, a in enumerate(ol):
                row = dl[i]
                for j, b in enumerate(hl):
                    if isfinite(row[j]):
                        pairs[(a, b)] = pairs.get((a, b), 0) + 1
        else:
            fi, fj = np.nonzero(np.isfinite(d))
            for i, j in zip(fi.tolist(), fj.tolist(), strict=True):
                key = (ol[i], hl[j])
                pairs[key] = pairs.get(key, 0) + 1
        n_o, n_h = len(ol), len(hl)
        o_used = [False] * n_o
        h_used = [False] * n_h
        n_used = 0  # pairs matched this frame (each marks one object and one hypothesis)
        if n_o and n_h:
            # 1. carry forward last frame's correspondences that are still within threshold
            match = self._match
            hpos = {hid: j for j, hid in enumerate(hl)}
            for i, oid in enumerate(ol):
                prev = match.get(oid)
                k = hpos.get(prev) if prev is not None else None
                if k is not None and not h_used[k] and isfinite(dl[i][k]):
                    o_used[i] = h_used[k] = True
                    n_used += 1
                    self.matches += 1
                    self.dist_sum += dl[i][k]
            # 2. Hungarian on the rest; a new partner for a previously matched object is a switch
            if n_used < n_o and n_used < n_h:  # else nothing is left to pair
                rest = d.copy()
                rest[np.array(o_used), :] = np.nan
                rest[:, np.array(h_used)] = np.nan
                ri, ci = _lsa_with_missing(rest)
                for i, j in zip(ri.tolist(), ci.tolist(), strict=True):
                    oid, hid = ol[i], hl[j]
                    if oid in match and match[oid] != hid:
                        self.switches += 1
                    match[oid] = hid
                    o_used[i] = h_used[j] = True
                    n_used += 1
                    self.matches += 1
                    self.dist_sum += dl[i][j]
        self.misses += n_o - n_used
        self.false_positives += n_h - n_used

    def scores(self) -> TrackingScores:
        """CLEAR-MOT and identity scores of everything accumulated so far."""
        n_obj = sum(self._obj_frames.values())
        n_hyp = sum(self._hyp_frames.values())
        oid = sorted(self._obj_frames)
        hid = sorted(self._hyp_frames)
        no, nh = len(oid), len(hid)
        idtp = 0
        if no and nh and self._pair_frames:
            oi = {x: k for k, x in enumerate(oid)}
            hi = {x: k for k, x in enumerate(hid)}
            oc = np.array([self._obj_frames[x] for x in oid], dtype=np.float64)
            hc = np.array([self._hyp_frames[x] for x in hid], dtype=np.float64)
            # bipartite with dummy nodes (Ristani et al.): cost = FN + FP of each identity pairing
            fp = np.zeros((no + nh, no + nh))
            fn = np.zeros((no + nh, no + nh))
            fp[no:, :nh] = np.nan
            fn[:no, nh:] = np.nan
            fn[:no, :nh] = oc[:, None]
            fn[np.arange(no), nh + np.arange(no)] = oc
            fp[:no, :nh] = hc[None, :]
            fp[no + np.arange(nh), np.arange(nh)] = hc
            pairs = np.array(
                [(oi[a], hi[b], c) for (a, b), c in self._pair_frames.items()], dtype=np.int64
            )
            fp[pairs[:, 0], pairs[:, 1]] -= pairs[:, 2]
            fn[pairs[:, 0], pairs[:, 1]] -= pairs[:, 2]
            r, c = _lsa_with_missing(fp + fn)
            idfn = float(fn[r, c].sum())
            idtp = round(n_obj - idfn)
        idfn_i = n_obj - idtp
        idfp_i = n_hyp - idtp
        return TrackingScores(
            num_frames=self.frames,
            num_objects=n_obj,
            num_predictions=n_hyp,
            num_matches=self.matches,
            num_switches=self.switches,
            num_misses=self.misses,
            num_false_positives=self.false_positives,
            mota=1.0 - _div(self.misses + self.switches + self.false_positives, n_obj),
            motp=_div(self.dist_sum, self.matches),
            idtp=idtp,
            idfp=idfp_i,
            idfn=idfn_i,
            idf1=_div(2 * idtp, n_obj + n_hyp),
            idp=_div(idtp, idtp + idfp_i),
            idr=_div(idtp, idtp + idfn_i),
        )


Frames = dict[int, tuple[NDArray[np.int64], FloatArray]]  # frame → (ids (n,), features (n, k))


@compiled(F1(IN2, IIN1, IN2, IIN1, nb.float64))
def _euclidean_frames(a, a_off, b, b_off, max_dist):
    """:func:`_euclidean_kernel` of every frame's rows ``a[a_off[f]:a_off[f + 1]]`` against
    ``b[b_off[f]:b_off[f + 1]]``, the (n_f, m_f) blocks flat in frame order: one call per run."""
    frames = a_off.shape[0] - 1
    total = 0
    for f in range(frames):
        total += (a_off[f + 1] - a_off[f]) * (b_off[f + 1] - b_off[f])
    out = np.empty(total)
    k = 0
    for f in range(frames):
        for i in range(a_off[f], a_off[f + 1]):
            for j in range(b_off[f], b_off[f + 1]):
                dx = a[i, 0] - b[j, 0]
                dy = a[i, 1] - b[j, 1]
                d = math.sqrt(dx * dx + dy * dy)
                out[k] = np.nan if d > max_dist else d
                k += 1
    return out


@compiled(nb.types.Tuple((nb.int64, nb.boolean[::1], nb.boolean[::1], nb.int64))(
    IIN1, IIN1, IIN1, IIN1, IN1, nb.int64, nb.int64,
    nb.int64[::1], nb.int64[::1], nb.int64[::1], nb.int64[:, ::1], nb.int64[::1], F1,
    nb.int64[::1],
))
def _mot_frames(go, og, ho, hg, dist, f0, k0, match, ofr, hfr, pairs, counts, dsum, hpos):
    """MotAccumulator.update over frames ``f0`` .. with dense ids (``og``/``hg``: object and
    hypothesis rows' indices into the sorted unique ids; ``dist`` the frames' distance blocks
    flat from offset ``k0``). State is updated in place: ``match`` (last hypothesis per object,
    -1 none), per-id frame counts, pair counts, ``counts`` = [frames, matches, switches, misses,
    false positives, next block offset] and ``dsum`` = [distance sum], added in the same order.
    Stops at the first frame that needs the Hungarian step (objects and hypotheses left over
    with a finite distance between some of them), returning it with its used flags and pairs
    so far; returns frame T when done."""
    frames = go.shape[0] - 1
    k = k0
    for f in range(f0, frames):
        a0, a1 = go[f], go[f + 1]
        b0, b1 = ho[f], ho[f + 1]
        n, m = a1 - a0, b1 - b0
        counts[0] += 1
        for i in range(n):
            ofr[og[a0 + i]] += 1
        for j in range(m):
            hfr[hg[b0 + j]] += 1
        for i in range(n):
            for j in range(m):
                if math.isfinite(dist[k + i * m + j]):
                    pairs[og[a0 + i], hg[b0 + j]] += 1
        o_used = np.zeros(n, np.bool_)
        h_used = np.zeros(m, np.bool_)
        n_used = 0
        if n and m:
            for j in range(m):
                hpos[hg[b0 + j]] = j  # the last row of an id, as a dict built in order keeps
            for i in range(n):
                prev = match[og[a0 + i]]
                if prev < 0:
                    continue
                kk = hpos[prev]
                if kk >= 0 and not h_used[kk] and math.isfinite(dist[k + i * m + kk]):
                    o_used[i] = True
                    h_used[kk] = True
                    n_used += 1
                    counts[1] += 1
                    dsum[0] += dist[k + i * m + kk]
            for j in range(m):
                hpos[hg[b0 + j]] = -1
            if n_used < n and n_used < m:
                for i in range(n):
                    if o_used[i]:
                        continue
                    for j in range(m):
                        if not h_used[j] and math.isfinite(dist[k + i * m + j]):
                            counts[5] = k
                            return f, o_used, h_used, n_used
        counts[3] += n - n_used
        counts[4] += m - n_used
        k += n * m
    counts[5] = k
    return frames, np.zeros(0, np.bool_), np.zeros(0, np.bool_), 0


#: Above this many (object id × hypothesis id) pairs evaluate_points accumulates in Python
#: (the compiled path keeps a dense pair-count matrix).
_DENSE_PAIRS_MAX = 4_000_000


def evaluate_points(
    gt_ids: NDArray[np.int64],
    gt_pos: FloatArray,
    gt_offsets: NDArray[np.int64],
    hyp_ids: NDArray[np.int64],
    hyp_pos: FloatArray,
    hyp_offsets: NDArray[np.int64],
    max_dist: float,
) -> TrackingScores:
    """:func:`evaluate` with :func:`euclidean_distance` (gate ``max_dist``) for frames
    0 .. T-1 given flat: frame f's rows are ``offsets[f]:offsets[f + 1]`` (T + 1 offsets each).
    The same scores, with every frame's distances computed in one compiled call and the frames
    accumulated by a compiled pass (Python only for the frames that need the Hungarian step)."""
    go = np.asarray(gt_offsets, dtype=np.int64)
    ho = np.asarray(hyp_offsets, dtype=np.int64)
    if go.shape != ho.shape or go.ndim != 1 or go.shape[0] < 1:
        raise ValueError("gt_offsets and hyp_offsets must both hold T + 1 offsets")
    a = np.ascontiguousarray(gt_pos, dtype=np.float64).reshape(-1, 2)
    b = np.ascontiguousarray(hyp_pos, dtype=np.float64).reshape(-1, 2)
    dist = _euclidean_frames(a, go, b, ho, float(max_dist))
    gi = np.asarray(gt_ids, dtype=np.int64).reshape(-1)
    hi = np.asarray(hyp_ids, dtype=np.int64).reshape(-1)
    uo, og = np.unique(gi, return_inverse=True)
    uh, hg = np.unique(hi, return_inverse=True)
    if uo.size * uh.size > _DENSE_PAIRS_MAX:
        return _evaluate_points_python(gi, hi, go, ho, dist)
    acc = MotAccumulator()
    match = np.full(uo.size, -1, np.int64)
    ofr = np.zeros(uo.size, np.int64)
    hfr = np.zeros(uh.size, np.int64)
    pairs = np.zeros((uo.size, uh.size), np.int64)
    counts = np.zeros(6, np.int64)
    dsum = np.zeros(1)
    hpos = np.full(uh.size, -1, np.int64)
    og = og.reshape(-1).astype(np.int64)
    hg = hg.reshape(-1).astype(np.int64)
    frames = go.shape[0] - 1
    f, k = 0, 0
    while True:
        f, o_used_a, h_used_a, n_used = _mot_frames(
            go, og, ho, hg, dist, f, k, match, ofr, hfr, pairs, counts, dsum, hpos
        )
        if f >= frames:
            break
        # the Hungarian step of frame f, as MotAccumulator.update takes it
        k = int(counts[5])
        a0, a1, b0, b1 = int(go[f]), int(go[f + 1]), int(ho[f]), int(ho[f + 1])
        n, m = a1 - a0, b1 - b0
        d = dist[k:k + n * m].reshape(n, m)
        rest = d.copy()
        rest[o_used_a, :] = np.nan
        rest[:, h_used_a] = np.nan
        ri, ci = _lsa_with_missing(rest)
        dl = d.tolist()
        for i, j in zip(ri.tolist(), ci.tolist(), strict=True):
            o, h = int(og[a0 + i]), int(hg[b0 + j])
            if match[o] >= 0 and match[o] != h:
                counts[2] += 1
            match[o] = h
            n_used += 1
            counts[1] += 1
            dsum[0] += dl[i][j]
        counts[3] += n - n_used
        counts[4] += m - n_used
        f += 1
        k += n * m
    uol, uhl = uo.tolist(), uh.tolist()
    acc._obj_frames = dict(zip(uol, ofr.tolist(), strict=True))
    acc._hyp_frames = dict(zip(uhl, hfr.tolist(), strict=True))
    po, ph = np.nonzero(pairs)
    acc._pair_frames = {
        (uol[x], uhl[y]): c
        for x, y, c in zip(po.tolist(), ph.tolist(), pairs[po, ph].tolist(), strict=True)
    }
    acc.frames, acc.matches, acc.switches, acc.misses, acc.false_positives = (
        int(c) for c in counts[:5]
    )
    acc.dist_sum = float(dsum[0])
    return acc.scores()


def _evaluate_points_python(
    gi: NDArray[np.int64], hi: NDArray[np.int64], go: NDArray[np.int64],
    ho: NDArray[np.int64], dist: FloatArray,
) -> TrackingScores:
    """evaluate_points' accumulation frame by frame through MotAccumulator (many ids)."""
    gl, hl = gi.tolist(), hi.tolist()
    gol, hol = go.tolist(), ho.tolist()
    acc = MotAccumulator()
    add = acc._add
    k = 0
    for f in range(len(gol) - 1):
        ol = gl[gol[f]:gol[f + 1]]
        hf = hl[hol[f]:hol[f + 1]]
        nm = len(ol) * len(hf)
        add(ol, hf, dist[k:k + nm].reshape(len(ol), len(hf)))
        k += nm
    return acc.scores()


def evaluate(
    gt: Frames,
    hyp: Frames,
    distance: Callable[[FloatArray, FloatArray], FloatArray] = iou_distance,
) -> TrackingScores:
    """Score hypothesis frames against ground-truth frames (union of their frame numbers)."""
    acc = MotAccumulator()
    empty_ids = np.zeros(0, np.int64)
    for f in sorted(set(gt) | set(hyp)):
        gi, gx = gt.get(f, (empty_ids, np.zeros((0, 4))))
        hi, hx = hyp.get(f, (empty_ids, np.zeros((0, 4))))
        d = distance(gx, hx) if len(gi) and len(hi) else np.empty((len(gi), len(hi)))
        acc.update(gi, hi, d)
    return acc.scores()
