"""Cross-channel checking: associate the tracks of redundant channels inside their shared field of
view, test their agreement, fuse agreeing estimates (covariance intersection) and, with three or
more channels, vote per object to isolate the faulty one. Never drops an obstacle that only one
channel sees: it is output, flagged uncorroborated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2

from perception.tracks import Tracks
from safety.channels import ChannelConfig

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
    vote_losers: dict[str, int] = field(default_factory=dict)  # channel → objects outvoted on
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
    persistence: int = Field(default=3, ge=1)  # consecutive steps before a disagreement is reported
    fov_margin: float = Field(default=2.0, ge=0)  # m (ground) or px (image)
    fusion: Literal["ci"] = "ci"
    vote_on_existence: bool = True  # with 3+ covering channels, outvote ghosts and misses too

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


def mahalanobis2(diff: FloatArray, S: FloatArray) -> FloatArray:
    """Squared Mahalanobis distance dᵀ S⁻¹ d for stacked 2-vectors and 2×2 covariances.

    Non-positive-definite S gives +inf (never associated, never agreeing).
    """
    det = _det2(S)
    dx, dy = diff[..., 0], diff[..., 1]
    num = S[..., 1, 1] * dx * dx - (S[..., 0, 1] + S[..., 1, 0]) * dx * dy + S[..., 0, 0] * dy * dy
    ok = (det > 0) & (S[..., 0, 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(ok, num / np.where(ok, det, 1.0), np.inf))


def covariance_intersection(
    xa: FloatArray, Pa: FloatArray, xb: FloatArray, Pb: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Covariance intersection of stacked 2-D estimates, ω minimising the fused trace (exact).

    P⁻¹ = ω Pa⁻¹ + (1 − ω) Pb⁻¹, x = P (ω Pa⁻¹ xa + (1 − ω) Pb⁻¹ xb). Consistent whatever the
    (unknown) correlation of the two errors. For 2×2, tr(M⁻¹) = tr(M)/det(M) with M linear in ω,
    so the optimum is a root of a quadratic or an end point: no iteration.
    Returns (x (N, 2), P (N, 2, 2), ω (N,)).
    """
    A = _inv2(Pa)
    B = _inv2(Pb)
    D = A - B
    t0 = B[:, 0, 0] + B[:, 1, 1]
    t1 = D[:, 0, 0] + D[:, 1, 1]
    d0 = _det2(B)
    d1 = (
        B[:, 0, 0] * D[:, 1, 1] + B[:, 1, 1] * D[:, 0, 0]
        - B[:, 0, 1] * D[:, 1, 0] - B[:, 1, 0] * D[:, 0, 1]
    )
    d2 = _det2(D)
    # f'(ω) = 0  ⇔  a ω² + b ω + c = 0
    a = t1 * d2
    b = 2.0 * t0 * d2
    c = t0 * d1 - t1 * d0
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(b * b - 4.0 * a * c)
        quad = np.abs(a) > 1e-12 * (np.abs(b) + np.abs(c) + 1e-300)
        r1 = np.where(quad, (-b + disc) / (2.0 * a), -c / b)
        r2 = np.where(quad, (-b - disc) / (2.0 * a), -c / b)
    cand = np.stack([np.zeros_like(t0), np.ones_like(t0), r1, r2], axis=1)
    cand = np.clip(np.nan_to_num(cand, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    tr = t0[:, None] + t1[:, None] * cand
    det = d0[:, None] + d1[:, None] * cand + d2[:, None] * cand * cand
    f = np.where(det > 0, tr / np.where(det > 0, det, 1.0), np.inf)
    omega = cand[np.arange(cand.shape[0]), np.argmin(f, axis=1)]
    M = B + omega[:, None, None] * D
    P = _inv2(M)
    P = 0.5 * (P + np.swapaxes(P, 1, 2))
    info = omega[:, None] * np.einsum("nij,nj->ni", A, xa) + (1.0 - omega)[:, None] * np.einsum(
        "nij,nj->ni", B, xb
    )
    x = np.einsum("nij,nj->ni", P, info)
    return x, P, omega


def moment_match(X: FloatArray, P: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Equal-weight Gaussian mixture of the masked estimates, matched to one Gaussian.

    For estimates that disagree: the mean sits between them and the covariance covers the spread,
    so the output claims no more certainty than the channels jointly justify.
    X (N, K, 2), P (N, K, 2, 2), mask (N, K) with at least one True per row.
    """
    w = mask.astype(np.float64)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    Xz = np.where(mask[..., None], X, 0.0)
    mean = np.einsum("nk,nki->ni", w, Xz)
    d = np.where(mask[..., None], X - mean[:, None, :], 0.0)
    Pz = np.where(mask[..., None, None], P, 0.0)
    cov = np.einsum("nk,nkij->nij", w, Pz) + np.einsum("nk,nki,nkj->nij", w, d, d)
    return mean, cov


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
    keep = np.asarray(tr.confirmed, dtype=bool)
    pos = np.asarray(tr.position, dtype=np.float64).reshape(-1, 2)
    cov = np.asarray(tr.position_cov, dtype=np.float64).reshape(-1, 2, 2)
    keep = keep & np.all(np.isfinite(pos), axis=1) & np.all(np.isfinite(cov), axis=(1, 2))
    vel: FloatArray | None = None
    x = np.asarray(tr.x, dtype=np.float64)
    if tr.space == "point" and x.ndim == 2 and x.shape[1] >= 4:
        vel = x[keep, 2:4]
    return _Chan(
        name, cfg, np.asarray(tr.ids, dtype=np.int64)[keep], pos[keep], cov[keep],
        np.asarray(tr.labels, dtype=np.int64)[keep], vel,
    )


def _assign(cost: FloatArray, gate: float) -> tuple[IntArray, IntArray]:
    """Hungarian assignment of a (Na, Nb) cost matrix, keeping only pairs within ``gate``."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    feasible = cost <= gate
    if not feasible.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    big = gate * (min(cost.shape) + 1) + 1.0
    r, c = linear_sum_assignment(np.where(feasible, cost, big))
    ok = feasible[r, c]
    return r[ok].astype(np.int64), c[ok].astype(np.int64)


def _pair_cost(pa: FloatArray, Pa: FloatArray, pb: FloatArray, Pb: FloatArray) -> FloatArray:
    """(Na, Nb) d² of every pair with the combined covariance Pa + Pb."""
    diff = pa[:, None, :] - pb[None, :, :]
    S = Pa[:, None, :, :] + Pb[None, :, :, :]
    return mahalanobis2(diff, S)


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


@dataclass
class _GroupOut:
    """What one frame group (channels sharing a frame) contributes to the result."""

    chans: list[_Chan]
    member: IntArray  # (n_obj, n_ch) row index into each channel's tracks, -1 if absent
    included: BoolArray  # (n_obj, n_ch) in the fused estimate
    est_loser: BoolArray  # (n_obj, n_ch) outvoted on its estimate
    covers: BoolArray  # (n_obj, n_ch)
    pos: FloatArray  # (n_obj, 2) fused
    cov: FloatArray  # (n_obj, 2, 2)
    corroborated: BoolArray
    label: IntArray
    vel: FloatArray | None  # (n_obj, 2) or None
    losers: IntArray  # (n_ch,) objects each channel was outvoted on
    candidates: list[tuple[tuple[object, ...], Disagreement]]
    frame: str


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
        """Forget object identities and disagreement streaks."""
        self._next_id = 1
        # channel → (sorted track ids, object ids) of the previous step
        self._prev: dict[str, tuple[IntArray, IntArray]] = {}
        self._streak: dict[tuple[object, ...], int] = {}

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
        outs = [self._output_rows(self._group(g, frame, result, trusted))
                for frame, g in sorted(groups.items())]
        new_prev: dict[str, tuple[IntArray, IntArray]] = {}
        for g in outs:
            obj_ids = self._object_ids(g, new_prev)
            result.objects.extend(self._objects(g, obj_ids))
            if len(g.chans) >= 3:
                for ch, n in zip(g.chans, g.losers.tolist(), strict=True):
                    result.vote_losers[ch.name] = int(n)
        self._prev.update(new_prev)
        self._persist([c for g in outs for c in g.candidates], result)
        self._shadows(tracks, excluded, result)
        return result

    # ------------------------------------------------------------------ one frame group
    def _group(
        self, chans: list[_Chan], frame: str, result: CrosscheckResult,
        trusted: AbstractSet[str] | None = None,
    ) -> _GroupOut:
        n_ch = len(chans)
        trust = np.array([trusted is None or c.name in trusted for c in chans], dtype=bool)
        margin = self.cfg.fov_margin
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in chans])]).astype(np.int64)
        n_nodes = int(offsets[-1])
        node_ch = np.repeat(np.arange(n_ch), [len(c) for c in chans]).astype(np.int64)
        node_row = (np.arange(n_nodes) - offsets[node_ch]).astype(np.int64)
        eu: list[IntArray] = []
        ev: list[IntArray] = []
        ew: list[FloatArray] = []
        candidates: list[tuple[tuple[object, ...], Disagreement]] = []
        for i in range(n_ch):
            for j in range(i + 1, n_ch):
                a, b = chans[i], chans[j]
                cost = _pair_cost(a.pos, a.cov, b.pos, b.cov)
                # candidates: each track inside the other channel's FOV (grown by the margin)
                shared = (
                    b.cfg.fov.contains(a.pos, -margin)[:, None]
                    & a.cfg.fov.contains(b.pos, -margin)[None, :]
                )
                ra, rb = _assign(np.where(shared, cost, np.inf), self._gate)
                d2 = cost[ra, rb]
                result.residuals[(a.name, b.name)] = a.pos[ra] - b.pos[rb]
                result.residual_covs[(a.name, b.name)] = a.cov[ra] + b.cov[rb]
                eu.append(offsets[i] + ra)
                ev.append(offsets[j] + rb)
                ew.append(d2)
                bad = np.flatnonzero(d2 > self._agree)
                if not (trust[i] and trust[j]):
                    bad = bad[:0]  # a known-faulty channel's disagreements are explained
                for k, ia, ib, s in zip(
                    bad.tolist(), a.ids[ra[bad]].tolist(), b.ids[rb[bad]].tolist(),
                    d2[bad].tolist(), strict=True,
                ):
                    candidates.append((
                        ("d", a.name, ia, b.name, ib),
                        Disagreement((a.name, b.name), (ia, ib), float(s), self._agree,
                                     a.pos[ra[k]].copy()),
                    ))
        u = np.concatenate(eu) if eu else np.zeros(0, np.int64)
        v = np.concatenate(ev) if ev else np.zeros(0, np.int64)
        w = np.concatenate(ew) if ew else np.zeros(0)
        if n_nodes:
            graph = coo_matrix((np.ones(u.size), (u, v)), shape=(n_nodes, n_nodes))
            _, comp = connected_components(graph, directed=False)
            comp = _split_conflicts(comp.astype(np.int64), node_ch, n_ch, u, v, w)
            n_obj = int(comp.max()) + 1
        else:
            comp = np.zeros(0, np.int64)
            n_obj = 0
        member = np.full((n_obj, n_ch), -1, dtype=np.int64)
        member[comp, node_ch] = node_row
        present = member >= 0

        # stacked estimates (n_obj, n_ch, ...) with harmless fillers where absent
        X = np.zeros((n_obj, n_ch, 2))
        P = np.broadcast_to(np.eye(2), (n_obj, n_ch, 2, 2)).copy()
        for c, ch in enumerate(chans):
            rows = member[:, c]
            m = rows >= 0
            X[m, c] = ch.pos[rows[m]]
            P[m, c] = ch.cov[rows[m]]

        agree = np.zeros((n_obj, n_ch, n_ch), dtype=bool)
        for i in range(n_ch):
            for j in range(i + 1, n_ch):
                ok = present[:, i] & present[:, j] & (
                    mahalanobis2(X[:, i] - X[:, j], P[:, i] + P[:, j]) <= self._agree
                )
                agree[:, i, j] = agree[:, j, i] = ok

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
        pair_bad = included[:, :, None] & included[:, None, :] & ~agree
        np.einsum("nii->ni", pair_bad)[...] = False
        all_agree: BoolArray = np.asarray(~pair_bad.any(axis=(1, 2)))
        n_incl = included.sum(axis=1)
        corroborated = (n_incl >= 2) & all_agree

        pos, cov = self._fuse(X, P, included, all_agree)

        # coverage, misses, existence vote
        covers = np.zeros((n_obj, n_ch), dtype=bool)
        for c, ch in enumerate(chans):
            covers[:, c] = ch.cfg.fov.contains(pos, margin) if n_obj else covers[:, c]
        covers |= present
        for ia, a in enumerate(chans):
            for ib, b in enumerate(chans):
                if ia == ib or not trust[ia]:
                    continue  # an excluded channel's unmatched tracks blame nobody
                rows = member[:, ia]
                miss = present[:, ia] & ~present[:, ib]
                if n_obj:
                    miss &= b.cfg.fov.contains(X[:, ia], margin)
                if miss.any() and len(b):
                    # b has a track inside the association gate of a's: b sees something there
                    # and a's unmatched track is a duplicate (or a's view of a merged pair), not
                    # an object b is blind to
                    near = _pair_cost(X[miss, ia], P[miss, ia], b.pos, b.cov).min(axis=1)
                    miss[np.flatnonzero(miss)[near <= self._gate]] = False
                for o in np.flatnonzero(miss).tolist():
                    tid = int(a.ids[rows[o]])
                    candidates.append((
                        ("m", a.name, tid, b.name),
                        Disagreement((a.name, b.name), (tid, -1), 0.0,
                                     float(self.cfg.persistence), X[o, ia].copy(), "miss"),
                    ))
        lost = est_loser.copy()
        if self.cfg.vote_on_existence and n_ch >= 3:
            n_vot = covers.sum(axis=1)
            ex_vote = n_vot >= 3
            lost |= (ex_vote & (2 * k > n_vot))[:, None] & covers & ~present
            lost |= (ex_vote & (2 * (n_vot - k) > n_vot))[:, None] & present

        # label of the most certain included member; velocity averaged over included members
        tr = np.where(included, P[..., 0, 0] + P[..., 1, 1], np.inf)
        best = np.argmin(tr, axis=1) if n_obj else np.zeros(0, np.int64)
        labels = np.zeros(n_obj, dtype=np.int64)
        vel: FloatArray | None = None
        if all(ch.vel is not None for ch in chans) and n_ch:
            V = np.zeros((n_obj, n_ch, 2))
            for c, ch in enumerate(chans):
                m = member[:, c] >= 0
                assert ch.vel is not None
                V[m, c] = ch.vel[member[m, c]]
            wv = included.astype(np.float64)
            vel = np.einsum("nk,nki->ni", wv, V) / np.maximum(wv.sum(axis=1), 1.0)[:, None]
        for c, ch in enumerate(chans):
            sel = (best == c) & included[:, c]
            labels[sel] = ch.labels[member[sel, c]]
        return _GroupOut(
            chans, member, included, est_loser, covers & trust[None, :], pos, cov, corroborated,
            labels, vel, lost.sum(axis=0).astype(np.int64), candidates, frame,
        )

    @staticmethod
    def _output_rows(g: _GroupOut) -> _GroupOut:
        """Only objects with a trusted (included) member are output; votes and candidates stay."""
        keep = g.included.any(axis=1)
        if keep.all():
            return g
        return _GroupOut(
            g.chans, g.member[keep], g.included[keep], g.est_loser[keep], g.covers[keep],
            g.pos[keep], g.cov[keep], g.corroborated[keep], g.label[keep],
            None if g.vel is None else g.vel[keep], g.losers, g.candidates, g.frame,
        )

    @staticmethod
    def _fuse(
        X: FloatArray, P: FloatArray, included: BoolArray, all_agree: BoolArray
    ) -> tuple[FloatArray, FloatArray]:
        """CI over included members where they all agree; a moment-matched mixture otherwise."""
        n_obj, n_ch = included.shape
        pos = np.zeros((n_obj, 2))
        cov = np.zeros((n_obj, 2, 2))
        have = np.zeros(n_obj, dtype=bool)
        for c in range(n_ch):
            m = included[:, c] & all_agree
            first = m & ~have
            pos[first], cov[first] = X[first, c], P[first, c]
            nxt = m & have
            if nxt.any():
                pos[nxt], cov[nxt], _ = covariance_intersection(
                    pos[nxt], cov[nxt], X[nxt, c], P[nxt, c]
                )
            have |= m
        mix = ~all_agree
        if mix.any():
            pos[mix], cov[mix] = moment_match(X[mix], P[mix], included[mix])
        return pos, cov

    # ------------------------------------------------------------------ identities and output
    def _object_ids(self, g: _GroupOut, new_prev: dict[str, tuple[IntArray, IntArray]]) -> IntArray:
        """Stable object ids: inherit the oldest id any contributing (channel, track) carried."""
        n_obj, n_ch = g.member.shape
        prior = np.full((n_obj, n_ch), -1, dtype=np.int64)
        tids = np.full((n_obj, n_ch), -1, dtype=np.int64)
        for c, ch in enumerate(g.chans):
            m = g.member[:, c] >= 0
            tids[m, c] = ch.ids[g.member[m, c]]
            prev = self._prev.get(ch.name)
            if prev is None or prev[0].size == 0 or not m.any():
                continue
            keys, vals = prev
            q = tids[m, c]
            at = np.clip(np.searchsorted(keys, q), 0, keys.size - 1)
            prior[m, c] = np.where(keys[at] == q, vals[at], -1)
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
            m = g.member[:, c] >= 0
            order = np.argsort(tids[m, c])
            new_prev[ch.name] = (tids[m, c][order], claimed[m][order])
        return claimed

    def _objects(self, g: _GroupOut, obj_ids: IntArray) -> list[VouchedObject]:
        names = [c.name for c in g.chans]
        tids: IntArray = np.full(g.member.shape, -1, dtype=np.int64)
        for c, ch in enumerate(g.chans):
            m = g.member[:, c] >= 0
            tids[m, c] = ch.ids[g.member[m, c]]
        out: list[VouchedObject] = []
        inc: list[list[bool]] = g.included.tolist()
        los: list[list[bool]] = g.est_loser.tolist()
        cov_by: list[list[bool]] = g.covers.tolist()
        tid_l: list[list[int]] = tids.tolist()
        corr: list[bool] = g.corroborated.tolist()
        lab: list[int] = g.label.tolist()
        for o, oid in enumerate(obj_ids.tolist()):
            row_i, row_l, row_t = inc[o], los[o], tid_l[o]
            out.append(VouchedObject(
                object_id=int(oid),
                position=g.pos[o].copy(),
                cov=g.cov[o].copy(),
                channels=tuple(n for n, f in zip(names, row_i, strict=True) if f),
                track_ids={n: t for n, f, t in zip(names, row_i, row_t, strict=True) if f},
                corroborated=bool(corr[o]),
                label=int(lab[o]),
                velocity=None if g.vel is None else g.vel[o].copy(),
                outvoted={n: t for n, f, t in zip(names, row_l, row_t, strict=True) if f},
                covered_by=tuple(n for n, f in zip(names, cov_by[o], strict=True) if f),
                frame=g.frame,
            ))
        return out

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
                if d.kind == "miss":
                    d = Disagreement(d.channels, d.track_ids, float(n), d.threshold, d.position,
                                     "miss", n)
                else:
                    d = Disagreement(d.channels, d.track_ids, d.statistic, d.threshold,
                                     d.position, "disagreement", n)
                result.disagreements.append(d)
        self._streak = streak

    # ------------------------------------------------------------------ shadow channels
    def _shadows(
        self,
        tracks: Mapping[str, Tracks | None],
        excluded: AbstractSet[str],
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
            objs = [o for o in result.objects if o.frame == cfg.frame]
            opos = np.array([o.position for o in objs]).reshape(-1, 2)
            ocov = np.array([o.cov for o in objs]).reshape(-1, 2, 2)
            cost = _pair_cost(sh.pos, sh.cov, opos, ocov)
            cand = np.broadcast_to(cfg.fov.contains(opos, -margin)[None, :], cost.shape)
            rs, ro = _assign(np.where(cand, cost, np.inf), self._gate)
            agree = cost[rs, ro] <= self._agree
            seen = np.zeros(len(objs), dtype=bool)
            seen[ro] = True
            missed = cfg.fov.contains(opos, margin) & ~seen
            result.shadow[name] = ShadowStats(
                matched=int(agree.sum()),
                missed=int(missed.sum()),
                extra=int(len(sh) - rs.size),
                disagreeing=int((~agree).sum()),
            )
