"""The human driver's answer to a takeover request: when (if ever) they take over.

Reaction times follow a lognormal distribution (the usual fit to takeover-time studies) with a
configured median and log-sigma, or a fixed delay; an absent driver never responds. Profiles
supply defaults: attentive ≈ 2.5 s median, distracted ≈ 6 s.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.random import SeedSequence
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.rng import root

__all__ = ["PROFILE_DEFAULTS", "Human", "HumanConfig"]

Profile = Literal["attentive", "distracted", "absent"]

#: (median s, log-sigma) per profile.
PROFILE_DEFAULTS: dict[str, tuple[float, float]] = {
    "attentive": (2.5, 0.35),
    "distracted": (6.0, 0.5),
    "absent": (math.inf, 0.0),
}


class HumanConfig(BaseModel):
    """Driver model: ``profile``, and a ``distribution`` of reaction times after a request.

    ``median``/``sigma`` override the profile's defaults; ``fixed`` uses ``median`` exactly.
    ``min_reaction`` clips implausibly fast draws; ``p_ignore`` is the chance a request is ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Profile = "attentive"
    distribution: Literal["lognormal", "fixed"] = "lognormal"
    median: float | None = Field(default=None, gt=0)
    sigma: float | None = Field(default=None, ge=0)
    min_reaction: float = Field(default=0.3, ge=0)
    p_ignore: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> HumanConfig:
        if self.profile == "absent" and (self.median is not None or self.distribution == "fixed"):
            raise ValueError("an absent driver has no reaction time: drop median/distribution")
        return self

    def params(self) -> tuple[float, float]:
        """The effective (median, log-sigma)."""
        med, sig = PROFILE_DEFAULTS[self.profile]
        return (
            self.median if self.median is not None else med,
            self.sigma if self.sigma is not None else sig,
        )


class Human:
    """Draws takeover times; each ``respond`` consumes the next draws of the driver's stream."""

    def __init__(self, cfg: HumanConfig | None = None, seed_seq: SeedSequence | int = 0) -> None:
        self.cfg = cfg or HumanConfig()
        self.rng = np.random.default_rng(root(seed_seq))

    def reaction_time(self) -> float | None:
        """One reaction time (s), or None if the driver does not respond."""
        cfg = self.cfg
        # two draws every call (ignore, reaction), whatever the profile: a stable stream
        u, g = self.rng.random(), self.rng.standard_normal()
        if cfg.profile == "absent" or u < cfg.p_ignore:
            return None
        med, sig = cfg.params()
        rt = med if cfg.distribution == "fixed" else med * math.exp(sig * g)
        return max(cfg.min_reaction, rt)

    def respond(self, issued_at: float) -> float | None:
        """Time at which the driver takes over a request issued at ``issued_at`` (None: never)."""
        rt = self.reaction_time()
        return None if rt is None else float(issued_at) + rt
