"""Cross-channel checking: associate the tracks of redundant channels inside their shared field
of view, test their agreement, fuse agreeing estimates (covariance intersection) and, with three
or more channels, vote per object to isolate the faulty one. Never drops an obstacle that only
one channel sees: it is output, flagged uncorroborated.

Everything per step is array work over all tracks at once: field-of-view tests once per channel
(all fields of view against all points in one broadcast), gated candidate pairs from a sort on x
(no dense cost matrix), a Hungarian solve only where gates actually overlap, vectorised
components and fusion. Python loops run over channels, and over the (rare) disagreements.

A vote is statistical evidence like any other: a channel counts as outvoted on an object only
once the majority has contradicted the same (object, channel) for ``persistence`` steps, so a
single chi-square exceedance among many objects does not blame a channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import chi2

from perception.kernels import BIN1, BIN2, F1, F2, F3, IIN1, IN1, IN2, IN3, compiled
from perception.tracks import Tracks
from safety.channels import ChannelConfig, FieldOfView, sector_masks

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# ----------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class VouchedObject:
    """An object the system outputs: fused estimate, contributing channels, corroboration."""

    object_id: int
    position: FloatArray  # (2,)
    cov: FloatArray  # (2, 2)
    channels: tuple[str, ...]
    track_ids: dict[str, int]
    corroborated: bool  # seen by ≥ 2 channels whose estimates agree (and enter the fused estimate)
    label: int = 0
    velocity: FloatArray | None = None
    outvoted: dict[str, int] = field(default_factory=dict)  # channel → track left out by the vote
    covered_by: tuple[str, ...] = ()  # active channels whose FOV holds it (or that see it)
    frame: str = "ground"  # "ground" (metres) or "image" (pixels)


@dataclass(frozen=True)
class Disagreement:
    """Two channels' tracks associated but failing the chi-square agreement test, or a miss."""

    channels: tuple[str, str]
    track_ids: tuple[int, int]  # -1 where one channel has no track (a miss inside its FOV)
    statistic: float  # d² for a disagreement; consecutive steps missed for a miss
    threshold: float  # chi-square bound for a disagreement; the persistence for a miss
    position: FloatArray  # (2,) where (first channel's estimate)
    kind: Literal["disagreement", "miss"] = "disagreement"
    steps: int = 1  # consecutive steps this has persisted
    # the channel the majority vote left out of this object this step (the disagreement is then
    # explained by that channel, and counts towards its outvote, not as an unresolved conflict)
    outvoted: str | None = None


@dataclass
class ShadowStats:
    """Agreement of a shadow channel with the output this step."""

    matched: int = 0
    missed: int = 0  # output objects inside the shadow FOV it does not see
    extra: int = 0  # shadow tracks with no output object
    disagreeing: int = 0


@dataclass
class CrosscheckResult:
    """One step of cross-checking."""

    objects: list[VouchedObject] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    residuals: dict[tuple[str, str], FloatArray] = field(default_factory=dict)  # (M, 2) a − b
    residual_covs: dict[tuple[str, str], FloatArray] = field(default_factory=dict)  # (M, 2, 2)
    # channel → objects it has been outvoted on for at least ``persistence`` consecutive steps
    vote_losers: dict[str, int] = field(default_factory=dict)
    shadow: dict[str, ShadowStats] = field(default_factory=dict)
    t: float = 0.0
    active: tuple[str, ...] = ()  # non-shadow channels that took part this step

    def summary(self) -> str:
        """One line for logs: objects, corroboration, disagreements, misses, losers, shadows."""
        n_corr = sum(o.corroborated for o in self.objects)
        n_miss = sum(d.kind == "miss" for d in self.disagreements)
        parts = [
            f"t={self.t:.3f}",
            f"objects={len(self.objects)} (corroborated {n_corr})",
            f"disagreements={len(self.disagreements) - n_miss}",
            f"misses={n_miss}",
        ]
        losers = {k: v for k, v in self.vote_losers.items() if v}
        if losers:
            parts.append("outvoted=" + ",".join(f"{k}:{v}" for k, v in sorted(losers.items())))
        for name, s in sorted(self.shadow.items()):
            parts.append(
                f"shadow {name}: {s.matched} matched/{s.missed} missed/{s.extra} extra/"
                f"{s.disagreeing} disagreeing"
            )
        return ", ".join(parts)


# ----------------------------------------------------------------------------- configuration
class CrosscheckConfig(BaseModel):
    """Cross-check thresholds: a loose association gate, a tighter agreement test, persistence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    association_probability: float = Field(default=0.9999, gt=0, lt=1)
    agreement_probability: float = Field(default=0.99, gt=0, lt=1)
    # consecutive steps before a disagreement, a miss or an outvote is reported
    persistence: int = Field(default=3, ge=1)
    fov_margin: float = Field(default=2.0, ge=0)  # m (ground) or px (image)
    fusion: Literal["ci"] = "ci"
    vote_on_existence: bool = True  # with 3+ covering channels, outvote ghosts and misses too
    # a channel is not blamed for missing an object hidden behind a nearer track of its own
    # (ground frame; tracks carry no size: the occluder is taken as a car, ``occluder_half_
    # width_m`` either side, the hidden object as a truck seen slightly off-axis, so that partly
    # hidden, and so less often detected, counts as hidden)
    occlusion: bool = True
    occluder_half_width_m: float = Field(default=0.9, gt=0)
    object_half_width_m: float = Field(default=1.5, gt=0)

    @model_validator(mode="after")
    def _tighter_agreement(self) -> CrosscheckConfig:
        if self.agreement_probability > self.association_probability:
            raise ValueError(
                "agreement_probability must not exceed association_probability "
                "(the agreement test is the tighter one)"
            )
        return self

    @property
    def association_gate(self) -> float:
        """χ²₂ bound on d² for two tracks to be considered the same object."""
        return float(chi2.ppf(self.association_probability, 2))

    @property
    def agreement_threshold(self) -> float:
        """χ²₂ bound on d² for two estimates of one object to agree."""
        return float(chi2.ppf(self.agreement_probability, 2))


# ----------------------------------------------------------------------------- 2×2 linear algebra
def _d2(
    dx: FloatArray, dy: FloatArray, s00: FloatArray, s01: FloatArray, s10: FloatArray,
    s11: FloatArray,
) -> FloatArray:
    """Squared Mahalanobis distance from components; +inf where S is not positive definite."""
    det = s00 * s11 - s01 * s10
    num = s11 * dx * dx - (s01 + s10) * dx * dy + s00 * dy * dy
    ok = (det > 0) & (s00 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(ok, num / np.where(ok, det, 1.0), np.inf))


def mahalanobis2(diff: FloatArray, S: FloatArray) -> FloatArray:
    """Squared Mahalanobis distance dᵀ S⁻¹ d for stacked 2-vectors and 2×2 covariances.

    Non-positive-definite S gives +inf (never associated, never agreeing).
    """
    return _d2(diff[..., 0], diff[..., 1], S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1])


def covariance_intersection(
    xa: FloatArray, Pa: FloatArray, xb: FloatArray, Pb: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Covariance intersection of stacked 2-D estimates, ω minimising the fused trace (exact).

    P⁻¹ = ω Pa⁻¹ + (1 − ω) Pb⁻¹, x = P (ω Pa⁻¹ xa + (1 − ω) Pb⁻¹ xb). Consistent whatever the
    (unknown) correlation of the two errors. For 2×2, tr(M⁻¹) = tr(M)/det(M) with M linear in ω,
    so the optimum is a root of a quadratic or an end point: no iteration. Works on the three
    components of the (symmetrised) matrices as flat arrays.
    Returns (x (N, 2), P (N, 2, 2), ω (N,)).
    """
    return _ci_kernel(np.asarray(xa, dtype=np.float64), np.asarray(Pa, dtype=np.float64),
                      np.asarray(xb, dtype=np.float64), np.asarray(Pb, dtype=np.float64))


def moment_match(X: FloatArray, P: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Disagreeing estimates as one Gaussian: centred on the most certain member's estimate, with
    a covariance that covers every member (their covariances plus their spread about it).

    Never a point between them: a midpoint is where no channel saw anything (with a car 5 m to
    one side and a noisy estimate to the other, the midpoint misses both). The spread keeps the
    output from claiming more certainty than the channels jointly justify.
    X (N, K, 2), P (N, K, 2, 2), mask (N, K) with at least one True per row.
    """
    return _moment_match_kernel(np.asarray(X, dtype=np.float64), np.asarray(P, dtype=np.float64),
                                np.asarray(mask, dtype=np.bool_))


# ----------------------------------------------------------------------------- geometry
#: an occluder is at least this much nearer than what it hides: one vehicle behind another is
#: a car length further away; closer in range they are side by side, or the same object as two
#: channels (or a biased channel) place it
_MIN_GAP_M = 3.0


def hidden_behind(points: FloatArray, occluders: FloatArray, half_width_m: float,
                  occluder_half_width_m: float | None = None) -> BoolArray:
    """(N,) mask: ground point n (ego frame, sensor at the origin) lies behind a nearer occluder.

    A point spans bearing ± atan(``half_width_m`` / range), an occluder ± atan(
    ``occluder_half_width_m`` (default the same) / range); a point is hidden when its span
    overlaps the span of an occluder at least ``_MIN_GAP_M`` nearer. Vectorised over pairs.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    o = np.asarray(occluders, dtype=np.float64).reshape(-1, 2)
    if p.shape[0] == 0 or o.shape[0] == 0:
        return np.zeros(p.shape[0], dtype=bool)
    occ_hw = half_width_m if occluder_half_width_m is None else occluder_half_width_m
    return _hidden_kernel(p, o, float(half_width_m), float(occ_hw))


def fov_masks(fovs: Sequence[FieldOfView], points: FloatArray, margins: Sequence[float]
              ) -> BoolArray:
    """(N, F, M) mask: point n inside field of view f shrunk by margin m (grown if negative).

    Same decisions as ``FieldOfView.contains`` for every (fov, margin), but range and azimuth are
    computed once for all sector fields of view and compared in one broadcast.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((p.shape[0], len(fovs), len(margins)), dtype=bool)
    if p.shape[0] == 0 or not fovs:
        return out
    m = np.asarray(margins, dtype=np.float64)
    sector = [k for k, f in enumerate(fovs) if f.image_width is None or f.image_height is None]
    if sector:
        lim = np.concatenate([fovs[k].sector_limits for k in sector])
        out[:, sector, :] = sector_masks(p, lim, m)
    for k, f in enumerate(fovs):
        if k not in sector:
            for j, mj in enumerate(m.tolist()):
                out[:, k, j] = f.contains(p, mj)
    return out


# ----------------------------------------------------------------------------- association
def gated_pairs(
    pa: FloatArray, Pa: FloatArray, pb: FloatArray, Pb: FloatArray, gate: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """All pairs (i, j) with d²(a_i, b_j) ≤ ``gate`` (combined covariance Pa + Pb), sparse.

    Since d² ≥ |Δ|² / λ_max(S) ≥ |Δ|² / tr(S), only pairs with |Δx| ≤ sqrt(gate · tr(S)) can
    pass: candidates come from a sort on x and a binary search, then are tested exactly. Cost
    grows with the number of near pairs, not with Na · Nb.
    """
    if pa.shape[0] == 0 or pb.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return _gated_pairs_kernel(pa, Pa, pb, Pb, float(gate))


def assign_sparse(
    i: IntArray, j: IntArray, d2: FloatArray, gate: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """Hungarian assignment over the feasible pairs (i, j, d² ≤ gate) only.

    The optimum decomposes over connected components of the feasible bipartite graph; a pair
    whose row and column have no other feasible pair is matched as is, and the Hungarian runs on
    the rows and columns left. Maximises the number of matches first, then minimises Σ d².
    Returns the matched (i, j, d²), sorted by i.
    """
    return _assign_kernel(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64),
                          np.asarray(d2, dtype=np.float64), float(gate))


def components(n: int, u: IntArray, v: IntArray) -> IntArray:
    """Connected-component label of each of ``n`` nodes given undirected edges (u, v).

    Labels are numbered in order of each component's lowest node (as scipy's
    ``connected_components`` numbers them). Min-label propagation with pointer jumping.
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    if u.shape != v.shape or (u.size and min(u.min(), v.min()) < 0) or (
            u.size and max(u.max(), v.max()) >= n):
        raise IndexError(f"edges must join nodes 0..{n - 1} in pairs")
    return _components_kernel(int(n), u, v)


def _split_conflicts(
    comp: IntArray, node_ch: IntArray, n_ch: int, eu: IntArray, ev: IntArray, ew: FloatArray
) -> IntArray:
    """Split the (rare) clusters holding two tracks of one channel: constrained Kruskal on d²."""
    key = comp * n_ch + node_ch
    uniq, counts = np.unique(key, return_counts=True)
    bad = np.unique(uniq[counts > 1] // n_ch)
    if bad.size == 0:
        return comp
    in_bad = np.isin(comp, bad)
    nodes = np.flatnonzero(in_bad)
    parent = {int(n): int(n) for n in nodes}
    chans = {int(n): {int(node_ch[n])} for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    sel = np.flatnonzero(in_bad[eu])
    for e in sel[np.argsort(ew[sel], kind="stable")]:
        ra, rb = root(int(eu[e])), root(int(ev[e]))
        if ra != rb and not (chans[ra] & chans[rb]):
            parent[rb] = ra
            chans[ra] |= chans.pop(rb)
    out = comp.copy()
    base = int(comp.max()) + 1
    for n in nodes:
        out[n] = base + root(int(n))
    return np.unique(out, return_inverse=True)[1].astype(np.int64)


# ----------------------------------------------------------------------------- compiled kernels
# Per step the cross-check runs on tens of rows, where numpy's cost is its call count, not its
# arithmetic; these kernels do the pair search, the components and the fusion in one call each
# (perception.kernels explains the conventions: eager signatures, on-disk cache, IEEE-exact).
_I64 = nb.int64[::1]
_B2 = nb.bool_[:, ::1]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _d2_scalar(dx, dy, s00, s01, s10, s11):  # pragma: no cover - compiled
    """d² = dᵀ S⁻¹ d for one pair (components as :func:`_d2`); +inf where S is not PD."""
    det = s00 * s11 - s01 * s10
    if det > 0 and s00 > 0:
        return (s11 * dx * dx - (s01 + s10) * dx * dy + s00 * dy * dy) / det
    return np.inf


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _gated(pa, Pa, pb, Pb, gate):  # pragma: no cover - compiled
    """The pairs (i, j, d²) with d² ≤ ``gate``, i ascending, then j in order of b's x."""
    na, nb_ = pa.shape[0], pb.shape[0]
    trb_max = -np.inf
    for j in range(nb_):
        trb_max = np.maximum(trb_max, Pb[j, 0, 0] + Pb[j, 1, 1])
    order = np.argsort(pb[:, 0], kind="mergesort")
    xs = np.empty(nb_)
    for k in range(nb_):
        xs[k] = pb[order[k], 0]
    lo = np.empty(na, np.int64)
    hi = np.empty(na, np.int64)
    total = 0
    for i in range(na):
        bound = gate * ((Pa[i, 0, 0] + Pa[i, 1, 1]) + trb_max)
        reach = np.sqrt(bound) if bound > 0 else np.inf
        lo[i] = np.searchsorted(xs, pa[i, 0] - reach, side="left")
        hi[i] = np.searchsorted(xs, pa[i, 0] + reach, side="right")
        total += max(hi[i] - lo[i], 0)
    oi = np.empty(total, np.int64)
    oj = np.empty(total, np.int64)
    od = np.empty(total)
    n = 0
    for i in range(na):
        for k in range(lo[i], hi[i]):
            j = order[k]
            d2 = _d2_scalar(pa[i, 0] - pb[j, 0], pa[i, 1] - pb[j, 1], Pa[i, 0, 0] + Pb[j, 0, 0],
                            Pa[i, 0, 1] + Pb[j, 0, 1], Pa[i, 1, 0] + Pb[j, 1, 0],
                            Pa[i, 1, 1] + Pb[j, 1, 1])
            if d2 <= gate:
                oi[n], oj[n], od[n] = i, j, d2
                n += 1
    return oi[:n], oj[:n], od[:n]


@compiled(nb.types.Tuple((_I64, _I64, F1))(IN2, IN3, IN2, IN3, nb.float64))
def _gated_pairs_kernel(pa, Pa, pb, Pb, gate):  # pragma: no cover - compiled
    """:func:`gated_pairs` in one pass: sort b on x, binary-search each a's reach, test exactly."""
    i, j, d2 = _gated(pa, Pa, pb, Pb, gate)
    return i.copy(), j.copy(), d2.copy()


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _lsap(cost):  # pragma: no cover - compiled
    """Minimum-cost assignment of every row of ``cost`` (rows ≤ columns, finite): the shortest
    augmenting path method (Crouse 2016), the one scipy's ``linear_sum_assignment`` uses, with
    its tie-breaking. Returns the column of each row."""
    nr, nc = cost.shape
    u = np.zeros(nr)
    v = np.zeros(nc)
    shortest = np.empty(nc)
    path = np.full(nc, -1, np.int64)
    col4row = np.full(nr, -1, np.int64)
    row4col = np.full(nc, -1, np.int64)
    sr = np.zeros(nr, np.bool_)
    sc = np.zeros(nc, np.bool_)
    remaining = np.empty(nc, np.int64)
    for cur in range(nr):
        min_val = 0.0
        n_rem = nc
        for it in range(nc):
            remaining[it] = nc - it - 1
        sr[:] = False
        sc[:] = False
        shortest[:] = np.inf
        sink = -1
        i = cur
        while sink == -1:
            index = -1
            lowest = np.inf
            sr[i] = True
            for it in range(n_rem):
                j = remaining[it]
                r = min_val + cost[i, j] - u[i] - v[j]
                if r < shortest[j]:
                    path[j] = i
                    shortest[j] = r
                if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                    lowest = shortest[j]
                    index = it
            min_val = lowest
            j = remaining[index]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            sc[j] = True
            n_rem -= 1
            remaining[index] = remaining[n_rem]
        u[cur] += min_val
        for i in range(nr):
            if sr[i] and i != cur:
                u[i] += min_val - shortest[col4row[i]]
        for j in range(nc):
            if sc[j]:
                v[j] -= min_val - shortest[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            nxt = col4row[i]
            col4row[i] = j
            j = nxt
            if i == cur:
                break
    return col4row


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _number_marked(index):  # pragma: no cover - compiled
    """Entries marked ≥ 0 get 0, 1, 2, … in order; the others stay -1."""
    k = 0
    for r in range(index.shape[0]):
        if index[r] >= 0:
            index[r] = k
            k += 1


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _assign(i, j, d2, gate):  # pragma: no cover - compiled
    """:func:`assign_sparse`: isolated pairs matched as they are, the Hungarian (:func:`_lsap`)
    on the rows and columns left; matched (i, j, d²) sorted by i."""
    m = i.shape[0]
    ni = 0
    nj = 0
    for e in range(m):
        ni = max(ni, i[e] + 1)
        nj = max(nj, j[e] + 1)
    rdeg = np.zeros(ni, np.int64)
    cdeg = np.zeros(nj, np.int64)
    for e in range(m):
        rdeg[i[e]] += 1
        cdeg[j[e]] += 1
    match = np.full(ni, -1, np.int64)  # row → its matched edge
    rrow = np.full(ni, -1, np.int64)  # row / column → its index in the dense sub-problem
    rcol = np.full(nj, -1, np.int64)
    nr = 0
    ncol = 0
    for e in range(m):
        if rdeg[i[e]] == 1 and cdeg[j[e]] == 1:
            match[i[e]] = e
        else:
            if rrow[i[e]] < 0:
                rrow[i[e]] = 0
                nr += 1
            if rcol[j[e]] < 0:
                rcol[j[e]] = 0
                ncol += 1
    if nr:
        _number_marked(rrow)  # ascending, as np.unique numbers them
        _number_marked(rcol)
        big = gate * (min(nr, ncol) + 1) + 1.0
        flip = nr > ncol
        sub = np.full((ncol, nr) if flip else (nr, ncol), big)
        edge = np.full((ncol, nr) if flip else (nr, ncol), -1, np.int64)
        for e in range(m):
            if rdeg[i[e]] == 1 and cdeg[j[e]] == 1:
                continue
            a, b = rrow[i[e]], rcol[j[e]]
            if flip:
                a, b = b, a
            sub[a, b] = d2[e]
            edge[a, b] = e
        c4r = _lsap(sub)
        for a in range(c4r.shape[0]):
            e = edge[a, c4r[a]]
            if e >= 0 and sub[a, c4r[a]] < big:
                match[i[e]] = e
    n = 0
    for r in range(ni):
        if match[r] >= 0:
            n += 1
    mi = np.empty(n, np.int64)
    mj = np.empty(n, np.int64)
    md = np.empty(n)
    n = 0
    for r in range(ni):
        e = match[r]
        if e >= 0:
            mi[n], mj[n], md[n] = i[e], j[e], d2[e]
            n += 1
    return mi, mj, md


@compiled(nb.types.Tuple((_I64, _I64, F1))(IIN1, IIN1, IN1, nb.float64))
def _assign_kernel(i, j, d2, gate):  # pragma: no cover - compiled
    """:func:`assign_sparse` in one call."""
    return _assign(i, j, d2, gate)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _associate(pos, cov, offsets, grown, gate, agree):  # pragma: no cover - compiled
    """Every channel pair of a frame group in one call (nodes are all tracks, channel by
    channel, ``offsets`` where each channel starts): gated pairs, the one-to-one assignment of
    those inside both fields of view, and per node whether another channel has a track inside
    its gate (``near``) and one that also agrees (``close``).
    Returns the assigned edges (u, v, d², pair number in (0, 1), (0, 2), … order) and near, close.
    """
    n_ch = offsets.shape[0] - 1
    n = pos.shape[0]
    near = np.zeros((n, n_ch), np.bool_)
    close = np.zeros((n, n_ch), np.bool_)
    cap = 0
    for a in range(n_ch):
        for b in range(a + 1, n_ch):
            cap += min(offsets[a + 1] - offsets[a], offsets[b + 1] - offsets[b])
    eu = np.empty(cap, np.int64)
    ev = np.empty(cap, np.int64)
    ew = np.empty(cap)
    ep = np.empty(cap, np.int64)
    ne = 0
    pair = 0
    for a in range(n_ch):
        a0, a1 = offsets[a], offsets[a + 1]
        for b in range(a + 1, n_ch):
            b0, b1 = offsets[b], offsets[b + 1]
            if a1 > a0 and b1 > b0:
                ia, ib, d2 = _gated(pos[a0:a1], cov[a0:a1], pos[b0:b1], cov[b0:b1], gate)
                keep = np.zeros(ia.shape[0], np.bool_)
                for e in range(ia.shape[0]):
                    ga, gb = a0 + ia[e], b0 + ib[e]
                    near[ga, b] = True
                    near[gb, a] = True
                    if d2[e] <= agree:
                        close[ga, b] = True
                        close[gb, a] = True
                    keep[e] = grown[ga, b] and grown[gb, a]
                ra, rb, dd = _assign(ia[keep], ib[keep], d2[keep], gate)
                for e in range(ra.shape[0]):
                    eu[ne], ev[ne], ew[ne], ep[ne] = a0 + ra[e], b0 + rb[e], dd[e], pair
                    ne += 1
            pair += 1
    return eu[:ne].copy(), ev[:ne].copy(), ew[:ne].copy(), ep[:ne].copy(), near, close


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _components(n, u, v):  # pragma: no cover - compiled
    """:func:`components`: union-find, then labels numbered by each component's lowest node."""
    parent = np.arange(n)
    for e in range(u.shape[0]):
        a, b = u[e], v[e]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    lab = np.empty(n, np.int64)
    count = 0
    for k in range(n):  # a root is its component's lowest node (unions keep the smaller root)
        r = k
        while parent[r] != r:
            r = parent[r]
        if r == k:
            lab[k] = count
            count += 1
        else:
            lab[k] = lab[r]
    return lab


@compiled(_I64(nb.int64, IIN1, IIN1))
def _components_kernel(n, u, v):  # pragma: no cover - compiled
    """:func:`components` in one call."""
    return _components(n, u, v)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _ci_pair(xa0, xa1, pa00, pa01, pa11, xb0, xb1, pb00, pb01, pb11):  # pragma: no cover
    """Covariance intersection of two 2-D estimates (symmetrised covariances), ω minimising the
    fused trace exactly (:func:`covariance_intersection` explains the algebra).
    Returns (x0, x1, p00, p01, p11, ω)."""
    ia = 1.0 / (pa00 * pa11 - pa01 * pa01)
    ib = 1.0 / (pb00 * pb11 - pb01 * pb01)
    a00, a01, a11 = pa11 * ia, -pa01 * ia, pa00 * ia
    b00, b01, b11 = pb11 * ib, -pb01 * ib, pb00 * ib
    e00, e01, e11 = a00 - b00, a01 - b01, a11 - b11
    t0 = b00 + b11
    t1 = e00 + e11
    d0 = b00 * b11 - b01 * b01
    d1 = b00 * e11 + b11 * e00 - 2.0 * b01 * e01
    d2 = e00 * e11 - e01 * e01
    qa = t1 * d2
    qb = 2.0 * t0 * d2
    qc = t0 * d1 - t1 * d0
    disc = np.sqrt(qb * qb - 4.0 * qa * qc)
    if np.abs(qa) > 1e-12 * (np.abs(qb) + np.abs(qc) + 1e-300):
        r1 = (-qb + disc) / (2.0 * qa)
        r2 = (-qb - disc) / (2.0 * qa)
    else:
        r1 = r2 = -qc / qb
    best = t0 / d0 if d0 > 0 else np.inf
    omega = 0.0
    det = d0 + (d1 + d2)
    f = (t0 + t1) / det if det > 0 else np.inf
    if f < best:
        best, omega = f, 1.0
    for w in (r1, r2):
        w = 0.0 if np.isnan(w) else min(max(w, 0.0), 1.0)
        det = d0 + (d1 + d2 * w) * w
        f = (t0 + t1 * w) / det if det > 0 else np.inf
        if f < best:
            best, omega = f, w
    m00, m01, m11 = b00 + omega * e00, b01 + omega * e01, b11 + omega * e11
    im = 1.0 / (m00 * m11 - m01 * m01)
    p00, p01, p11 = m11 * im, -m01 * im, m00 * im
    w1 = 1.0 - omega
    i0 = omega * (a00 * xa0 + a01 * xa1) + w1 * (b00 * xb0 + b01 * xb1)
    i1 = omega * (a01 * xa0 + a11 * xa1) + w1 * (b01 * xb0 + b11 * xb1)
    return p00 * i0 + p01 * i1, p01 * i0 + p11 * i1, p00, p01, p11, omega


@compiled(nb.types.Tuple((F2, F3, F1))(IN2, IN3, IN2, IN3))
def _ci_kernel(xa, Pa, xb, Pb):  # pragma: no cover - compiled
    """:func:`covariance_intersection` row by row."""
    n = xa.shape[0]
    x = np.empty((n, 2))
    P = np.empty((n, 2, 2))
    om = np.empty(n)
    for r in range(n):
        x[r, 0], x[r, 1], p00, p01, p11, om[r] = _ci_pair(
            xa[r, 0], xa[r, 1], Pa[r, 0, 0], 0.5 * (Pa[r, 0, 1] + Pa[r, 1, 0]), Pa[r, 1, 1],
            xb[r, 0], xb[r, 1], Pb[r, 0, 0], 0.5 * (Pb[r, 0, 1] + Pb[r, 1, 0]), Pb[r, 1, 1])
        P[r, 0, 0], P[r, 0, 1], P[r, 1, 0], P[r, 1, 1] = p00, p01, p01, p11
    return x, P, om


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _moment_match_row(X, P, mask, r, mean, cov, o):  # pragma: no cover - compiled
    """:func:`moment_match` for row ``r`` of X (N, K, 2), P (N, K, 2, 2), mask (N, K), into
    ``mean[o]`` and ``cov[o]``."""
    K = X.shape[1]
    cnt = 0.0
    best, tbest = 0, np.inf
    for k in range(K):
        if mask[r, k]:
            cnt += 1.0
            tr = P[r, k, 0, 0] + P[r, k, 1, 1]
            if tr < tbest:
                best, tbest = k, tr
    w = 1.0 / max(cnt, 1.0)
    m0, m1 = X[r, best, 0], X[r, best, 1]
    mean[o, 0], mean[o, 1] = m0, m1
    c00 = c01 = c10 = c11 = 0.0
    for k in range(K):
        if mask[r, k]:
            c00 += w * P[r, k, 0, 0]
            c01 += w * P[r, k, 0, 1]
            c10 += w * P[r, k, 1, 0]
            c11 += w * P[r, k, 1, 1]
    s00 = s01 = s11 = 0.0
    for k in range(K):
        if mask[r, k]:
            d0, d1 = X[r, k, 0] - m0, X[r, k, 1] - m1
            s00 += w * d0 * d0
            s01 += w * d0 * d1
            s11 += w * d1 * d1
    cov[o, 0, 0], cov[o, 0, 1] = c00 + s00, c01 + s01
    cov[o, 1, 0], cov[o, 1, 1] = c10 + s01, c11 + s11


_IN4 = nb.types.Array(nb.float64, 4, "A", readonly=True)


@compiled(nb.types.Tuple((F2, F3))(IN3, _IN4, BIN2))
def _moment_match_kernel(X, P, mask):  # pragma: no cover - compiled
    """:func:`moment_match` row by row."""
    n = X.shape[0]
    mean = np.zeros((n, 2))
    cov = np.zeros((n, 2, 2))
    for r in range(n):
        _moment_match_row(X, P, mask, r, mean, cov, r)
    return mean, cov


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _fuse_row(X, P, included, r, all_agree, pos, cov, o):  # pragma: no cover - compiled
    """Row ``r``'s fused estimate into ``pos[o]``, ``cov[o]``: the included members by CI in
    channel order where they all agree, moment-matched where they do not, zero if none."""
    if not all_agree:
        _moment_match_row(X, P, included, r, pos, cov, o)
        return
    have = False
    x0 = x1 = p00 = p01 = p10 = p11 = 0.0
    for k in range(included.shape[1]):
        if not included[r, k]:
            continue
        if not have:
            x0, x1 = X[r, k, 0], X[r, k, 1]
            p00, p01, p10, p11 = P[r, k, 0, 0], P[r, k, 0, 1], P[r, k, 1, 0], P[r, k, 1, 1]
            have = True
        else:
            x0, x1, p00, p01, p11, _ = _ci_pair(
                x0, x1, p00, 0.5 * (p01 + p10), p11, X[r, k, 0], X[r, k, 1],
                P[r, k, 0, 0], 0.5 * (P[r, k, 0, 1] + P[r, k, 1, 0]), P[r, k, 1, 1])
            p10 = p01
    pos[o, 0], pos[o, 1] = x0, x1
    cov[o, 0, 0], cov[o, 0, 1], cov[o, 1, 0], cov[o, 1, 1] = p00, p01, p10, p11


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _hidden(p, o, use, half_width_m, occ_hw):  # pragma: no cover - compiled
    """:func:`hidden_behind` over the (point, occluder) pairs with ``use[k]`` set: occluders in
    order of range, up to the first one not nearer than the point by the gap, stopping at the
    first that hides it."""
    n, m = p.shape[0], o.shape[0]
    out = np.zeros(n, np.bool_)
    ro = np.empty(m)
    ho = np.empty(m)
    bo = np.empty(m)
    for k in range(m):
        ro[k] = np.hypot(o[k, 0], o[k, 1])
        ho[k] = np.arctan2(occ_hw, np.maximum(ro[k], 1e-6))
        bo[k] = np.arctan2(o[k, 1], o[k, 0])
    order = np.argsort(ro)  # nearest first: stop at the first occluder not nearer (NaN last)
    for i in range(n):
        rp = np.hypot(p[i, 0], p[i, 1])
        hp = np.arctan2(half_width_m, np.maximum(rp, 1e-6))
        bp = np.arctan2(p[i, 1], p[i, 0])
        for k in order:
            if not ro[k] < rp - _MIN_GAP_M:
                break
            if not use[k]:
                continue
            gap = np.abs(bp - bo[k])
            gap = np.minimum(gap, 2.0 * np.pi - gap)
            if gap < hp + ho[k]:
                out[i] = True
                break
    return out


@compiled(nb.bool_[::1](IN2, IN2, nb.float64, nb.float64))
def _hidden_kernel(p, o, half_width_m, occ_hw):  # pragma: no cover - compiled
    """:func:`hidden_behind`: every occluder counts."""
    return _hidden(p, o, np.ones(o.shape[0], np.bool_), half_width_m, occ_hw)


@compiled(nb.bool_[::1](IN2, BIN1, nb.float64, nb.float64))
def hidden_among(points, occluders, half_width_m, occ_half_width_m):  # pragma: no cover
    """(N,) mask: point n lies behind a nearer point of the same set that ``occluders`` selects
    (:func:`hidden_behind` with the occluders given as a mask over ``points``, no copy)."""
    return _hidden(points, points, occluders, half_width_m, occ_half_width_m)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _objects(comp, n_obj, node_ch, n_ch, pos, cov, ids, trust, agree, vel, has_vel,
             u, v, w, shrunk, near):  # pragma: no cover - compiled
    """Objects of a frame group from its components, in one call: members, the pairwise
    agreement test, the majority vote on the estimate (3+ members), which members enter the
    fused estimate, corroboration, the fusion (:func:`_fuse_row`), the most certain
    included member, the mean velocity of the included members, the assigned edges to report
    as disagreements, and the misses (a track well inside another channel's field of view that
    has nothing in its gate). ``conflict`` is True (and nothing else is valid) when a component
    holds two tracks of one channel: the caller splits it and calls again.
    Returns node_of, tids, included, est_loser, major, corroborated, pos, cov, best_node,
    velocity, miss, disagreeing edges, conflict."""
    n = comp.shape[0]
    node_of = np.full((n_obj, n_ch), -1, np.int64)
    tids = np.full((n_obj, n_ch), -1, np.int64)
    included = np.zeros((n_obj, n_ch), np.bool_)
    est_loser = np.zeros((n_obj, n_ch), np.bool_)
    major = np.zeros((n_obj, n_ch), np.bool_)
    corroborated = np.zeros(n_obj, np.bool_)
    fpos = np.zeros((n_obj, 2))
    fcov = np.zeros((n_obj, 2, 2))
    best_node = np.full(n_obj, -1, np.int64)
    fvel = np.zeros((n_obj, 2))
    miss = np.zeros((n, n_ch), np.bool_)
    for k in range(n):
        o, c = comp[k], node_ch[k]
        if node_of[o, c] >= 0:
            return (node_of, tids, included, est_loser, major, corroborated, fpos, fcov,
                    best_node, fvel, miss, np.zeros(0, np.int64), True)
        node_of[o, c] = k
        tids[o, c] = ids[k]
    X = np.zeros((1, n_ch, 2))
    P = np.zeros((1, n_ch, 2, 2))
    inc = np.zeros((1, n_ch), np.bool_)
    ag = np.zeros((n_ch, n_ch), np.bool_)
    in_major = np.zeros(n_ch, np.bool_)
    for o in range(n_obj):
        kk = 0
        for c in range(n_ch):
            m = node_of[o, c]
            if m >= 0:
                kk += 1
                X[0, c, 0], X[0, c, 1] = pos[m, 0], pos[m, 1]
                P[0, c, 0, 0], P[0, c, 0, 1] = cov[m, 0, 0], cov[m, 0, 1]
                P[0, c, 1, 0], P[0, c, 1, 1] = cov[m, 1, 0], cov[m, 1, 1]
        # pairwise agreement of present members
        for c in range(n_ch):
            ag[c, c] = False
            for d in range(c + 1, n_ch):
                ok = False
                if node_of[o, c] >= 0 and node_of[o, d] >= 0:
                    ok = _d2_scalar(X[0, c, 0] - X[0, d, 0], X[0, c, 1] - X[0, d, 1],
                                    P[0, c, 0, 0] + P[0, d, 0, 0], P[0, c, 0, 1] + P[0, d, 0, 1],
                                    P[0, c, 1, 0] + P[0, d, 1, 0],
                                    P[0, c, 1, 1] + P[0, d, 1, 1]) <= agree
                ag[c, d] = ag[d, c] = ok
        # majority vote on the estimate: members agreeing with at least half of the others
        n_major = 0
        for c in range(n_ch):
            support = 0
            for d in range(n_ch):
                support += ag[c, d]
            in_major[c] = node_of[o, c] >= 0 and support >= kk // 2
            n_major += in_major[c]
        voted = kk >= 3 and 2 * n_major > kk
        any_inc = False
        for c in range(n_ch):
            present = node_of[o, c] >= 0
            est_loser[o, c] = voted and present and not in_major[c]
            major[o, c] = voted and in_major[c]
            inc[0, c] = (in_major[c] if voted else present) and trust[c]
            any_inc = any_inc or inc[0, c]
        if not any_inc:  # the vote went with excluded channels: fuse the trusted members
            for c in range(n_ch):
                inc[0, c] = node_of[o, c] >= 0 and trust[c]
        n_inc = 0
        all_agree = True
        for c in range(n_ch):
            included[o, c] = inc[0, c]
            n_inc += inc[0, c]
            for d in range(c + 1, n_ch):
                if inc[0, c] and inc[0, d] and not ag[c, d]:
                    all_agree = False
        corroborated[o] = n_inc >= 2 and all_agree
        _fuse_row(X, P, inc, 0, all_agree, fpos, fcov, o)
        # most certain included member (the first of equals); velocity: included members' mean
        tbest = np.inf
        for c in range(n_ch):
            if inc[0, c]:
                tr = P[0, c, 0, 0] + P[0, c, 1, 1]
                if tr < tbest or best_node[o] < 0:
                    tbest = tr
                    best_node[o] = node_of[o, c]
        if has_vel:
            v0 = v1 = 0.0
            for c in range(n_ch):
                if inc[0, c]:
                    m = node_of[o, c]
                    v0 += vel[m, 0]
                    v1 += vel[m, 1]
            den = max(float(n_inc), 1.0)
            fvel[o, 0], fvel[o, 1] = v0 / den, v1 / den
    # disagreements: assigned edges failing the agreement test, both channels trusted, not kept
    # together in the majority by the vote
    n_bad = 0
    bad = np.empty(u.shape[0], np.int64)
    for e in range(u.shape[0]):
        a, b = u[e], v[e]
        ca, cb = node_ch[a], node_ch[b]
        if (w[e] > agree and trust[ca] and trust[cb]
                and not (major[comp[a], ca] and major[comp[b], cb])):
            bad[n_bad] = e
            n_bad += 1
    for k in range(n):
        if not trust[node_ch[k]]:
            continue
        for c in range(n_ch):
            miss[k, c] = node_of[comp[k], c] < 0 and shrunk[k, c] and not near[k, c]
    return (node_of, tids, included, est_loser, major, corroborated, fpos, fcov, best_node,
            fvel, miss, bad[:n_bad].copy(), False)


@compiled(nb.types.Tuple((
    nb.int64[:, ::1], nb.int64[:, ::1], _B2, _B2, _B2, nb.bool_[::1], F2, F3, _I64, F2, _B2,
    _I64, nb.boolean,
))(IIN1, nb.int64, IIN1, nb.int64, IN2, IN3, IIN1, BIN1, nb.float64, IN2, nb.boolean, IIN1,
   IIN1, IN1, BIN2, BIN2))
def _objects_kernel(comp, n_obj, node_ch, n_ch, pos, cov, ids, trust, agree, vel, has_vel,
                    u, v, w, shrunk, near):  # pragma: no cover - compiled
    """:func:`_objects` in one call (for components the caller split)."""
    return _objects(comp, n_obj, node_ch, n_ch, pos, cov, ids, trust, agree, vel, has_vel,
                    u, v, w, shrunk, near)


_B3 = nb.types.Array(nb.bool_, 3, "A", readonly=True)


@compiled(nb.types.Tuple((
    _I64, _I64, F1, _I64, F2, F3, _I64, _B2, _B2, _I64, nb.int64[:, ::1], nb.int64[:, ::1], _B2,
    _B2, nb.bool_[::1], F2, F3, _I64, F2, _B2, _I64, nb.boolean,
))(IN2, IN3, IIN1, IIN1, IN2, nb.boolean, IIN1, _B3, BIN1, nb.float64, nb.float64))
def _group_kernel(pos, cov, ids, labels, vel, has_vel, offsets, inside, trust, gate,
                  agree):  # pragma: no cover - compiled
    """A frame group in one call: :func:`_associate` every channel pair (``inside``: each track
    against each channel's field of view, grown and shrunk by the margin), the residuals of the
    assigned pairs (and where each pair's start), the :func:`_components`, and the
    :func:`_objects`. Returns u, v, d², node channel, residuals, their covariances, pair bounds,
    close, near, components, then what :func:`_objects` returns (but ``major``, and each
    object's label, that of its most certain included member, instead of that member)."""
    n = pos.shape[0]
    n_ch = offsets.shape[0] - 1
    node_ch = np.empty(n, np.int64)
    for c in range(n_ch):
        node_ch[offsets[c]:offsets[c + 1]] = c
    grown = inside[:, :, 0]
    shrunk = inside[:, :, 1]
    u, v, w, ep, near, close = _associate(pos, cov, offsets, grown, gate, agree)
    ne = u.shape[0]
    res = np.empty((ne, 2))
    rcov = np.empty((ne, 2, 2))
    for e in range(ne):
        a, b = u[e], v[e]
        res[e, 0], res[e, 1] = pos[a, 0] - pos[b, 0], pos[a, 1] - pos[b, 1]
        for i in range(2):
            for j in range(2):
                rcov[e, i, j] = cov[a, i, j] + cov[b, i, j]
    n_pairs = n_ch * (n_ch - 1) // 2
    bounds = np.zeros(n_pairs + 1, np.int64)
    for e in range(ne):
        bounds[ep[e] + 1] += 1
    for p in range(n_pairs):
        bounds[p + 1] += bounds[p]
    comp = _components(n, u, v)
    n_obj = 0
    for k in range(n):
        n_obj = max(n_obj, comp[k] + 1)
    (node_of, tids, included, est_loser, _major, corroborated, fpos, fcov, best_node, fvel, miss,
     bad, conflict) = _objects(comp, n_obj, node_ch, n_ch, pos, cov, ids, trust, agree, vel,
                               has_vel, u, v, w, shrunk, near)
    obj_labels = np.zeros(n_obj, np.int64)
    for o in range(n_obj):
        if best_node[o] >= 0:
            obj_labels[o] = labels[best_node[o]]
    return (u, v, w, node_ch, res, rcov, bounds, close, near, comp, node_of, tids, included,
            est_loser, corroborated, fpos, fcov, obj_labels, fvel, miss, bad, conflict)


@compiled(_B2(BIN2, BIN2, BIN2, IIN1))
def _existence_vote(present, can_see, close, comp):  # pragma: no cover - compiled
    """(n_obj, n_ch) the members and absentees the existence vote contradicts. Voters are the
    channels that can see the object (3 or more for a vote); a voter sees it when it has a
    member or a track agreeing with one (a duplicate, or matched to a neighbour). A majority
    that sees it outvotes the voters that do not; a majority that does not, the members."""
    n_obj, n_ch = present.shape
    seen = np.zeros((n_obj, n_ch), np.bool_)
    for k in range(comp.shape[0]):
        for c in range(n_ch):
            if close[k, c]:
                seen[comp[k], c] = True
    lost = np.zeros((n_obj, n_ch), np.bool_)
    for o in range(n_obj):
        kk = n_vot = n_seen = 0
        for c in range(n_ch):
            seen[o, c] = present[o, c] or (seen[o, c] and can_see[o, c])
            kk += present[o, c]
            n_vot += can_see[o, c]
            n_seen += seen[o, c]
        if n_vot < 3:
            continue
        for c in range(n_ch):
            lost[o, c] = ((2 * kk > n_vot and can_see[o, c] and not seen[o, c])
                          or (2 * (n_vot - n_seen) > n_vot and present[o, c]))
    return lost


@compiled(nb.types.Tuple((_I64, nb.boolean))(IN2, IN3, IIN1))
def _confirmed_rows(pos, cov, status):  # pragma: no cover - compiled
    """Rows of confirmed or coasting tracks whose position and covariance are finite (a
    non-finite component makes their sum non-finite: inf − inf is NaN), and whether any kept
    covariance needs :func:`_psd`."""
    n = pos.shape[0]
    keep = np.empty(n, np.int64)
    m = 0
    bad = False
    floor = 1e-6
    for r in range(n):
        if status[r] != 1 and status[r] != 2:
            continue
        total = (pos[r, 0] + pos[r, 1]) + (((cov[r, 0, 0] + cov[r, 0, 1]) + cov[r, 1, 0])
                                           + cov[r, 1, 1])
        if not np.isfinite(total):
            continue
        keep[m] = r
        m += 1
        c01 = 0.5 * (cov[r, 0, 1] + cov[r, 1, 0])
        if (cov[r, 0, 0] <= floor or cov[r, 1, 1] <= floor
                or cov[r, 0, 0] * cov[r, 1, 1] - c01 * c01 <= floor * floor):
            bad = True
    return keep[:m].copy(), bad


_IIN2 = nb.types.Array(nb.int64, 2, "A", readonly=True)


@compiled(nb.types.Tuple((_I64, _I64, _I64, _I64, nb.int64))(_IIN2, IIN1, IIN1, IIN1, nb.int64))
def _object_ids_kernel(tids, keys, vals, off, next_id):  # pragma: no cover - compiled
    """:meth:`CrossChecker._object_ids`: each object inherits the oldest id any of its (channel,
    track) members carried last step (``keys``/``vals``: per channel, from ``off``, sorted track
    ids and their object ids); of objects claiming one id the first keeps it; the rest get new
    ids in order. Returns ids, this step's keys, vals, offsets, and the next free id."""
    n_obj, n_ch = tids.shape
    claimed = np.full(n_obj, -1, np.int64)
    for o in range(n_obj):
        for c in range(n_ch):
            q = tids[o, c]
            lo, hi = off[c], off[c + 1]
            if q < 0 or hi == lo:
                continue
            k = lo + np.searchsorted(keys[lo:hi], q)
            if k < hi and keys[k] == q and vals[k] >= 0 and (
                    claimed[o] < 0 or vals[k] < claimed[o]):
                claimed[o] = vals[k]
    orig = claimed.copy()
    order = np.argsort(orig, kind="mergesort")
    for k in range(1, n_obj):  # a split: the first cluster keeps the id
        a, b = order[k - 1], order[k]
        if orig[b] >= 0 and orig[b] == orig[a]:
            claimed[b] = -1
    for o in range(n_obj):
        if claimed[o] < 0:
            claimed[o] = next_id
            next_id += 1
    new_off = np.zeros(n_ch + 1, np.int64)
    for c in range(n_ch):
        cnt = 0
        for o in range(n_obj):
            cnt += tids[o, c] >= 0
        new_off[c + 1] = new_off[c] + cnt
    new_keys = np.empty(new_off[n_ch], np.int64)
    new_vals = np.empty(new_off[n_ch], np.int64)
    for c in range(n_ch):
        col = tids[:, c].copy()
        srt = np.argsort(col, kind="mergesort")
        k = new_off[c]
        for o in srt:
            if col[o] >= 0:
                new_keys[k], new_vals[k] = col[o], claimed[o]
                k += 1
    return claimed, new_keys, new_vals, new_off, next_id


# ----------------------------------------------------------------------------- internals
_NO_IDS = np.zeros(0, np.int64)
_NO_IDS.flags.writeable = False

@dataclass
class _Chan:
    """Confirmed, finite tracks of one channel this step."""

    name: str
    cfg: ChannelConfig
    ids: IntArray
    pos: FloatArray
    cov: FloatArray
    labels: IntArray
    vel: FloatArray | None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _confirmed(name: str, cfg: ChannelConfig, tr: Tracks) -> _Chan:
    pos = _f64(tr.position, 2)
    cov = _f64(tr.position_cov, 3)
    status = tr.status
    if not (isinstance(status, np.ndarray) and status.dtype == np.int64):
        status = np.asarray(status, dtype=np.int64)
    keep, bad = _confirmed_rows(pos, cov, status)
    ids, labels = tr.ids, tr.labels
    if not (isinstance(ids, np.ndarray) and ids.dtype == np.int64):
        ids = np.asarray(ids, dtype=np.int64)
    if not (isinstance(labels, np.ndarray) and labels.dtype == np.int64):
        labels = np.asarray(labels, dtype=np.int64)
    vel: FloatArray | None = None
    x = tr.x if tr.space == "point" else None
    if x is not None and (x.ndim != 2 or x.shape[1] < 4):
        x = None
    if keep.shape[0] == pos.shape[0]:  # every track kept (the usual case): no copies
        if x is not None:
            vel = x[:, 2:4]
        return _Chan(name, cfg, ids, pos, _psd(cov) if bad else cov, labels, vel)
    if x is not None:
        vel = np.asarray(x, dtype=np.float64)[keep, 2:4]
    return _Chan(name, cfg, ids[keep], pos[keep], _psd(cov[keep]) if bad else cov[keep],
                 labels[keep], vel)


def _f64(a: object, ndim: int) -> FloatArray:
    """A float64 array of ``ndim`` dimensions (trailing ones of size 2), without a conversion when
    it already is one (a tracker's fields are)."""
    if (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == ndim
            and a.shape[1:] == (2,) * (ndim - 1)):
        return a
    return np.asarray(a, dtype=np.float64).reshape((-1,) + (2,) * (ndim - 1))


def _psd(cov: FloatArray, floor: float = 1e-6) -> FloatArray:
    """2×2 covariances made symmetric positive definite (eigenvalues ≥ ``floor`` m²).

    A tracker covariance that rounding made indefinite would turn the fusion into NaN; its
    position is still an obstacle to output, so it is kept with the nearest usable covariance.
    """
    c01 = 0.5 * (cov[:, 0, 1] + cov[:, 1, 0])
    bad = (cov[:, 0, 0] <= floor) | (cov[:, 1, 1] <= floor) | (
        cov[:, 0, 0] * cov[:, 1, 1] - c01 * c01 <= floor * floor
    )
    if not bad.any():
        return cov
    out = cov.copy()
    w, v = np.linalg.eigh(0.5 * (cov[bad] + np.swapaxes(cov[bad], 1, 2)))
    out[bad] = np.einsum("nij,nj,nkj->nik", v, np.maximum(w, floor), v)
    return out


@dataclass
class _GroupOut:
    """What one frame group (channels sharing a frame) contributes to the result."""

    chans: list[_Chan]
    tids: IntArray  # (n_obj, n_ch) track id of each channel's member, -1 if absent
    included: BoolArray  # (n_obj, n_ch) in the fused estimate
    est_loser: BoolArray  # (n_obj, n_ch) left out by the vote on its estimate this step
    lost: BoolArray  # (n_obj, n_ch) contradicted by the majority (estimate or existence)
    covers: BoolArray  # (n_obj, n_ch)
    pos: FloatArray  # (n_obj, 2) fused
    cov: FloatArray  # (n_obj, 2, 2)
    corroborated: BoolArray
    label: IntArray
    vel: FloatArray | None  # (n_obj, 2) or None
    candidates: list[tuple[tuple[object, ...], Disagreement]]
    frame: str
    def output_rows(self) -> _GroupOut:
        """Only objects with a trusted (included) member are output; votes were already taken."""
        keep = self.included.any(axis=1)
        if keep.all():
            return self
        return _GroupOut(
            self.chans, self.tids[keep], self.included[keep], self.est_loser[keep],
            self.lost[keep], self.covers[keep], self.pos[keep], self.cov[keep],
            self.corroborated[keep], self.label[keep],
            None if self.vel is None else self.vel[keep], self.candidates, self.frame,
        )


_PAIRS = {n: np.array([(i, j) for i in range(n) for j in range(i + 1, n)], np.int64).reshape(-1, 2)
          for n in range(8)}


def _pairs(n: int) -> IntArray:
    if n not in _PAIRS:
        _PAIRS[n] = np.array([(i, j) for i in range(n) for j in range(i + 1, n)],
                             np.int64).reshape(-1, 2)
    return _PAIRS[n]


# ----------------------------------------------------------------------------- the checker
class CrossChecker:
    """Stateful cross-checker: object ids stable across steps; disagreements must persist."""

    def __init__(self, cfg: CrosscheckConfig, channels: Sequence[ChannelConfig]) -> None:
        self.cfg = cfg
        self.channels: dict[str, ChannelConfig] = {c.name: c for c in channels}
        self._gate = cfg.association_gate
        self._agree = cfg.agreement_threshold
        m = cfg.fov_margin
        self._margins_assoc = np.array([-m, m])  # grown (association), shrunk (coverage)
        self._margins_cover = np.array([m])
        # channel names of a frame group → the sector limits of their fields of view (None when
        # one is an image rectangle: fov_masks handles those)
        self._limits: dict[tuple[str, ...], FloatArray | None] = {}
        self.reset()

    def reset(self) -> None:
        """Forget object identities and disagreement and vote streaks."""
        self._next_id = 1
        # channel → (sorted track ids, object ids) of the previous step
        self._prev: dict[str, tuple[IntArray, IntArray]] = {}
        # channel names of a frame group → last step's (track ids, object ids, offsets) packed
        # for the id kernel, reused while the group's channels stay the same
        self._packed: dict[tuple[str, ...], tuple[IntArray, IntArray, IntArray]] = {}
        self._packed_next: dict[tuple[str, ...], tuple[IntArray, IntArray, IntArray]] = {}
        self._streak: dict[tuple[object, ...], int] = {}
        # (channel, its track) or (channel, anchor channel, anchor track) → consecutive steps
        # the majority has contradicted that channel there
        self._losses: dict[tuple[object, ...], int] = {}

    # ------------------------------------------------------------------ public
    def check(
        self,
        t: float,
        tracks: Mapping[str, Tracks | None],
        excluded: AbstractSet[str] = frozenset(),
    ) -> CrosscheckResult:
        """Cross-check the confirmed tracks of all channels at time ``t``.

        ``excluded`` channels (known faulty) are never fused or output, but they are still
        associated and voted on, so the evidence against them (their misses, their lost votes,
        their residuals) keeps coming while they are out; without it their fault would clear
        after its quiet interval and they would be let back in, fault and all (flapping).
        Disagreements and misses *raised by* an excluded channel are not reported: its own fault
        explains them.
        """
        active: list[_Chan] = []
        for name in sorted(self.channels):
            cfg = self.channels[name]
            tr = tracks.get(name)
            if cfg.role == "shadow" or tr is None:
                continue
            active.append(_confirmed(name, cfg, tr))
        trusted = {c.name for c in active if c.name not in excluded}
        result = CrosscheckResult(t=float(t), active=tuple(c.name for c in active
                                                           if c.name in trusted))
        groups: dict[str, list[_Chan]] = {}
        for ch in active:
            groups.setdefault(ch.cfg.frame, []).append(ch)
        outs = [self._group(g, frame, result, trusted) for frame, g in sorted(groups.items())]
        new_prev: dict[str, tuple[IntArray, IntArray]] = {}
        streaks: dict[tuple[object, ...], int] = {}
        fused: dict[str, tuple[FloatArray, FloatArray]] = {}
        for g in outs:
            if len(g.chans) >= 3:
                for ch, n in zip(g.chans, self._vote_streaks(g, streaks).tolist(), strict=True):
                    result.vote_losers[ch.name] = int(n)
            g = g.output_rows()
            obj_ids = self._object_ids(g, new_prev)
            result.objects.extend(_make_objects(g, obj_ids))
            fused[g.frame] = (g.pos, g.cov)
        self._prev.update(new_prev)
        self._packed, self._packed_next = self._packed_next, {}
        self._losses = streaks
        self._persist([c for g in outs for c in g.candidates], result)
        self._shadows(tracks, excluded, fused, result)
        return result

    # ------------------------------------------------------------------ one frame group
    def _group(
        self, chans: list[_Chan], frame: str, result: CrosscheckResult,
        trusted: AbstractSet[str] | None = None,
    ) -> _GroupOut:
        n_ch = len(chans)
        trust = np.array([trusted is None or c.name in trusted for c in chans], dtype=bool)
        offsets = np.array([0, *accumulate(len(c) for c in chans)], dtype=np.int64)
        pos_all = np.concatenate([c.pos for c in chans])
        cov_all = np.concatenate([c.cov for c in chans])
        ids_all = np.concatenate([c.ids for c in chans])
        has_vel = all(c.vel is not None for c in chans)
        vel_all = (np.concatenate([c.vel for c in chans if c.vel is not None]) if has_vel
                   else pos_all)  # (a stand-in the kernel ignores without velocities)
        # each track against each channel's FOV: grown (association) and shrunk (coverage);
        # associate every channel pair: near = a track of that channel inside the gate, close =
        # ... that also agrees with this one; assigned edges u–v with d² w; their residuals;
        # components; objects (members, vote, fusion, disagreements, misses)
        inside = self._inside(chans, pos_all, self._margins_assoc)
        labels_all = np.concatenate([c.labels for c in chans])
        (u, v, w, node_ch, res, rcov, bounds, close, near, comp, node_of, tids, included,
         est_loser, corroborated, pos, cov, labels, vel_o, miss, bad, conflict) = _group_kernel(
            pos_all, cov_all, ids_all, labels_all, vel_all, has_vel, offsets, inside, trust,
            self._gate, self._agree)
        for p, (i, j) in enumerate(_pairs(n_ch).tolist()):
            lo, hi = bounds[p], bounds[p + 1]
            key = (chans[i].name, chans[j].name)
            result.residuals[key], result.residual_covs[key] = res[lo:hi], rcov[lo:hi]
        if conflict:  # a cluster holding two tracks of one channel: split it
            comp = _split_conflicts(comp, node_ch, n_ch, u, v, w)
            (node_of, tids, included, est_loser, _, corroborated, pos, cov, best_node, vel_o,
             miss, bad, _) = _objects_kernel(
                comp, int(comp.max()) + 1, node_ch, n_ch, pos_all, cov_all, ids_all, trust,
                self._agree, vel_all, has_vel, u, v, w, inside[:, :, 1], near)
            labels = np.zeros(best_node.shape[0], dtype=np.int64)
            has = best_node >= 0
            labels[has] = labels_all[best_node[has]]
        n_obj = node_of.shape[0]
        present = node_of >= 0

        # coverage: FOV of each channel (shrunk) holds the fused estimate, or it sees it
        covers = self._inside(chans, pos, self._margins_cover)[:, :, 0] | present

        candidates: list[tuple[tuple[object, ...], Disagreement]] = []
        # disagreements: assigned pairs failing the agreement test. Not reported: a known-
        # faulty channel's (its fault explains them), and a pair that the vote kept together in
        # the majority (each agrees with a third channel: nothing to resolve; a persistent bias
        # between them is the calibration monitor's to find)
        for e in bad.tolist():
            na, nb = int(u[e]), int(v[e])
            ca, cb, o = int(node_ch[na]), int(node_ch[nb]), int(comp[na])
            loser = ca if est_loser[o, ca] else cb if est_loser[o, cb] else -1
            ia_, ib_ = int(ids_all[na]), int(ids_all[nb])
            candidates.append((
                ("d", chans[ca].name, ia_, chans[cb].name, ib_),
                Disagreement((chans[ca].name, chans[cb].name), (ia_, ib_), float(w[e]),
                             self._agree, pos_all[na].copy(),
                             outvoted=chans[loser].name if loser >= 0 else None),
            ))
        # existence vote. A channel with an agreeing track next to a member sees the object
        # (its track is a duplicate, or matched to a neighbour by the one-to-one assignment):
        # it is not outvoted for missing it, and does not count against the object's existence
        lost = est_loser.copy()
        if self.cfg.vote_on_existence and n_ch >= 3 and n_obj:
            # a channel the object is hidden from (behind a nearer track of its own) does not vote
            # (only an absent member can be hidden: with none inside a FOV, skip the geometry)
            need: BoolArray = np.asarray((covers & ~present).any(axis=0))
            can_see = (covers & ~(self._hidden(chans, pos, frame, need) & ~present)
                       if need.any() else covers)
            lost |= _existence_vote(present, can_see, close, comp)

        # misses: a track well inside another channel's FOV where that channel has nothing in
        # the association gate (a track inside the gate makes the unmatched one a duplicate);
        # an excluded channel's unmatched tracks blame nobody ... nor where that channel cannot
        # see it: behind a nearer track of its own (the occluder is output; the hidden object is
        # output from the channels that do see it)
        if miss.any():
            miss &= ~self._hidden(chans, pos_all, frame, miss.any(axis=0))
        mn, mc = np.nonzero(miss)
        if mn.size:
            order = np.lexsort((comp[mn], mc, node_ch[mn]))
            for n, c in zip(mn[order].tolist(), mc[order].tolist(), strict=True):
                a_name, tid = chans[int(node_ch[n])].name, int(ids_all[n])
                # a track the existence vote contradicts (a ghost) blames nobody for missing it
                ghost = chans[int(node_ch[n])].name if lost[comp[n], node_ch[n]] else None
                candidates.append((
                    ("m", a_name, tid, chans[c].name),
                    Disagreement((a_name, chans[c].name), (tid, -1), 0.0,
                                 float(self.cfg.persistence), pos_all[n].copy(), "miss",
                                 outvoted=ghost),
                ))

        return _GroupOut(
            chans, tids, included, est_loser, lost, covers & trust[None, :], pos, cov,
            corroborated, labels, vel_o if has_vel else None, candidates, frame,
        )

    def _inside(self, chans: list[_Chan], points: FloatArray, margins: FloatArray) -> BoolArray:
        """:func:`fov_masks` of the group's channels; straight to the compiled sector test when
        every field of view is a sector (limits cached per channel set)."""
        key = tuple(c.name for c in chans)
        if key not in self._limits:
            fovs = [c.cfg.fov for c in chans]
            sector = all(f.image_width is None or f.image_height is None for f in fovs)
            self._limits[key] = (np.concatenate([f.sector_limits for f in fovs])
                                 if sector and fovs else None)
        lim = self._limits[key]
        if lim is None:
            return fov_masks([c.cfg.fov for c in chans], points, margins.tolist())
        return sector_masks(points, lim, margins)

    def _hidden(self, chans: list[_Chan], points: FloatArray, frame: str,
                need: BoolArray | None = None) -> BoolArray:
        """(N, n_ch) mask: point n is hidden from channel c behind a nearer track of c (only
        for the channels ``need`` selects, False for the others)."""
        out = np.zeros((len(points), len(chans)), dtype=bool)
        if not self.cfg.occlusion or frame != "ground" or len(points) == 0:
            return out
        for c, ch in enumerate(chans):
            if need is not None and not need[c]:
                continue
            out[:, c] = hidden_behind(points, ch.pos, self.cfg.object_half_width_m,
                                      self.cfg.occluder_half_width_m)
        return out

    # ------------------------------------------------------------------ identities and votes
    def _object_ids(self, g: _GroupOut, new_prev: dict[str, tuple[IntArray, IntArray]]) -> IntArray:
        """Stable object ids: inherit the oldest id any contributing (channel, track) carried."""
        names = tuple(ch.name for ch in g.chans)
        packed = self._packed.get(names)
        if packed is None:  # the group's channels changed: gather what each carried last
            prev = [self._prev.get(n, (_NO_IDS, _NO_IDS)) for n in names]
            off = np.array([0, *accumulate(p[0].size for p in prev)], dtype=np.int64)
            keys = np.concatenate([p[0] for p in prev]) if prev else _NO_IDS
            vals = np.concatenate([p[1] for p in prev]) if prev else _NO_IDS
        else:  # the same channels as last step: their packed ids as the kernel left them
            keys, vals, off = packed
        claimed, nkeys, nvals, noff, self._next_id = _object_ids_kernel(
            g.tids, keys, vals, off, self._next_id)
        self._packed_next[names] = (nkeys, nvals, noff)
        for c, ch in enumerate(g.chans):
            new_prev[ch.name] = (nkeys[noff[c]:noff[c + 1]], nvals[noff[c]:noff[c + 1]])
        return claimed

    def _vote_streaks(self, g: _GroupOut, streaks: dict[tuple[object, ...], int]) -> IntArray:
        """Per channel, the objects it has been outvoted on for ``persistence`` steps in a row.

        The same place is followed by the losing channel's own track, or, where it has none
        (outvoted on existence), by the track of the object's first member. Updates ``streaks``.
        """
        o_idx, c_idx = np.nonzero(g.lost)
        per_ch = np.zeros(len(g.chans), dtype=np.int64)
        if not o_idx.size:
            return per_ch
        anchor = np.argmax(g.tids >= 0, axis=1)
        names = [c.name for c in g.chans]
        need = self.cfg.persistence
        for o, c, a in zip(o_idx.tolist(), c_idx.tolist(), anchor[o_idx].tolist(), strict=True):
            tid = int(g.tids[o, c])
            key: tuple[object, ...] = (
                (names[c], tid) if tid >= 0 else (names[c], names[a], int(g.tids[o, a]))
            )
            n = streaks[key] = self._losses.get(key, 0) + 1
            if n >= need:
                per_ch[c] += 1
        return per_ch

    def _persist(
        self, candidates: list[tuple[tuple[object, ...], Disagreement]], result: CrosscheckResult
    ) -> None:
        """Report disagreements and misses that have persisted for ``persistence`` steps."""
        streak: dict[tuple[object, ...], int] = {}
        need = self.cfg.persistence
        for key, d in candidates:
            n = self._streak.get(key, 0) + 1
            streak[key] = n
            if n >= need:
                stat = float(n) if d.kind == "miss" else d.statistic
                result.disagreements.append(Disagreement(
                    d.channels, d.track_ids, stat, d.threshold, d.position, d.kind, n, d.outvoted
                ))
        self._streak = streak

    # ------------------------------------------------------------------ shadow channels
    def _shadows(
        self,
        tracks: Mapping[str, Tracks | None],
        excluded: AbstractSet[str],
        fused: Mapping[str, tuple[FloatArray, FloatArray]],
        result: CrosscheckResult,
    ) -> None:
        """Score each shadow channel against the output objects; shadows are never output."""
        margin = self.cfg.fov_margin
        for name in sorted(self.channels):
            cfg = self.channels[name]
            tr = tracks.get(name)
            if cfg.role != "shadow" or name in excluded or tr is None:
                continue
            sh = _confirmed(name, cfg, tr)
            opos, ocov = fused.get(cfg.frame, (np.zeros((0, 2)), np.zeros((0, 2, 2))))
            inside = fov_masks([cfg.fov], opos, (-margin, margin))[:, 0, :]
            i, j, d2 = gated_pairs(sh.pos, sh.cov, opos, ocov, self._gate)
            keep = inside[j, 0]
            rs, ro, dd = assign_sparse(i[keep], j[keep], d2[keep], self._gate)
            agree = dd <= self._agree
            seen = np.zeros(opos.shape[0], dtype=bool)
            seen[ro] = True
            missed = inside[:, 1] & ~seen
            result.shadow[name] = ShadowStats(
                matched=int(agree.sum()),
                missed=int(missed.sum()),
                extra=int(len(sh) - rs.size),
                disagreeing=int((~agree).sum()),
            )


# ----------------------------------------------------------------------------- output objects
_new = object.__new__
_set = object.__setattr__


@lru_cache(maxsize=64)
def _code_tables(names: tuple[str, ...]) -> tuple[list[tuple[str, ...]], list[tuple[int, ...]]]:
    """Per membership bit pattern over ``names``: the channel names it holds and their indices
    (cached: the channel set of a frame group rarely changes)."""
    n_ch = len(names)
    by_code = [tuple(n for k, n in enumerate(names) if code >> k & 1) for code in range(1 << n_ch)]
    idx_code = [tuple(k for k in range(n_ch) if code >> k & 1) for code in range(1 << n_ch)]
    return by_code, idx_code


@compiled(nb.int64[:, ::1](BIN2, BIN2, BIN2))
def _membership_codes(a, b, c):  # pragma: no cover - compiled
    """(3, n) bit patterns (bit k: channel k) of each row of three (n, n_ch) masks, in one call."""
    n, n_ch = a.shape
    out = np.zeros((3, n), np.int64)
    for i in range(n):
        for k in range(n_ch):
            bit = 1 << k
            if a[i, k]:
                out[0, i] |= bit
            if b[i, k]:
                out[1, i] |= bit
            if c[i, k]:
                out[2, i] |= bit
    return out


def _make_objects(g: _GroupOut, obj_ids: IntArray) -> list[VouchedObject]:
    """The group's VouchedObjects, built in one pass over plain Python rows.

    Channel tuples come from a table indexed by the membership bit pattern; each instance gets
    its attribute dict in one assignment (what the frozen dataclass ``__init__`` would set, field
    by field, at about twice the cost).
    """
    n_obj = int(obj_ids.shape[0])
    if n_obj == 0:
        return []
    names = tuple(c.name for c in g.chans)
    by_code, idx_code = _code_tables(names)
    full = len(by_code) - 1
    inc, los, cvb = _membership_codes(g.included, g.est_loser, g.covers).tolist()
    vel: list[FloatArray | None] = [None] * n_obj if g.vel is None else list(g.vel)
    frame = g.frame
    out: list[VouchedObject] = []
    append = out.append
    for oid, row, ci, cl, cv, corr, lab, pos, cov, v in zip(
            obj_ids.tolist(), g.tids.tolist(), inc, los, cvb, g.corroborated.tolist(),
            g.label.tolist(), g.pos, g.cov, vel, strict=True):
        obj = _new(VouchedObject)
        _set(obj, "__dict__", {
            "object_id": oid,
            "position": pos,
            "cov": cov,
            "channels": by_code[ci],
            "track_ids": dict(zip(names, row, strict=True)) if ci == full
            else {names[k]: row[k] for k in idx_code[ci]},
            "corroborated": corr,
            "label": lab,
            "velocity": v,
            "outvoted": {names[k]: row[k] for k in idx_code[cl]} if cl else {},
            "covered_by": by_code[cv],
            "frame": frame,
        })
        append(obj)
    return out
