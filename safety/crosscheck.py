"""Cross-channel checking: result types (contract). Implementation lands with the crosscheck work."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class VouchedObject:
    """An object the system outputs: fused estimate, contributing channels, corroboration."""

    object_id: int
    position: FloatArray  # (2,)
    cov: FloatArray  # (2, 2)
    channels: tuple[str, ...]
    track_ids: dict[str, int]
    corroborated: bool  # seen by ≥ 2 agreeing channels (or only one channel covers that spot)
    label: int = 0
    velocity: FloatArray | None = None


@dataclass(frozen=True)
class Disagreement:
    """Two channels' tracks associated but failing the chi-square agreement test, or a miss."""

    channels: tuple[str, str]
    track_ids: tuple[int, int]  # -1 where one channel has no track (a miss inside its FOV)
    statistic: float
    threshold: float
    position: FloatArray  # (2,) where (first channel's estimate)


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
    vote_losers: dict[str, int] = field(default_factory=dict)  # channel → objects it was outvoted on
    shadow: dict[str, ShadowStats] = field(default_factory=dict)
