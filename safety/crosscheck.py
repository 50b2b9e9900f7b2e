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
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from perception.kernels import BIN1, BIN2, F1, F2, F3, IIN1, IN2, IN3, compiled
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
def _det2(S: FloatArray) -> FloatArray:
    return np.asarray(S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0])


def _inv2(S: FloatArray) -> FloatArray:
    """Closed-form inverse of stacked 2×2 matrices."""
    det = _det2(S)
    out = np.empty_like(S)
    out[..., 0, 0] = S[..., 1, 1]
    out[..., 1, 1] = S[..., 0, 0]
    out[..., 0, 1] = -S[..., 0, 1]
    out[..., 1, 0] = -S[..., 1, 0]
    return np.asarray(out / det[..., None, None])


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
    if i.size == 0:
        return i, j, d2
    rdeg = np.bincount(i)
    cdeg = np.bincount(j)
    simple = (rdeg[i] == 1) & (cdeg[j] == 1)
    if simple.all():
        order = np.argsort(i, kind="stable")
        return i[order], j[order], d2[order]
    rest = ~simple
    rows, ri = np.unique(i[rest], return_inverse=True)
    cols, ci = np.unique(j[rest], return_inverse=True)
    big = gate * (min(rows.size, cols.size) + 1) + 1.0
    sub = np.full((rows.size, cols.size), big)
    sub[ri, ci] = d2[rest]
    r, c = linear_sum_assignment(sub)
    ok = sub[r, c] < big
    mi = np.concatenate([i[simple], rows[r[ok]]]).astype(np.int64)
    mj = np.concatenate([j[simple], cols[c[ok]]]).astype(np.int64)
    md = np.concatenate([d2[simple], sub[r[ok], c[ok]]])
    order = np.argsort(mi, kind="stable")
    return mi[order], mj[order], md[order]


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


@compiled(nb.types.Tuple((_I64, _I64, F1))(IN2, IN3, IN2, IN3, nb.float64))
def _gated_pairs_kernel(pa, Pa, pb, Pb, gate):  # pragma: no cover - compiled
    """:func:`gated_pairs` in one pass: sort b on x, binary-search each a's reach, test exactly."""
    na, nb_ = pa.shape[0], pb.shape[0]
    trb_max = -np.inf
    for j in range(nb_):
        trb_max = max(trb_max, Pb[j, 0, 0] + Pb[j, 1, 1])
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
    return oi[:n].copy(), oj[:n].copy(), od[:n].copy()


@compiled(_I64(nb.int64, IIN1, IIN1))
def _components_kernel(n, u, v):  # pragma: no cover - compiled
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
def _moment_match_row(X, P, mask, r, mean, cov):  # pragma: no cover - compiled
    """:func:`moment_match` for row ``r`` of X (N, K, 2), P (N, K, 2, 2), mask (N, K), into
    ``mean[r]`` and ``cov[r]``."""
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
    mean[r, 0], mean[r, 1] = m0, m1
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
    cov[r, 0, 0], cov[r, 0, 1] = c00 + s00, c01 + s01
    cov[r, 1, 0], cov[r, 1, 1] = c10 + s01, c11 + s11


_IN4 = nb.types.Array(nb.float64, 4, "A", readonly=True)


@compiled(nb.types.Tuple((F2, F3))(IN3, _IN4, BIN2))
def _moment_match_kernel(X, P, mask):  # pragma: no cover - compiled
    """:func:`moment_match` row by row."""
    n = X.shape[0]
    mean = np.zeros((n, 2))
    cov = np.zeros((n, 2, 2))
    for r in range(n):
        _moment_match_row(X, P, mask, r, mean, cov)
    return mean, cov


@compiled(nb.types.Tuple((F2, F3))(IN3, _IN4, BIN2, BIN1))
def _fuse_kernel(X, P, included, all_agree):  # pragma: no cover - compiled
    """:meth:`CrossChecker._fuse`: included members fused by CI in channel order where they all
    agree, moment-matched where they do not."""
    n, K = included.shape
    pos = np.zeros((n, 2))
    cov = np.zeros((n, 2, 2))
    for r in range(n):
        if not all_agree[r]:
            _moment_match_row(X, P, included, r, pos, cov)
            continue
        have = False
        x0 = x1 = p00 = p01 = p10 = p11 = 0.0
        for k in range(K):
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
        pos[r, 0], pos[r, 1] = x0, x1
        cov[r, 0, 0], cov[r, 0, 1], cov[r, 1, 0], cov[r, 1, 1] = p00, p01, p10, p11
    return pos, cov


@compiled(nb.bool_[::1](IN2, IN2, nb.float64, nb.float64))
def _hidden_kernel(p, o, half_width_m, occ_hw):  # pragma: no cover - compiled
    """:func:`hidden_behind` over all (point, occluder) pairs, stopping at the first occluder."""
    n, m = p.shape[0], o.shape[0]
    out = np.zeros(n, np.bool_)
    ro = np.empty(m)
    ho = np.empty(m)
    bo = np.empty(m)
    for k in range(m):
        ro[k] = np.hypot(o[k, 0], o[k, 1])
        ho[k] = np.arctan2(occ_hw, max(ro[k], 1e-6))
        bo[k] = np.arctan2(o[k, 1], o[k, 0])
    for i in range(n):
        rp = np.hypot(p[i, 0], p[i, 1])
        hp = np.arctan2(half_width_m, max(rp, 1e-6))
        bp = np.arctan2(p[i, 1], p[i, 0])
        for k in range(m):
            gap = np.abs(bp - bo[k])
            gap = min(gap, 2.0 * np.pi - gap)
            if gap < hp + ho[k] and ro[k] < rp - _MIN_GAP_M:
                out[i] = True
                break
    return out


# ----------------------------------------------------------------------------- internals
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
    pos = np.asarray(tr.position, dtype=np.float64).reshape(-1, 2)
    cov = np.asarray(tr.position_cov, dtype=np.float64).reshape(-1, 2, 2)
    status = np.asarray(tr.status)
    # confirmed or coasting; a non-finite component makes the sum non-finite (inf − inf is NaN)
    keep = ((status == 1) | (status == 2)) & np.isfinite(
        pos.sum(axis=1) + cov.reshape(-1, 4).sum(axis=1)
    )
    vel: FloatArray | None = None
    x = np.asarray(tr.x, dtype=np.float64)
    if tr.space == "point" and x.ndim == 2 and x.shape[1] >= 4:
        vel = x[keep, 2:4]
    return _Chan(
        name, cfg, np.asarray(tr.ids, dtype=np.int64)[keep], pos[keep], _psd(cov[keep]),
        np.asarray(tr.labels, dtype=np.int64)[keep], vel,
    )


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
        self.reset()

    def reset(self) -> None:
        """Forget object identities and disagreement and vote streaks."""
        self._next_id = 1
        # channel → (sorted track ids, object ids) of the previous step
        self._prev: dict[str, tuple[IntArray, IntArray]] = {}
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
        margin = self.cfg.fov_margin
        sizes = np.array([len(c) for c in chans], dtype=np.int64)
        offsets = np.zeros(n_ch + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        n_nodes = int(offsets[-1])
        node_ch = np.repeat(np.arange(n_ch, dtype=np.int64), sizes)
        pos_all = np.concatenate([c.pos for c in chans]) if n_nodes else np.zeros((0, 2))
        cov_all = np.concatenate([c.cov for c in chans]) if n_nodes else np.zeros((0, 2, 2))
        ids_all = np.concatenate([c.ids for c in chans]) if n_nodes else np.zeros(0, np.int64)
        # each track against each channel's FOV: grown (association) and shrunk (coverage)
        inside = fov_masks([c.cfg.fov for c in chans], pos_all, (-margin, margin))
        grown, shrunk = inside[:, :, 0], inside[:, :, 1]
        near = np.zeros((n_nodes, n_ch), dtype=bool)  # a track of that channel inside the gate
        close = np.zeros((n_nodes, n_ch), dtype=bool)  # ... that also agrees with this one
        eu: list[IntArray] = []
        ev: list[IntArray] = []
        ew: list[FloatArray] = []
        for i in range(n_ch):
            for j in range(i + 1, n_ch):
                a, b = chans[i], chans[j]
                ia, ib, d2 = gated_pairs(a.pos, a.cov, b.pos, b.cov, self._gate)
                ga, gb = offsets[i] + ia, offsets[j] + ib
                near[ga, j] = True
                near[gb, i] = True
                ok = d2 <= self._agree
                close[ga[ok], j] = True
                close[gb[ok], i] = True
                # candidates: each track inside the other channel's FOV (grown by the margin)
                shared = grown[ga, j] & grown[gb, i]
                ra, rb, dd = assign_sparse(ia[shared], ib[shared], d2[shared], self._gate)
                result.residuals[(a.name, b.name)] = a.pos[ra] - b.pos[rb]
                result.residual_covs[(a.name, b.name)] = a.cov[ra] + b.cov[rb]
                eu.append(offsets[i] + ra)
                ev.append(offsets[j] + rb)
                ew.append(dd)
        u = np.concatenate(eu) if eu else np.zeros(0, np.int64)
        v = np.concatenate(ev) if ev else np.zeros(0, np.int64)
        w = np.concatenate(ew) if ew else np.zeros(0)
        comp = components(n_nodes, u, v)
        n_obj = int(comp.max()) + 1 if n_nodes else 0
        if n_obj and np.bincount(comp * n_ch + node_ch).max() > 1:
            comp = _split_conflicts(comp, node_ch, n_ch, u, v, w)
            n_obj = int(comp.max()) + 1
        node_of = np.full((n_obj, n_ch), -1, dtype=np.int64)
        node_of[comp, node_ch] = np.arange(n_nodes)
        present = node_of >= 0
        tids = np.where(present, ids_all[node_of], -1)

        # stacked estimates (n_obj, n_ch, ...) with harmless fillers where absent
        X = np.zeros((n_obj, n_ch, 2))
        X[comp, node_ch] = pos_all
        P = np.zeros((n_obj, n_ch, 2, 2))
        P[..., 0, 0] = P[..., 1, 1] = 1.0
        P[comp, node_ch] = cov_all
        pi, pj = _pairs(n_ch).T
        agree_p = present[:, pi] & present[:, pj] & (
            mahalanobis2(X[:, pi] - X[:, pj], P[:, pi] + P[:, pj]) <= self._agree
        )
        agree = np.zeros((n_obj, n_ch, n_ch), dtype=bool)
        agree[:, pi, pj] = agree_p
        agree[:, pj, pi] = agree_p

        # majority vote on the estimate (3+ members)
        k = present.sum(axis=1)
        support = agree.sum(axis=2)
        in_major = present & (support >= (k // 2)[:, None])
        voted = (k >= 3) & (2 * in_major.sum(axis=1) > k)
        est_loser = voted[:, None] & present & ~in_major
        included = np.where(voted[:, None], in_major, present) & trust[None, :]
        # if the vote went with excluded channels against the trusted ones, fuse the trusted
        fallback = ~included.any(axis=1)
        included[fallback] = present[fallback] & trust[None, :]
        # all included pairs agree
        all_agree = ~np.any(included[:, pi] & included[:, pj] & ~agree_p, axis=1)
        corroborated = (included.sum(axis=1) >= 2) & all_agree

        pos, cov = self._fuse(X, P, included, all_agree)

        # coverage: FOV of each channel (shrunk) holds the fused estimate, or it sees it
        covers = fov_masks([c.cfg.fov for c in chans], pos, (margin,))[:, :, 0] | present

        candidates: list[tuple[tuple[object, ...], Disagreement]] = []
        # disagreements: associated pairs failing the agreement test. Not reported: a known-
        # faulty channel's (its fault explains them), and a pair that the vote kept together in
        # the majority (each agrees with a third channel: nothing to resolve; a persistent bias
        # between them is the calibration monitor's to find)
        major = voted[:, None] & in_major
        both_major = major[comp[u], node_ch[u]] & major[comp[v], node_ch[v]]
        bad = np.flatnonzero(
            (w > self._agree) & trust[node_ch[u]] & trust[node_ch[v]] & ~both_major
        )
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
            flat = (comp[:, None] * n_ch + np.arange(n_ch)[None, :])[close]
            # a channel the object is hidden from (behind a nearer track of its own) does not vote
            # (only an absent member can be hidden: with none inside a FOV, skip the geometry)
            absent = covers & ~present
            need: BoolArray = np.asarray(absent.any(axis=0))
            can_see = (covers & ~(self._hidden(chans, pos, frame, need) & ~present)
                       if need.any() else covers.copy())
            seen = present | (np.bincount(flat, minlength=n_obj * n_ch)
                              .reshape(n_obj, n_ch) > 0) & can_see
            n_vot = can_see.sum(axis=1)
            ex_vote = n_vot >= 3
            lost |= (ex_vote & (2 * k > n_vot))[:, None] & can_see & ~seen
            lost |= (ex_vote & (2 * (n_vot - seen.sum(axis=1)) > n_vot))[:, None] & present

        # misses: a track well inside another channel's FOV where that channel has nothing in
        # the association gate (a track inside the gate makes the unmatched one a duplicate)
        # (an excluded channel's unmatched tracks blame nobody)
        miss = (node_of[comp] < 0) & shrunk & ~near & trust[node_ch][:, None]
        # ... nor where that channel cannot see it: behind a nearer track of its own (the
        # occluder is output; the hidden object is output from the channels that do see it)
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

        # label of the most certain included member; velocity averaged over included members
        trace = np.where(included, P[..., 0, 0] + P[..., 1, 1], np.inf)
        best = np.argmin(trace, axis=1) if n_obj else np.zeros(0, np.int64)
        labels_all = np.concatenate([c.labels for c in chans]) if n_nodes else np.zeros(0, int)
        labels = np.zeros(n_obj, dtype=np.int64)
        if n_obj:
            has = included.any(axis=1)
            labels[has] = labels_all[node_of[np.arange(n_obj), best][has]]
        vel: FloatArray | None = None
        if n_ch and all(ch.vel is not None for ch in chans):
            V = np.zeros((n_obj, n_ch, 2))
            V[comp, node_ch] = np.concatenate([ch.vel for ch in chans if ch.vel is not None])
            wv = included.astype(np.float64)
            vel = np.einsum("nk,nki->ni", wv, V) / np.maximum(wv.sum(axis=1), 1.0)[:, None]
        return _GroupOut(
            chans, tids, included, est_loser, lost, covers & trust[None, :], pos, cov,
            corroborated, labels, vel, candidates, frame,
        )

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

    @staticmethod
    def _fuse(
        X: FloatArray, P: FloatArray, included: BoolArray, all_agree: BoolArray
    ) -> tuple[FloatArray, FloatArray]:
        """CI over included members where they all agree; a moment-matched mixture otherwise."""
        return _fuse_kernel(X, P, included, all_agree)

    # ------------------------------------------------------------------ identities and votes
    def _object_ids(self, g: _GroupOut, new_prev: dict[str, tuple[IntArray, IntArray]]) -> IntArray:
        """Stable object ids: inherit the oldest id any contributing (channel, track) carried."""
        n_obj, n_ch = g.tids.shape
        prior = np.full((n_obj, n_ch), -1, dtype=np.int64)
        for c, ch in enumerate(g.chans):
            prev = self._prev.get(ch.name)
            if prev is None or prev[0].size == 0 or not n_obj:
                continue
            keys, vals = prev
            q = g.tids[:, c]
            at = np.minimum(np.searchsorted(keys, q), keys.size - 1)
            prior[:, c] = np.where((keys[at] == q) & (q >= 0), vals[at], -1)
        big = np.iinfo(np.int64).max
        claimed = np.where(prior >= 0, prior, big).min(axis=1) if n_ch else np.full(n_obj, big)
        claimed = np.where(claimed == big, -1, claimed)
        has = np.flatnonzero(claimed >= 0)
        _, first = np.unique(claimed[has], return_index=True)
        dup = np.ones(has.size, dtype=bool)
        dup[first] = False
        claimed[has[dup]] = -1  # a split: the first cluster keeps the id
        new = np.flatnonzero(claimed < 0)
        claimed[new] = np.arange(self._next_id, self._next_id + new.size)
        self._next_id += int(new.size)
        for c, ch in enumerate(g.chans):
            m = g.tids[:, c] >= 0
            order = np.argsort(g.tids[m, c])
            new_prev[ch.name] = (g.tids[m, c][order], claimed[m][order])
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


def _make_objects(g: _GroupOut, obj_ids: IntArray) -> list[VouchedObject]:
    """The group's VouchedObjects, built in one pass over plain Python rows.

    Channel tuples come from a table indexed by the membership bit pattern; each instance gets
    its attribute dict in one assignment (what the frozen dataclass ``__init__`` would set, field
    by field, at about twice the cost).
    """
    names = [c.name for c in g.chans]
    n_ch = len(names)
    n_obj = int(obj_ids.shape[0])
    if n_obj == 0:
        return []
    bits = 1 << np.arange(n_ch, dtype=np.int64)
    by_code = [tuple(n for k, n in enumerate(names) if code >> k & 1) for code in range(1 << n_ch)]
    idx_code = [[k for k in range(n_ch) if code >> k & 1] for code in range(1 << n_ch)]
    inc = (g.included @ bits).tolist()
    los = (g.est_loser @ bits).tolist()
    cvb = (g.covers @ bits).tolist()
    tid = g.tids.tolist()
    corr = g.corroborated.tolist()
    lab = g.label.tolist()
    oids = obj_ids.tolist()
    pos = list(g.pos)
    cov = list(g.cov)
    vel: list[FloatArray | None] = [None] * n_obj if g.vel is None else list(g.vel)
    frame = g.frame
    out: list[VouchedObject] = []
    for o in range(n_obj):
        row = tid[o]
        ci, cl = inc[o], los[o]
        obj = _new(VouchedObject)
        _set(obj, "__dict__", {
            "object_id": oids[o],
            "position": pos[o],
            "cov": cov[o],
            "channels": by_code[ci],
            "track_ids": {names[k]: row[k] for k in idx_code[ci]},
            "corroborated": corr[o],
            "label": lab[o],
            "velocity": vel[o],
            "outvoted": {names[k]: row[k] for k in idx_code[cl]} if cl else {},
            "covered_by": by_code[cvb[o]],
            "frame": frame,
        })
        out.append(obj)
    return out
